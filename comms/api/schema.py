"""The OpenAPI schema, made to tell the truth: every error an operation can answer is
documented with the one error shape, and the API key is a bearer security scheme, so
generated clients and /api/docs/ (its Authorize button) work as the API does."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from .permissions import IsAdminApplication

BODY_METHODS = {"POST", "PUT", "PATCH"}


class ErrorSerializer(serializers.Serializer):
    """The one error shape of every answer that is not a success."""

    code = serializers.CharField(help_text="Machine-readable: invalid, not_authenticated, permission_denied, "
                                           "not_found, cancel_too_late, payload_too_large, rate_limited, "
                                           "quota_exceeded, unavailable, ...")
    message = serializers.CharField(help_text="For people: what went wrong.")
    errors = serializers.DictField(
        required=False,
        help_text="With `invalid`: per field, a list of messages; a nested field or a batch item "
                  "(keyed by its index) holds an object of the same shape.")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


ERRORS = {
    "400": _error("The request is not valid: `errors` names each field (or batch item) and what is wrong."),
    "401": _error("No API key, a malformed Authorization header, or an unknown or revoked key."),
    "403": _error("The key's application may not do this (channels are for admin applications)."),
    "404": _error("No such resource, or not one of this application's."),
    "413": _error("The body is larger than RELAY_MAX_BODY_BYTES."),
    "415": _error("The body is not JSON (send Content-Type: application/json)."),
    "429": _error("rate_limited: the application is over its API requests per minute. Retry after "
                  "the Retry-After header's seconds."),
    "503": _error("The database or the broker is briefly unavailable; try again after the "
                  "Retry-After header's seconds."),
}


SUBMISSION_LIMITED = _error(
    "rate_limited: the application is over its API requests per minute; or quota_exceeded: the "
    "messages would take it over its daily message quota (UTC day; a batch of N counts N), and "
    "Retry-After is the seconds to 00:00 UTC. Nothing is created.")
RETRY_AFTER = {"schema": {"type": "integer", "minimum": 1}, "required": True,
               "description": "Seconds to wait before trying again."}


class RelayAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the error answers each operation can give."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self.error_statuses():
            if code not in responses:
                responses[code] = self._get_response_for_code(ERRORS[code], code, direction=direction)
        return dict(sorted(responses.items()))

    def _get_response_headers_for_code(self, status_code, direction="response"):
        headers = super()._get_response_headers_for_code(status_code, direction)
        if status_code == "429":
            headers["Retry-After"] = RETRY_AFTER
        return headers

    def error_statuses(self) -> list[str]:
        codes = ["503"]
        has_body = self.method in BODY_METHODS and self.get_request_serializer() is not None
        has_query = self.method == "GET" and self._is_list_view() and (
            getattr(self.view, "pagination_class", None) or getattr(self.view, "filterset_class", None))
        if has_body or has_query:
            codes.append("400")  # bodies, filters, cursors and pageSize are validated
        if has_body:
            codes += ["413", "415"]
        if self.view.get_authenticators():
            codes += ["401", "429"]  # every authenticated request counts against its rate
        if any(isinstance(p, IsAdminApplication) for p in self.view.get_permissions()):
            codes.append("403")
        if "{" in self.path:
            codes.append("404")
        return codes


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "comms.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An application's API key: `Authorization: Bearer <api key>`."}


ReceiptAnswer = inline_serializer("ReceiptAnswer", {
    "outcome": serializers.ChoiceField(choices=["applied", "ignored", "deferred"]),
    "message": serializers.CharField(),
})
CancelTooLate = inline_serializer("CancelTooLate", {
    "code": serializers.CharField(help_text="cancel_too_late"),
    "message": serializers.CharField(),
    "id": serializers.CharField(),
    "status": serializers.CharField(help_text="The message's status, unchanged"),
})
Recovered = inline_serializer("Recovered", {
    "retried": serializers.IntegerField(help_text="How many deliveries were set to go again"),
})


def query_strings_not_empty(result, generator, request, public):
    """drf-spectacular postprocessing hook: every string query parameter is refused empty (a
    filter or cursor given empty is a 400, see filters.StrictFilterSet), so say minLength 1."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter["in"] == "query" and schema.get("type") == "string" and "enum" not in schema:
                    schema.setdefault("minLength", 1)
    return result
