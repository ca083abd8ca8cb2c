"""A subscription's health: its run of failures, its circuit breaker, and when it is disabled.

Written in the transaction that records the attempts it comes from, under the
subscription's row lock, so concurrent tasks of one subscription add up instead of
overwriting each other.
"""

import enum
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings

from .http import Outcome
from .models import DeliveryAttempt, Subscription

log = logging.getLogger(__name__)

# Attempts that never got an answer: what the circuit breaker counts. An endpoint that
# answers, even with an error, answers fast and holds nobody up.
UNREACHABLE = {DeliveryAttempt.ErrorKind.TIMEOUT, DeliveryAttempt.ErrorKind.CONNECTION}

HEALTH_FIELDS = ["failing_since", "unreachable_streak", "backing_off_since", "next_probe_at",
                 "active", "disabled_at", "disabled_reason"]


class State(enum.StrEnum):
    HEALTHY = "healthy"
    FAILING = "failing"
    BACKING_OFF = "backing-off"
    INACTIVE = "inactive"


def state_of(subscription: Subscription) -> State:
    if not subscription.active:
        return State.INACTIVE
    if subscription.next_probe_at is not None:
        return State.BACKING_OFF
    return State.FAILING if subscription.failing_since else State.HEALTHY


def is_healthy(subscription: Subscription) -> bool:
    """Active, no failure since its last success, nothing unanswered, not backing off: a
    subscription whose round can only change its deliveries if all goes well."""
    return subscription.active and subscription.failing_since is None and \
        subscription.unreachable_streak == 0 and subscription.backing_off_since is None and \
        subscription.next_probe_at is None


def unchanged_by(subscription: Subscription, outcomes: Sequence[Outcome]) -> bool:
    """A healthy subscription whose attempts all succeeded stays as it is: the common case,
    which needs neither its row lock nor a write."""
    return all(o.ok for o in outcomes) and is_healthy(subscription)


def record_outcomes(subscription: Subscription, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Fold one task's attempts into the subscription (already locked and fresh)."""
    if not outcomes:
        return
    if any(o.ok for o in outcomes):
        subscription.failing_since = None
    elif subscription.failing_since is None:
        subscription.failing_since = now
    if any(o.status_code is not None for o in outcomes):
        _close_breaker(subscription)
    else:
        subscription.unreachable_streak += sum(1 for o in outcomes if o.error_kind in UNREACHABLE)
        _maybe_open_breaker(subscription, now)
    if any(o.status_code == 410 for o in outcomes):
        disable(subscription, reason="The endpoint answered 410 Gone", now=now)
    elif subscription.failing_since and \
            now - subscription.failing_since >= timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS):
        disable(subscription, reason=f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS:g} days",
                now=now)
    subscription.updated_at = now
    subscription.save(update_fields=[*HEALTH_FIELDS, "updated_at"])


def _close_breaker(subscription: Subscription) -> None:
    if subscription.backing_off_since:
        log.info("subscription %s answers again: backing off ends", subscription.id)
    subscription.unreachable_streak = 0
    subscription.backing_off_since = subscription.next_probe_at = None


def _maybe_open_breaker(subscription: Subscription, now: datetime) -> None:
    if subscription.unreachable_streak < settings.WEBHOOK_BREAKER_THRESHOLD:
        return
    if subscription.backing_off_since is not None:
        return  # a failed probe: its claim already set the next one an interval after it
    log.warning("subscription %s: %d attempts in a row unanswered, backing off",
                subscription.id, subscription.unreachable_streak)
    subscription.backing_off_since = now
    subscription.next_probe_at = now + timedelta(seconds=settings.WEBHOOK_BREAKER_PROBE_INTERVAL)


def disable(subscription: Subscription, *, reason: str, now: datetime) -> None:
    log.warning("disabling subscription %s: %s", subscription.id, reason)
    subscription.active, subscription.disabled_at, subscription.disabled_reason = False, now, reason
    subscription.updated_at = now
