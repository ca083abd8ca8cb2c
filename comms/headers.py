"""HTTP header fields Relay will send on someone's behalf (webhook subscriptions, gateway
channels): only what HTTP/1.1 can carry (RFC 9110), so a bad one is refused when it is
configured rather than failing every request later."""

import re

# A field name is a token; a value is visible characters, spaces and tabs, plus obs-text
# (0x80-0xFF), which clients send as latin-1.
NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def header_problem(name, value) -> str | None:
    """Why this header cannot be sent, or None if it can."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"{name!r} is not a valid HTTP header name"
    if not isinstance(value, str):
        return f"the value of {name!r} must be a string"
    if not VALUE.fullmatch(value):
        return f"the value of {name!r} holds characters HTTP cannot carry (control or non-latin-1)"
    return None


def headers_problem(headers) -> str | None:
    if not isinstance(headers, dict):
        return "headers must be an object of strings"
    return next(filter(None, (header_problem(k, v) for k, v in headers.items())), None)
