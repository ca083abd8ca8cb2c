"""Delivering webhooks: sign, POST, log the attempt, and decide what comes next."""

import json
import logging
import random
import time
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
                    "webhook-signature", "content-length", "host"}


def send_deliveries(delivery_ids: list[str], *, now: datetime | None = None) -> int:
    """One attempt for each claimable delivery among these; returns how many were tried."""
    now = now or timezone.now()
    deliveries = claim(delivery_ids, now)
    # One subscription object per subscription, so a 410 disables it for the rest of the batch.
    subscriptions: dict[str, Subscription] = {}
    for delivery in deliveries:
        delivery.subscription = subscriptions.setdefault(delivery.subscription_id, delivery.subscription)
    # Leave room for one full request before the task's soft time limit.
    budget = max(settings.CELERY_TASK_SOFT_TIME_LIMIT - settings.WEBHOOK_TIMEOUT - 5, 1)
    budget_ends = time.monotonic() + budget
    batch = _Batch()
    for index, delivery in enumerate(deliveries):
        if time.monotonic() > budget_ends:
            _release(deliveries[index:])
            break
        _attempt(delivery, batch)
    batch.save()
    return len(batch.attempts)


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
        with transaction.atomic():
            DeliveryAttempt.objects.bulk_create(self.attempts)
            Delivery.objects.bulk_update(
                self.deliveries,
                ["status", "attempts", "next_attempt_at", "last_status_code", "last_error", "updated_at"],
            )
            for delay, ids in self.countdowns.items():
                publish_on_commit(ids, countdown=delay)


def _attempt(delivery: Delivery, batch: _Batch) -> None:
    subscription = delivery.subscription
    now = timezone.now()
    delivery.updated_at = now
    if not subscription.active:
        delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
        delivery.last_error = "subscription disabled"
        batch.deliveries.append(delivery)
        return
    try:
        check_url(subscription.url)
    except RefusedURL as exc:
        outcome = http.Outcome(None, 0, error_kind="refused_url", error_detail=str(exc)[:300])
    else:
        body, headers = request_for(delivery, now)
        outcome = http.post(subscription.url, body, headers)
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


def _release(deliveries: list[Delivery]) -> None:
    ids = [d.id for d in deliveries]
    with transaction.atomic():
        Delivery.objects.filter(id__in=ids, status=Delivery.Status.PENDING).update(
            next_attempt_at=timezone.now() + grace())
        publish_on_commit(ids)
