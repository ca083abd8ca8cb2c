"""Quotas per application: an API request rate and a daily message quota.

Both are counted with the `limits` library in RELAY_LIMITS_STORAGE_URL (Redis in production,
so the counts hold across every web process; memory on the embedded default). An application
with neither set never touches the storage: the limits come with the cached Application
(comms/lookups.py), so the fast path costs no round trip.

- The request rate is a moving window: at most N requests in any 60 seconds. A refused
  request takes no slot, so Retry-After is when the oldest request in the window leaves it.
- The daily quota counts accepted messages (a batch of N costs N) per UTC calendar day, in
  a counter keyed by the date. The cost is added first and taken back if it does not fit,
  so two requests racing for the last of a quota can never both get it; a refused request
  (and one that then fails, see Spent) leaves the count as it was.

An unreachable storage fails open: requests are served unlimited and a warning is logged,
and the storage is not asked again for RELAY_LIMITS_RETRY_SECONDS, so an outage costs one
timeout per process now and then, not one per request. Quotas protect the platform from a
flood; refusing every limited application's traffic (or answering 503) because the counter
is away would turn a Redis blip into an outage of the API.
"""

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from .models import Application

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# Past the end of its day, so a give-back just after midnight still finds its counter.
DAY_KEY_MARGIN_SECONDS = 3600


class OverLimit(Exception):
    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(OverLimit):
    """Over the application's API requests per minute."""


class QuotaExceeded(OverLimit):
    """The messages asked for do not fit in what is left of the application's daily quota."""


_lock = threading.Lock()
_storage: Storage | None = None
_skip_until = 0.0  # time.monotonic() before which the storage is taken to be unreachable


def storage() -> Storage:
    """This process's storage, made on first use (after gunicorn's fork, not before it)."""
    global _storage
    with _lock:
        if _storage is None:
            _storage = _make_storage(settings.RELAY_LIMITS_STORAGE_URL)
        return _storage


def _make_storage(url: str) -> Storage:
    if not url.startswith(("redis", "valkey")):  # redis, rediss, redis+unix, valkey...
        return storage_from_string(url, wrap_exceptions=True)
    timeout = settings.RELAY_LIMITS_TIMEOUT
    # No retries: redis-py retries a lost connection three times with backoff by default,
    # seconds a request would wait on a counter.
    return storage_from_string(url, wrap_exceptions=True, key_prefix="relay-limits",
                               socket_timeout=timeout, socket_connect_timeout=timeout,
                               retry=Retry(NoBackoff(), 0))


def reset_storage() -> None:
    """Forget this process's storage and any outage noted (tests, a settings change)."""
    global _storage, _skip_until
    with _lock:
        _storage, _skip_until = None, 0.0


def _guarded(call, what: str):
    """call(storage), or None if the storage is unreachable (fail open, logged once per
    RELAY_LIMITS_RETRY_SECONDS)."""
    global _skip_until
    if time.monotonic() < _skip_until:
        return None
    try:
        return call(storage())
    except StorageError as exc:
        _skip_until = time.monotonic() + settings.RELAY_LIMITS_RETRY_SECONDS
        log.warning("quotas not enforced for %.0f s: the limits storage failed to %s (%s: %s)",
                    settings.RELAY_LIMITS_RETRY_SECONDS, what,
                    type(exc.storage_error).__name__, exc.storage_error)
        return None


def check_request_rate(application: Application) -> None:
    """Count one API request; raise RateLimited if the application is over its rate."""
    limit = application.api_requests_per_minute
    if limit is None:
        return
    item = RateLimitItemPerMinute(limit, namespace="requests")
    acquired = _guarded(lambda s: MovingWindowRateLimiter(s).hit(item, str(application.pk)), "count a request")
    if acquired is not False:
        return
    stats = _guarded(lambda s: MovingWindowRateLimiter(s).get_window_stats(item, str(application.pk)),
                     "read a request window")
    wait = _seconds(stats.reset_time - time.time() if stats else WINDOW_SECONDS, WINDOW_SECONDS)
    raise RateLimited(f"This application may make {limit} API requests a minute; "
                      f"try again in {wait} seconds.", wait)


@dataclass
class Spent:
    """Messages taken from a day's quota. Used as a context manager, an exception inside
    gives them back (a submission that failed accepted nothing); give_back() does so too,
    for a submission that created nothing (an Idempotency-Key replay). At most once."""

    key: str | None = None
    count: int = 0

    def give_back(self) -> None:
        if self.key is not None:
            key, self.key = self.key, None
            _guarded(lambda s: s.incr(key, DAY_KEY_MARGIN_SECONDS, amount=-self.count), "give back quota")

    def __enter__(self) -> "Spent":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.give_back()


def take_messages(application: Application, count: int, now: datetime | None = None) -> Spent:
    """Take `count` messages from today's quota (UTC), or raise QuotaExceeded and take none."""
    quota = application.daily_message_quota
    if quota is None:
        return Spent()
    now = (now or timezone.now()).astimezone(UTC)
    to_midnight = seconds_to_midnight(now)
    key = f"quota/{application.pk}/{now.date().isoformat()}"
    total = _guarded(lambda s: s.incr(key, math.ceil(to_midnight) + DAY_KEY_MARGIN_SECONDS, amount=count),
                     "count messages")
    if total is None:
        return Spent()
    spent = Spent(key, count)
    if total <= quota:
        return spent
    spent.give_back()
    used = max(total - count, 0)
    wait = _seconds(to_midnight, 86400)
    raise QuotaExceeded(f"This application's daily quota is {quota} messages (UTC day); {used} accepted "
                        f"today, {count} more asked for. It resets at 00:00 UTC, in {wait} seconds.", wait)


def seconds_to_midnight(now: datetime) -> float:
    """Seconds from `now` to the next 00:00 UTC."""
    now = now.astimezone(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()


def _seconds(value: float, most: int) -> int:
    """A Retry-After: whole seconds, rounded up, at least 1."""
    return min(max(math.ceil(value), 1), most)
