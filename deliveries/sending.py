"""Delivering webhooks: sign, POST, log the attempt, and decide what comes next.

A task works for one subscription (see dispatch), so its slowest request is that
subscription's own. In rounds, it claims within the subscription's in-flight bound (see
claims), posts concurrently, and records attempts, deliveries and the subscription's health
in one transaction, while the subscription has due work and for DRAIN_SECONDS at most: a
busy healthy endpoint is drained without a trip through the queue per round. Then it
publishes at most one follow-up for the subscription: at once when more work is due, or a
countdown to the next due retry (to the whole second, so the retries of a batch ride
together) or probe.
"""

import json
import logging
import math
import os
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from comms.leases import grace
from comms.outages import after_commit
from comms.payloads import event_payload

from . import health, http
from .claims import Claim, claim
from .dispatch import publish_on_commit
from .models import Delivery, DeliveryAttempt, Subscription
from .signing import signature_header
from .urlguard import RefusedURL, check_url

log = logging.getLogger(__name__)

# 4xx answers worth another try; every other 4xx is final.
RETRYABLE_4XX = {408, 409, 425, 429}
RETRY_AFTER_STATUSES = {429, 503}
RESERVED_HEADERS = {"content-type", "user-agent", "webhook-id", "webhook-timestamp",
                    "webhook-signature", "content-length", "host", "transfer-encoding"}
# A task starts no new round after this long, so one subscription's backlog takes turns
# with everyone else's; a round itself ends within WEBHOOK_TIMEOUT.
DRAIN_SECONDS = 5.0


def send_deliveries(delivery_ids: list[str], *, subscription_id: str | None = None,
                    now: datetime | None = None) -> int:
    """One attempt for each claimable delivery among these; returns how many were tried.
    Without a subscription id (tasks of an earlier release) the ids are grouped first."""
    if subscription_id is not None:
        return send_for_subscription(subscription_id, delivery_ids, now=now)
    grouped: dict[str, list[str]] = defaultdict(list)
    for delivery_id, owner in Delivery.objects.filter(id__in=delivery_ids).values_list("id", "subscription_id"):
        grouped[owner].append(delivery_id)
    return sum(send_for_subscription(owner, ids, now=now) for owner, ids in grouped.items())


def send_for_subscription(subscription_id: str, delivery_ids: list[str], *,
                          now: datetime | None = None) -> int:
    """Rounds of attempts while the subscription has due work; returns how many were made."""
    stop_after = time.monotonic() + DRAIN_SECONDS
    tried, claimed_any = 0, False
    while True:
        claimed = claim(subscription_id, delivery_ids, now or timezone.now())
        if not claimed.deliveries:
            break
        claimed_any = True
        if claimed.subscription.active:
            tried += _attempt(claimed)
        else:
            _close_inactive(claimed, now or timezone.now())
        if time.monotonic() > stop_after:
            break
        delivery_ids = []
    if claimed_any:
        _follow_up_on_commit(subscription_id)
    return tried


def _attempt(claimed: Claim) -> int:
    started = timezone.now()
    outcomes = _post_all(claimed.deliveries, started)
    _record(claimed, outcomes, started)
    return len(outcomes)


