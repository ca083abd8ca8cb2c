"""Delivering webhooks: sign, POST, log the attempt, and decide what comes next."""

import json
import logging
import os
import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from comms.leases import grace
from comms.payloads import event_payload

from . import http
from .dispatch import claim, publish_on_commit
from .models import Delivery, DeliveryAttempt, Subscription
from .signing import signature_header
from .urlguard import RefusedURL, check_url

log = logging.getLogger(__name__)

# 4xx answers worth another try; every other 4xx is final.
RETRYABLE_4XX = {408, 409, 425, 429}
RETRY_AFTER_STATUSES = {429, 503}
RESERVED_HEADERS = {"content-type", "user-agent", "webhook-id", "webhook-timestamp",
                    "webhook-signature", "content-length", "host", "transfer-encoding"}


def send_deliveries(delivery_ids: list[str], *, now: datetime | None = None) -> int:
    """One attempt for each claimable delivery among these; returns how many were tried.

    The requests of a chunk go out concurrently (WEBHOOK_SEND_CHUNK at most, so the whole
    chunk fits in one WEBHOOK_TIMEOUT, inside the task's time limit); their rows are
    written together afterwards.
    """
    now = now or timezone.now()
    deliveries = claim(delivery_ids, now)
    # One subscription object per subscription, so a 410 disables it for the rest of the batch.
    subscriptions: dict[str, Subscription] = {}
    for delivery in deliveries:
        delivery.subscription = subscriptions.setdefault(delivery.subscription_id, delivery.subscription)
    batch = _Batch()
    inactive = [d for d in deliveries if not d.subscription.active]
    for delivery in inactive:
        delivery.status, delivery.next_attempt_at, delivery.updated_at = Delivery.Status.FAILED, None, now
        delivery.last_error = "subscription disabled"
        batch.deliveries.append(delivery)
    active = [d for d in deliveries if d.subscription.active]
    started = [timezone.now()] * len(active)
    outcomes = list(_pool().map(_post, active, started)) if len(active) > 1 else \
        [_post(d, s) for d, s in zip(active, started, strict=True)]
    for delivery, outcome, at in zip(active, outcomes, started, strict=True):
        _record(delivery, outcome, at, batch)
    batch.save()
    return len(active)


_executor: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for outbound requests, one pool per process (never inherited across a fork)."""
    global _executor
    if _executor is None or _executor[0] != os.getpid():
        _executor = (os.getpid(), ThreadPoolExecutor(settings.WEBHOOK_SEND_CHUNK, "webhook"))
    return _executor[1]


def _post(delivery: Delivery, at: datetime) -> http.Outcome:
    """Check the URL (DNS can change) and POST; touches no database."""
    try:
        addresses = check_url(delivery.subscription.url)
    except RefusedURL as exc:
        return http.Outcome(None, 0, error_kind="refused_url", error_detail=str(exc)[:300])
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


@dataclass
class _Batch:
    """What one task writes: attempt rows in one INSERT, deliveries in one UPDATE."""

    attempts: list[DeliveryAttempt] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    countdowns: dict[float, list[str]] = field(default_factory=dict)

    def save(self) -> None:
        # Deliveries that ended alike (most often: all succeeded) share one plain UPDATE.
        groups: dict[tuple, list[Delivery]] = defaultdict(list)
        for d in self.deliveries:
            groups[(d.status, d.attempts, d.next_attempt_at, d.last_status_code, d.last_error)].append(d)
        with transaction.atomic():
            DeliveryAttempt.objects.bulk_create(self.attempts)
            for (status, attempts, next_at, code, error), group in groups.items():
                Delivery.objects.filter(id__in=[d.id for d in group]).update(
                    status=status, attempts=attempts, next_attempt_at=next_at,
                    last_status_code=code, last_error=error, updated_at=group[0].updated_at)
            for delay, ids in self.countdowns.items():
                publish_on_commit(ids, countdown=delay)


def _record(delivery: Delivery, outcome: http.Outcome, now: datetime, batch: _Batch) -> None:
    subscription = delivery.subscription
    delivery.updated_at = now
    delivery.attempts += 1
    batch.attempts.append(DeliveryAttempt(
        delivery=delivery, number=delivery.attempts, attempted_at=now,
        status_code=outcome.status_code, duration_ms=outcome.duration_ms,
        response_excerpt=outcome.excerpt, error_kind=outcome.error_kind,
        error_detail=outcome.error_detail,
    ))
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error_detail or (
        f"HTTP {outcome.status_code}" if outcome.error_kind == "http_status" else "")
    batch.deliveries.append(delivery)
    if outcome.ok:
        delivery.status, delivery.next_attempt_at = Delivery.Status.SUCCEEDED, None
        if subscription.failing_since:
            subscription.failing_since = None
            Subscription.objects.filter(id=subscription.id).update(failing_since=None)
        return
    _failed(delivery, outcome, now, batch)


def _failed(delivery: Delivery, outcome: http.Outcome, now: datetime, batch: _Batch) -> None:
    subscription = delivery.subscription
    if outcome.status_code == 410:
        subscription_disable(subscription, reason="The endpoint answered 410 Gone", now=now)
    elif _failing_too_long(subscription, now):
        days = settings.WEBHOOK_DISABLE_AFTER_DAYS
        subscription_disable(subscription, reason=f"Every delivery failed for {days} days", now=now)
    delay = retry_delay(delivery.attempts, outcome)
    if delay is None or not subscription.active:
        delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
        return
    due = now + timedelta(seconds=delay)
    if delay <= settings.RELAY_MAX_COUNTDOWN:
        delivery.next_attempt_at = due + grace()
        batch.countdowns.setdefault(round(delay, 3), []).append(delivery.id)
    else:
        delivery.next_attempt_at = due


def retry_delay(attempts_made: int, outcome: http.Outcome) -> float | None:
    """Seconds until the next attempt, or None when there is none (final answer, or the
    schedule is spent). The schedule is jittered ±20%; Retry-After wins within bounds."""
    status = outcome.status_code
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return None
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts_made > len(schedule):
        return None
    if status in RETRY_AFTER_STATUSES and outcome.retry_after is not None:
        return min(max(outcome.retry_after, 1.0), settings.WEBHOOK_RETRY_AFTER_MAX)
    return schedule[attempts_made - 1] * random.uniform(0.8, 1.2)


def _failing_too_long(subscription: Subscription, now: datetime) -> bool:
    if subscription.failing_since is None:
        subscription.failing_since = now
        Subscription.objects.filter(id=subscription.id, failing_since__isnull=True).update(
            failing_since=now)
        return False
    return now - subscription.failing_since >= timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)


def subscription_disable(subscription: Subscription, *, reason: str, now: datetime) -> None:
    log.warning("disabling subscription %s: %s", subscription.id, reason)
    Subscription.objects.filter(id=subscription.id).update(
        active=False, disabled_at=now, disabled_reason=reason, updated_at=now)
    subscription.active, subscription.disabled_at, subscription.disabled_reason = False, now, reason


