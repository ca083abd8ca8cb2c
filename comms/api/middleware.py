import json

from django.conf import settings
from django.http import HttpResponse


class BodySizeLimitMiddleware:
    """Refuse a body over RELAY_MAX_BODY_BYTES with 413 before anything reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.RELAY_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            body = {"code": "payload_too_large", "message": f"The request body exceeds {limit} bytes."}
            return HttpResponse(json.dumps(body), status=413, content_type="application/json")
        return self.get_response(request)
