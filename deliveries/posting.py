"""Posting a round's webhooks: the exact request of each attempt, sent concurrently, every
answer (or its absence) back within the round's time. Touches no database."""

import json
import os
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime

from django.conf import settings

from comms.payloads import event_payload

from . import http
from .models import Delivery, DeliveryAttempt
from .signing import signature_header
from .urlguard import RefusedURL, check_url

RESERVED_HEADERS = {"content-type", "user-agent", "webhook-id", "webhook-timestamp",
                    "webhook-signature", "content-length", "host", "transfer-encoding"}


def post_round(deliveries: list[Delivery], at: datetime) -> list[http.Outcome]:
    """The round's requests, concurrently. A request still unanswered WEBHOOK_ROUND_SECONDS
    after the round began is recorded as a timeout (urllib3's timeouts bound each socket
    read, not the whole exchange, and an endpoint can trickle), so every round is recorded
    well inside its claim's lease, and nothing is claimed twice."""
    futures = [_pool().submit(_post, delivery, at) for delivery in deliveries]
    done, _ = wait(futures, timeout=settings.WEBHOOK_ROUND_SECONDS)
    cut_off = http.Outcome(None, int(settings.WEBHOOK_ROUND_SECONDS * 1000),
                           error_kind=DeliveryAttempt.ErrorKind.TIMEOUT,
                           error_detail=f"no answer within {settings.WEBHOOK_ROUND_SECONDS:g} s")
    return [future.result() if future in done else cut_off for future in futures]


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
