"""A generic HTTP gateway: POST each attempt as JSON to the operator's endpoint.

Request: {"id", "attempt", "idempotencyKey", "sender", "receiver", "content"}; a 2xx answer
may carry {"id": "<gateway reference>"}. Receipts come back to /api/v1/receipts/<channel>
signed with the channel's receiptSecret:
    {"messageId" | "ref", "attempt"?, "status": "delivered", "error"?: {"code", "message"},
     "env"?, "link"?}
or {"events": [<that>, ...]}.
"""

from urllib.parse import urlsplit

import requests

from ..headers import headers_problem, retry_after_seconds
from ..http_session import process_session
from ..status import ErrorCode
from .base import ConfigError, HmacReceipts, Provider, ProviderError, ReceiptEvent

E = ErrorCode

# Gateway receipt statuses -> our event kinds.
RECEIPT_KINDS = {
    "delivered": "DELIVERED",
    "failed": "FAILED",
    "read": "READ",
    "clicked": "INTERACTED",
    "deleted": "DELETED",
}
# Gateway error codes -> (our code, permanent).
ERROR_CODES = {
    "invalid_receiver": (E.INVALID_RECEIVER, True),
    "unreachable": (E.RECEIVER_UNREACHABLE, False),
    "rejected": (E.REJECTED_BY_CHANNEL, True),
    "content_rejected": (E.CONTENT_REJECTED, True),
    "rate_limited": (E.RATE_LIMITED, False),
    "timeout": (E.CHANNEL_TIMEOUT, False),
    "unavailable": (E.CHANNEL_UNAVAILABLE, False),
}
# HTTP statuses of the send call, when the body names no code.
HTTP_ERRORS = {
    400: (E.REJECTED_BY_CHANNEL, True),
    401: (E.CHANNEL_UNAVAILABLE, False),
    403: (E.CHANNEL_UNAVAILABLE, False),
    404: (E.INVALID_RECEIVER, True),
    408: (E.CHANNEL_TIMEOUT, False),
    413: (E.CONTENT_REJECTED, True),
    422: (E.INVALID_RECEIVER, True),
    429: (E.RATE_LIMITED, False),
    502: (E.CHANNEL_UNAVAILABLE, False),
    503: (E.CHANNEL_UNAVAILABLE, False),
    504: (E.CHANNEL_TIMEOUT, False),
}
TIMEOUT = (5, 15)
MAX_REFERENCE = 255  # Message.provider_ref
MAX_LINK = 2000  # MessageEvent.link


class HttpGatewayProvider(HmacReceipts, Provider):
    type = "http"

    @classmethod
    def clean_config(cls, config: dict, previous: dict | None = None) -> dict:
        config = cls.with_receipt_secret(super().clean_config(config), previous)
        url = config.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url must be an http(s) URL with a host")
        problem = headers_problem(config.get("headers", {}))
        if problem:
            raise ConfigError(problem)
        unknown = set(config) - {"url", "headers", "receiptSecret"}
        if unknown:
            raise ConfigError(f"unknown http gateway settings: {sorted(unknown)}")
        return config

    def send(self, message, *, attempt: int) -> str:
        body = {
            "id": message.id,
            "attempt": attempt,
            "idempotencyKey": f"{message.id}-{attempt}",
            "sender": message.sender,
            "receiver": message.receiver,
            "content": message.content,
        }
        try:
            response = process_session("http-gateway").post(self.channel.config["url"], json=body, timeout=TIMEOUT,
                                     headers=self.channel.config.get("headers", {}),
                                     allow_redirects=False)
        except requests.Timeout as exc:
            raise ProviderError(E.CHANNEL_TIMEOUT, raw_code="timeout") from exc
        except requests.RequestException as exc:
            raise ProviderError(E.CHANNEL_UNAVAILABLE, raw_code=type(exc).__name__) from exc
        data = _json(response)
        if 200 <= response.status_code < 300:
            reference = str(data.get("id") or "")
            # A reference longer than we store could never match a receipt: use our id.
            return reference if 0 < len(reference) <= MAX_REFERENCE else message.id
        error = _error(data.get("error"), response.status_code)
        error.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        raise error

    def split_receipt(self, payload: dict) -> list[dict]:
        events = payload.get("events") if isinstance(payload, dict) else None
        return events if isinstance(events, list) and events else [payload]

    def parse_receipt(self, payload: dict) -> list[ReceiptEvent]:
        items = payload.get("events", [payload]) if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            raise ValueError("a receipt is an object, or {\"events\": [...]}")
        return [self._event(item) for item in items]

    def _event(self, item) -> ReceiptEvent:
        if not isinstance(item, dict):
            raise ValueError("each receipt event must be an object")
        kind = RECEIPT_KINDS.get(item.get("status"))
        if kind is None:
            raise ValueError(f"status must be one of {sorted(RECEIPT_KINDS)}")
        message_id, ref = item.get("messageId") or "", item.get("ref") or ""
        if not (message_id or ref):
            raise ValueError("messageId or ref is required")
        attempt = item.get("attempt")
        if attempt is not None and (not isinstance(attempt, int) or attempt < 1):
            raise ValueError("attempt must be a positive integer")
        env = item.get("env")
        link = str(item.get("link") or "")
        if len(link) > MAX_LINK:
            raise ValueError(f"link must be at most {MAX_LINK} characters")
        return ReceiptEvent(
            kind=kind, message_id=str(message_id), provider_ref=str(ref), attempt=attempt,
            error=_error(item.get("error"), None) if kind == "FAILED" else None,
            env=env if isinstance(env, dict) else None,
            link=link,
        )


def _json(response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(error, http_status: int | None) -> ProviderError:
    error = error if isinstance(error, dict) else {}
    raw = str(error.get("code") or (http_status or "failed"))
    code, permanent = ERROR_CODES.get(raw) or HTTP_ERRORS.get(http_status, (E.CHANNEL_UNKNOWN_ERROR, False))
    return ProviderError(code, str(error.get("message") or ""), permanent=permanent, raw_code=raw)
