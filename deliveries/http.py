"""The outbound HTTP of webhooks: one connection pool per worker process, bounded time and
size, no redirects.

urllib3 directly rather than requests: webhooks are the hottest path of a worker, and the
profile showed requests' session machinery costing more CPU than the rest of a delivery.
"""

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import parse_url

from comms.headers import retry_after_seconds

USER_AGENT = "Relay-Webhooks/1"
EXCERPT_BYTES = 4096
MAX_ADDRESSES = 3  # each unreachable one costs up to WEBHOOK_CONNECT_TIMEOUT

_pool: tuple[int, urllib3.PoolManager] | None = None


def pool() -> urllib3.PoolManager:
    """The process's pool: connections are reused across deliveries, never shared across a
    fork (Celery's prefork children each build their own)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), urllib3.PoolManager(num_pools=64, maxsize=32, retries=False))
    return _pool[1]


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


def post(url: str, body: str, headers: dict[str, str], *, addresses: Sequence[str] = ()) -> Outcome:
    """POST and read at most EXCERPT_BYTES of the answer, all within WEBHOOK_TIMEOUT.

    With `addresses`, connect to those (the ones the SSRF check vetted, in order, the next
    when one cannot be reached) instead of resolving the URL's host again; TLS still
    verifies the certificate against the host's name.
    """
    started = time.monotonic()
    try:
        response = _open(url, body.encode(), headers, addresses[:MAX_ADDRESSES])
        try:
            excerpt = response.read(EXCERPT_BYTES)
        finally:
            # A longer answer is not read to its end: drop that connection instead.
            if response.length_remaining or not response.isclosed() and len(excerpt) >= EXCERPT_BYTES:
                response.close()
            else:
                response.release_conn()
        return Outcome(
            status_code=response.status,
            duration_ms=_ms(started),
            excerpt=excerpt.decode("utf-8", errors="replace"),
            error_kind="" if 200 <= response.status < 300 else "http_status",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    except (LocationParseError, ValueError) as exc:
        # A URL or header HTTP cannot carry (the API refuses them; older rows may hold one).
        # Before HTTPError: LocationParseError is one too.
        return Outcome(None, _ms(started), error_kind="invalid_request", error_detail=_short(exc))
    except MaxRetryError as exc:
        return _failure(exc.reason or exc, started)
    except HTTPError as exc:
        return _failure(exc, started)
    except OSError as exc:
        return Outcome(None, _ms(started), error_kind="connection", error_detail=_short(exc))


def _open(url: str, body: bytes, headers: dict[str, str], addresses: Sequence[str]):
    timeout = urllib3.Timeout(total=settings.WEBHOOK_TIMEOUT, connect=settings.WEBHOOK_CONNECT_TIMEOUT)
    options = {"body": body, "timeout": timeout, "redirect": False, "retries": False,
               "preload_content": False}
    if not addresses:
        return pool().request("POST", url, headers=headers, **options)
    target = parse_url(url)
    pool_kwargs = {"server_hostname": target.host} if target.scheme == "https" else None
    for address in addresses[:-1]:
        try:
            return _open_at(address, target, pool_kwargs, headers, options)
        except (NewConnectionError, ConnectTimeoutError):
            continue  # never connected, so nothing was sent: the next address may answer
    return _open_at(addresses[-1], target, pool_kwargs, headers, options)


def _open_at(address: str, target, pool_kwargs, headers: dict[str, str], options: dict):
    connections = pool().connection_from_host(address, target.port, target.scheme, pool_kwargs)
    return connections.urlopen("POST", target.request_uri, assert_same_host=False,
                               headers={**headers, "Host": target.netloc}, **options)


def _failure(exc: Exception, started: float) -> Outcome:
    if isinstance(exc, SSLError):
        kind = "tls"
    elif isinstance(exc, NewConnectionError):  # a subclass of ConnectTimeoutError, but refused
        kind = "connection"
    elif isinstance(exc, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        kind = "timeout"
    else:
        kind = "connection"
    return Outcome(None, _ms(started), error_kind=kind, error_detail=_short(exc))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _short(exc: Exception) -> str:
    return str(exc)[:300]
