"""HTTP header fields Relay will send on someone's behalf (webhook subscriptions, gateway
channels): only what HTTP/1.1 can carry (RFC 9110), so a bad one is refused when it is
configured rather than failing every request later."""

import math
import re
import time
from email.utils import parsedate_to_datetime

# A field name is a token; a value is visible characters (plus obs-text, 0x80-0xFF, which
# clients send as latin-1) with spaces and tabs only between them: clients refuse a value
# that starts or ends with whitespace.
NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VISIBLE = r"[\x21-\x7e\x80-\xff]"
VALUE = re.compile(rf"(?:{VISIBLE}(?:[\t\x20-\x7e\x80-\xff]*{VISIBLE})?)?")
# Headers the request itself sets: configuring them would break or smuggle the request.
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "content-type"}


def header_problem(name, value) -> str | None:
    """Why this header cannot be sent, or None if it can."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"{name!r} is not a valid HTTP header name"
    if name.lower() in RESERVED:
        return f"{name!r} is set by Relay and cannot be configured"
    if not isinstance(value, str):
        return f"the value of {name!r} must be a string"
    if not VALUE.fullmatch(value):
        return (f"the value of {name!r} holds characters HTTP cannot carry (control or "
                f"non-latin-1, or whitespace at either end)")
    return None


def headers_problem(headers) -> str | None:
    if not isinstance(headers, dict):
        return "headers must be an object of strings"
    return next(filter(None, (header_problem(k, v) for k, v in headers.items())), None)


def retry_after_seconds(value: str | None) -> float | None:
    """Delay-seconds (digits only, RFC 9110) or an HTTP date; anything else is ignored."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d{1,10}", value):
        return float(value)
    try:
        seconds = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
