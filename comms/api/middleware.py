import json
import logging

from django.conf import settings
from django.http import HttpResponse

from ..outages import OUTAGES, describe

log = logging.getLogger(__name__)


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


RETRY_AFTER_SECONDS = 5


class OutageMiddleware:
    """An API request that meets a database or broker outage is answered 503 JSON with
    Retry-After (never a 500 page), and logged as one warning line, not a traceback."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/") or not isinstance(exception, OUTAGES):
            return None
        log.warning("outage on %s %s: %s", request.method, request.path, describe(exception))
        body = {"code": "unavailable", "message": "The service is briefly unavailable; try again shortly."}
        response = HttpResponse(json.dumps(body), status=503, content_type="application/json",
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        response._has_been_logged = True  # the warning above is the line; not django.request's ERROR too
        return response
