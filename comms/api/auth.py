from rest_framework import authentication, exceptions

from ..accounts import application_for_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <api key>`; the principal is the key's Application."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw_key.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        application = application_for_key(raw_key.strip())
        if application is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return application, raw_key

    def authenticate_header(self, request):
        return self.keyword
