"""The outbound HTTP of webhooks: one pooled session per worker process, bounded time and
size, no redirects."""

import time
from dataclasses import dataclass

import requests
from django.conf import settings

from comms.http_session import process_session

USER_AGENT = "Relay-Webhooks/1"
EXCERPT_BYTES = 4096

@dataclass
class Outcome:
    status_code: int | None
    duration_ms: int
    excerpt: str = ""
    error_kind: str = ""
    error_detail: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: str, headers: dict[str, str]) -> Outcome:
    """POST and read at most EXCERPT_BYTES of the answer, within the total time budget."""
    started = time.monotonic()
    total = settings.WEBHOOK_TIMEOUT
    try:
        with process_session("webhooks").post(
            url, data=body.encode(), headers=headers, allow_redirects=False, stream=True,
            timeout=(settings.WEBHOOK_CONNECT_TIMEOUT, total),
        ) as response:
            excerpt = _read_excerpt(response, started + total)
            return Outcome(
                status_code=response.status_code,
                duration_ms=_ms(started),
                excerpt=excerpt,
                error_kind="" if 200 <= response.status_code < 300 else "http_status",
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
    except requests.exceptions.SSLError as exc:
        return Outcome(None, _ms(started), error_kind="tls", error_detail=_short(exc))
    except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout, TimeoutError) as exc:
        return Outcome(None, _ms(started), error_kind="timeout", error_detail=_short(exc))
    except requests.exceptions.RequestException as exc:
        return Outcome(None, _ms(started), error_kind="connection", error_detail=_short(exc))


def _read_excerpt(response: requests.Response, deadline: float) -> str:
    data = b""
    for chunk in response.iter_content(chunk_size=1024):
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the response took longer than the total timeout")
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _short(exc: Exception) -> str:
    return str(exc)[:300]
