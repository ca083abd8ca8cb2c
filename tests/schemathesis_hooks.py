"""schemathesis hooks for .ci/schemathesis (loaded by it, not by pytest).

They tell generated requests the facts of the test platform that no OpenAPI schema can state,
so that they get past the first check and exercise what lies behind it:

- a message names a channel that exists: every string `channel` of POST /messages (its
  fallback chain included) and of POST /messages/batch items is replaced by RELAY_ST_CHANNEL,
  a simulator channel the script creates (otherwise no message is ever created and the
  message resource is never validated);
- a receipt is signed: POST /receipts/{channel_name} goes to RELAY_ST_CHANNEL, with
  `X-Relay-Signature` over the exact body, keyed by its RELAY_ST_RECEIPT_SECRET (otherwise
  every receipt stops at the signature check with 401);
- that channel stays as the script made it: PUT and PATCH /channels/{name} aimed at it go
  to the `demo` channel instead, which the channel endpoints may change at will.

Schemathesis revalidates a case after `before_call` edits it, so a request is still judged
positive or negative by what is actually sent.

And one filter: a schema-valid request that the API refuses with 400 is a failure
(positive_data_acceptance), unless every error it names is one of the documented rules that
an OpenAPI schema cannot state (ACCEPTED_REJECTIONS and ACCEPTED_CODES below: rules across
fields or against the clock, provider settings that depend on the channel's type, receipts
whose shape is the provider's, header names, opaque cursors, strings PostgreSQL cannot
store). Any other error in the same answer keeps it a failure. Nothing else is filtered.
"""

import hashlib
import hmac
import json
import os
import re

import schemathesis

CHANNEL = os.environ.get("RELAY_ST_CHANNEL", "st-send")
RECEIPT_SECRET = os.environ.get("RELAY_ST_RECEIPT_SECRET", "")
PLAYGROUND = "demo"

# (field the error is keyed by, or None for any; pattern its message must match)
ACCEPTED_REJECTIONS = [
    # sendAt/expiresAt: one against the other, and against the clock
    ("expiresAt", r"Must be later than sendAt\.|Must be in the future\."),
    # a channel's config is validated by its type's provider (README, "Real channel types")
    ("config", r".*"),
    # Django's URLValidator is stricter than RFC 3986 (a host over 253 characters, no TLD)
    ("url", r"Enter a valid URL\."),
    # RELAY_MAX_CONTEXT_BYTES counts serialized bytes
    ("context", r"At most \d+ bytes serialized.*"),
    # a header's name is an RFC 9110 token and not one Relay sets: OpenAPI 3.0 cannot
    # constrain an object's keys (no propertyNames)
    # (a name is shown as Python's repr: in double quotes when it holds a single quote)
    ("headers", r"(['\"]).*\1 is not a valid HTTP header name|(['\"]).*\2 is set by Relay and cannot be "
                r"configured|the value of (['\"]).*\3 holds characters HTTP cannot carry.*"),
    # PostgreSQL text cannot hold NUL, so a filter value with one matches nothing storable
    (None, r"Null characters are not allowed\."),
    # a cursor is opaque: only the server knows which strings it gave out
    ("cursor", r"Not a cursor this API gave out\."),
]
# Whole answers: {"code", "message"} with no per-field errors.
ACCEPTED_CODES = [
    # a receipt's body is whatever its provider posts; the schema cannot know the provider
    ("invalid_receipt", r".*"),
    # JSON that PostgreSQL cannot store (comms/jsonstore.py)
    ("parse_error", r".*(NUL|surrogates not allowed|out of range).*"),
]


def _use_channel(message, depth=0):
    """Point a message (and its fallback chain) at the test channel."""
    if not isinstance(message, dict) or depth > 10:
        return
    if isinstance(message.get("channel"), str):
        message["channel"] = CHANNEL
    _use_channel(message.get("fallback"), depth + 1)


def _sign_receipt(case, kwargs):
    if case.body is None or type(case.body).__name__ == "NotSet":
        body = b""
    elif isinstance(case.body, bytes):
        body = case.body
    elif "json" in (case.media_type or ""):
        body = json.dumps(case.body).encode()
        kwargs["data"] = body  # sent as signed, byte for byte
    else:
        return  # another media type: left as generated, and unsigned
    case.path_parameters = {**(case.path_parameters or {}), "channel_name": CHANNEL}
    signature = "sha256=" + hmac.new(RECEIPT_SECRET.encode(), body, hashlib.sha256).hexdigest()
    case.headers = {**(case.headers or {}), "X-Relay-Signature": signature}


@schemathesis.hook
def before_call(context, case, kwargs):
    method, path = case.operation.method.upper(), case.operation.path
    if method == "POST" and path == "/api/v1/messages":
        _use_channel(case.body)
    elif method == "POST" and path == "/api/v1/messages/batch":
        if isinstance(case.body, dict) and isinstance(case.body.get("messages"), list):
            for item in case.body["messages"]:
                _use_channel(item)
    elif method == "POST" and path == "/api/v1/receipts/{channel_name}":
        if RECEIPT_SECRET:
            _sign_receipt(case, kwargs)
    elif method in ("PUT", "PATCH") and path == "/api/v1/channels/{name}":
        if (case.path_parameters or {}).get("name") == CHANNEL:
            case.path_parameters = {**case.path_parameters, "name": PLAYGROUND}


def _leaves(errors, key=None):
    """(field, message) for every message of a DRF error tree (batch items nest by index)."""
    if isinstance(errors, str):
        yield key, errors
    elif isinstance(errors, list):
        for item in errors:
            yield from _leaves(item, key)
    elif isinstance(errors, dict):
        for name, item in errors.items():
            yield from _leaves(item, key if name.isdigit() else name)


def _accepted(body) -> bool:
    if not isinstance(body, dict):
        return False
    errors = body.get("errors")
    if errors is None:
        return any(body.get("code") == code and re.fullmatch(pattern, str(body.get("message")), re.S)
                   for code, pattern in ACCEPTED_CODES)
    leaves = list(_leaves(errors))
    return bool(leaves) and all(
        any(field in (None, key) and re.fullmatch(pattern, message, re.S)
            for field, pattern in ACCEPTED_REJECTIONS)
        for key, message in leaves)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    # A body over RELAY_MAX_BODY_BYTES is refused whole with 413 before it is read: it was
    # rejected, only not with one of the statuses schemathesis lists for invalid data.
    if failure.code == "ST201" and response.status_code == 413:
        return False
    if failure.code != "ST202" or response.status_code != 400:
        return True
    try:
        body = json.loads(response.content)
    except (TypeError, ValueError):
        return True
    return not _accepted(body)
