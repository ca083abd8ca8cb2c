"""One JSON error shape: {"code", "message", "errors"?: {field: [messages]}}."""

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    status_code = 409
    default_code = "conflict"
    default_detail = "The request conflicts with what exists."


def error_body(code: str, message: str, errors=None) -> dict:
    body = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return body


def exception_handler(exc, context):
    # Django's own exceptions carry no code or message of the API's: give them DRF's.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("No such resource, or not one of this application's.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"nonFieldErrors": exc.detail}
        response.data = error_body("invalid", "The request is not valid; see errors.", errors)
    else:
        detail = getattr(exc, "detail", str(exc))
        code = detail.code if hasattr(detail, "code") else "error"
        response.data = error_body(str(code), str(detail))
    return response



@csrf_exempt  # else Django answers an unsafe method with its HTML 403 before this runs
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    """Any path under /api/ that names no endpoint: the API's error shape, not an HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)