def _post_all(deliveries: list[Delivery], at: datetime) -> list[http.Outcome]:
    """The round's requests, concurrently. A request still unanswered WEBHOOK_ROUND_SECONDS
    after the round began is recorded as a timeout (urllib3's timeouts bound each socket
    read, not the whole exchange, and an endpoint can trickle), so every round is recorded
    well inside its claim's lease, and nothing is claimed twice."""
    futures = [_pool().submit(_post, delivery, at) for delivery in deliveries]
    done, _ = wait(futures, timeout=settings.WEBHOOK_ROUND_SECONDS)
    cut_off = http.Outcome(None, int(settings.WEBHOOK_ROUND_SECONDS * 1000), error_kind="timeout",
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


def _record(claimed: Claim, outcomes: list[http.Outcome], now: datetime) -> None:
    with transaction.atomic():
        ours = _still_ours(claimed.deliveries)
        results = [(d, o) for d, o in zip(claimed.deliveries, outcomes, strict=True) if d.id in ours]
        if not results:
            return
        subscription = claimed.subscription
        if not health.unchanged_by(subscription, [o for _, o in results]):
            subscription = Subscription.objects.select_for_update(no_key=True).filter(id=subscription.id).first()
            if subscription is None:
                return  # deleted meanwhile, and its deliveries with it
            # Attempts at an address the subscription no longer has say nothing of its health.
            if subscription.url == claimed.subscription.url:
                health.record_outcomes(subscription, [o for _, o in results], now)
        attempts = []
        for delivery, outcome in results:
            delivery.attempts += 1
            attempts.append(_attempt_row(delivery, outcome, now, probe=claimed.probe))
            _decide(delivery, outcome, now, subscription_active=subscription.active)
        DeliveryAttempt.objects.bulk_create(attempts)
        _save([d for d, _ in results], now)


def _still_ours(deliveries: list[Delivery]) -> set[str]:
    """The claimed rows this claim still holds, locked until its record commits: neither
    deleted nor, after a lapsed lease, claimed by another."""
    return set(Delivery.objects.select_for_update(no_key=True).filter(
        id__in=[d.id for d in deliveries], status=Delivery.Status.PENDING,
        leased_until=deliveries[0].leased_until,
    ).values_list("id", flat=True))


def _attempt_row(delivery: Delivery, outcome: http.Outcome, now: datetime, *, probe: bool) -> DeliveryAttempt:
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error_detail or (
        f"HTTP {outcome.status_code}" if outcome.error_kind == "http_status" else "")
    return DeliveryAttempt(
        delivery=delivery, number=delivery.attempts, attempted_at=now,
        status_code=outcome.status_code, duration_ms=outcome.duration_ms,
        response_excerpt=outcome.excerpt, error_kind=outcome.error_kind,
        error_detail=outcome.error_detail, probe=probe,
    )


def _decide(delivery: Delivery, outcome: http.Outcome, now: datetime, *, subscription_active: bool) -> None:
    """The delivery's next state after this attempt."""
    delay = None if outcome.ok or not subscription_active else retry_delay(delivery.attempts, outcome)
    if delay is None:
        delivery.status = Delivery.Status.SUCCEEDED if outcome.ok else Delivery.Status.FAILED
        delivery.next_attempt_at = None
        return
    due = now + timedelta(seconds=delay)
    # Claims take rows up to a grace ahead of their next_attempt_at, so a short retry adds
    # the grace to stay unclaimable before it is due; a long one is the sweeper's.
    delivery.next_attempt_at = due + grace() if delay <= settings.RELAY_MAX_COUNTDOWN else due


def _close_inactive(claimed: Claim, now: datetime) -> None:
    """A disabled subscription's deliveries are not sent: they end as failed."""
    for delivery in claimed.deliveries:
        delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
        delivery.last_error = "subscription disabled"
    with transaction.atomic():
        ours = _still_ours(claimed.deliveries)
        _save([d for d in claimed.deliveries if d.id in ours], now)


def _save(deliveries: list[Delivery], now: datetime) -> None:
    """Deliveries that ended alike (most often: all succeeded) share one UPDATE, which also
    ends their lease; only rows still pending change."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for d in deliveries:
        groups[(d.status, d.attempts, d.next_attempt_at, d.last_status_code, d.last_error)].append(d.id)
    for (status, attempts, next_at, code, error), ids in groups.items():
        Delivery.objects.filter(id__in=ids, status=Delivery.Status.PENDING).update(
            status=status, attempts=attempts, next_attempt_at=next_at, leased_until=None,
            last_status_code=code, last_error=error, updated_at=now)


def _follow_up_on_commit(subscription_id: str) -> None:
    """Once the last claim's lease is released: at most one task for whatever the
    subscription has next, its due work now or a countdown to its next retry or probe
    (later than RELAY_MAX_COUNTDOWN is the sweeper's).

    After commit, not before: a task that found a claim of ours in flight left its
    deliveries to us, and only a look taken after our last commit is sure to see them."""
    after_commit(lambda: _follow_up(subscription_id))


def _follow_up(subscription_id: str) -> None:
    now = timezone.now()
    subscription = Subscription.objects.filter(id=subscription_id).only("active", "next_probe_at").first()
    waiting = Delivery.objects.filter(
        Q(leased_until__isnull=True) | Q(leased_until__lte=now),
        subscription_id=subscription_id, status=Delivery.Status.PENDING, next_attempt_at__isnull=False,
    ).aggregate(first=Min("next_attempt_at"))["first"]
    if subscription is None or waiting is None:
        return
    due = waiting - grace()
    if subscription.active and subscription.next_probe_at:
        due = max(due, subscription.next_probe_at)
    delay = (due - now).total_seconds()
    if delay <= settings.RELAY_MAX_COUNTDOWN:
        publish_on_commit(subscription_id, countdown=math.ceil(delay) if delay > 0 else None)


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
