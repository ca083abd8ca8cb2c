"""One JSON error shape: {"code", "message", "errors"?: {field: [messages]}}."""

from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def error_body(code: str, message: str, errors=None) -> dict:
    body = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return body


def exception_handler(exc, context):
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

