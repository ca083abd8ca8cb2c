"""Posting a round's webhooks: the exact request of each attempt, over at most
WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION lanes, every answer (or its absence) back within the
round's time. Touches no database.

A lane posts one delivery after another, always the next one no lane has taken, so a slow
answer holds up only its own lane and the subscription never has more requests open than it
has lanes. A lane's first request always starts (as every request of a round did before
lanes); a later one only while it could still be answered before the round ends, so the
requests of a round end with it (a trickling endpoint aside) and never add to the next
round's, and only while none of the round's requests went unanswered: an endpoint that
stopped answering is sent no more. A delivery no lane started is not attempted: its outcome
is None, and recording gives it back, still due.
"""

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime

from django.conf import settings

from comms.payloads import event_payload

from . import http
from .health import UNREACHABLE
from .models import Delivery, DeliveryAttempt
from .signing import signature_header
from .urlguard import RefusedURL, check_url

RESERVED_HEADERS = {"content-type", "user-agent", "webhook-id", "webhook-timestamp",
                    "webhook-signature", "content-length", "host", "transfer-encoding"}


def post_round(deliveries: list[Delivery], at: datetime) -> list[http.Outcome | None]:
    """The round's outcomes, in the order of `deliveries`: None for one never started. A
    request still unanswered WEBHOOK_ROUND_SECONDS after the round began is recorded as a
    timeout (urllib3's timeouts bound each socket read, not the whole exchange, and an
    endpoint can trickle), so every round is recorded well inside its claim's lease, and
    nothing is claimed twice."""
    lanes = _Lanes(deliveries, at)
    count = min(len(deliveries), settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION)
    done, _ = wait([_pool().submit(lanes.run) for _ in range(count)], timeout=settings.WEBHOOK_ROUND_SECONDS)
    outcomes = lanes.close()
    for lane in done:
        lane.result()  # a bug in a lane is raised, not recorded as a timeout
    return outcomes


class _Lanes:
    """A round's deliveries, handed out one at a time to its lanes, and what came back."""

    def __init__(self, deliveries: list[Delivery], at: datetime):
        self.deliveries, self.at = deliveries, at
        self._outcomes: list[http.Outcome | None] = [None] * len(deliveries)
        self._started: list[float] = []  # when each delivery handed out so far was
        self._lock = threading.Lock()
        self._closed = self._unanswered = False
        # A later request starting after this might still be waiting at the round's end.
        self._last_start = time.monotonic() + settings.WEBHOOK_ROUND_SECONDS - (
            settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_TIMEOUT)

    def run(self) -> None:
        """One lane: a delivery at a time, until the round has no more to give it."""
        first = True
        while (index := self._take(first=first)) is not None:
            outcome = _post(self.deliveries[index], self.at)
            with self._lock:
                if not self._closed:  # else the round was recorded without it: a timeout
                    self._outcomes[index] = outcome
                self._unanswered |= outcome.error_kind in UNREACHABLE
            first = False

    def _take(self, *, first: bool) -> int | None:
        with self._lock:
            if self._closed or len(self._started) == len(self.deliveries):
                return None
            if not first and (self._unanswered or time.monotonic() > self._last_start):
                return None
            self._started.append(time.monotonic())
            return len(self._started) - 1

    def close(self) -> list[http.Outcome | None]:
        """The outcomes as they stand; from now on no lane starts anything."""
        with self._lock:
            self._closed, now = True, time.monotonic()
            return [_cut_off(now - self._started[i]) if outcome is None and i < len(self._started) else outcome
                    for i, outcome in enumerate(self._outcomes)]


def _cut_off(waited: float) -> http.Outcome:
    return http.Outcome(None, int(waited * 1000), error_kind=DeliveryAttempt.ErrorKind.TIMEOUT,
                        error_detail=f"no answer within {settings.WEBHOOK_ROUND_SECONDS:g} s")


_executor: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for outbound requests, one pool per process (never inherited across a fork).
    Sized for every worker thread's round at once, so no task's request ever queues behind
    another task's; threads start only as they are needed."""
    global _executor
    if _executor is None or _executor[0] != os.getpid():
        size = settings.WEBHOOK_WORKER_THREADS * settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION
        _executor = (os.getpid(), ThreadPoolExecutor(size, "webhook"))
    return _executor[1]


def _post(delivery: Delivery, at: datetime) -> http.Outcome:
    """Check the URL (DNS can change) and POST."""
    try:
        addresses = check_url(delivery.subscription.url)
    except RefusedURL as exc:
        return http.Outcome(None, 0, error_kind=DeliveryAttempt.ErrorKind.REFUSED_URL, error_detail=str(exc)[:300])
    body, headers = request_for(delivery, at)
    return http.post(delivery.subscription.url, body, headers, addresses=addresses)


def request_for(delivery: Delivery, at: datetime) -> tuple[str, dict[str, str]]:
    """The exact body and headers of one attempt."""
    event, subscription = delivery.event, delivery.subscription
    message = event.message
    body = json.dumps(event_payload(event, message, message.channel.name), separators=(",", ":"))
    timestamp = int(at.timestamp())
    signing = [subscription.secret]
    if subscription.previous_secret and subscription.previous_secret_expires_at and \
            subscription.previous_secret_expires_at > at:
        signing.append(subscription.previous_secret)
    headers = {k: str(v) for k, v in (subscription.headers or {}).items()
               if k.lower() not in RESERVED_HEADERS}
    headers.update({
        "Content-Type": "application/json",
        "User-Agent": http.USER_AGENT,
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signing, event.id, timestamp, body),
    })
    return body, headers
