"""Recording a round: its attempt rows, what becomes of each delivery, and the
subscription's health, in one transaction.

Whenever the round changes the subscription's health (its run of failures, its breaker, a
disable), the subscription's row is locked first, so concurrent rounds of one subscription
add up instead of overwriting each other, and that health commits with the attempts that
caused it, or not at all. Only the deliveries the claim still holds are recorded: a round
recorded after its lease lapsed and another worker claimed them changes nothing. Those the
round never started (see posting) are given back under the same guard.
"""

from datetime import datetime

from django.db import transaction

from comms import bulk, metrics

from . import health, http, lifecycle
from .claims import Claim, still_held
from .lifecycle import Change, Only
from .models import Delivery, DeliveryAttempt, Subscription
from .retries import after_attempt

# A delivery its round never started: still pending and due as it was, its attempts
# unspent; only the claim on it ends (a change made under a claim ends it).
NOT_ATTEMPTED = Change(Delivery.Status.PENDING)


def record_round(claimed: Claim, outcomes: list[http.Outcome | None], now: datetime) -> None:
    """Record a round of attempts, made `now`, at the claimed deliveries. A delivery whose
    outcome is None was not attempted: it gets no attempt row and goes back as it was."""
    attempted = [(d, o) for d, o in zip(claimed.deliveries, outcomes, strict=True) if o is not None]
    given_back = {d.id: NOT_ATTEMPTED for d, o in zip(claimed.deliveries, outcomes, strict=True) if o is None}
    with transaction.atomic():
        if health.unchanged_by(claimed.subscription, [o for _, o in attempted]):
            # All answered 2xx at a healthy subscription: only the deliveries change, and the
            # guarded UPDATE itself tells which ones this claim still held.
            changes = {d.id: after_attempt(d.attempts + 1, o, now, subscription_active=True) for d, o in attempted}
            held = lifecycle.change_deliveries(changes=changes | given_back, only=_held_by(claimed), now=now)
            _insert_attempts(claimed, [(d, o) for d, o in attempted if d.id in held], now)
        else:
            _record_with_health(claimed, attempted, given_back, now)


def _record_with_health(claimed: Claim, attempted: list[tuple[Delivery, http.Outcome]],
                        given_back: dict[str, Change], now: datetime) -> None:
    subscription = Subscription.objects.select_for_update(no_key=True).filter(id=claimed.subscription.id).first()
    if subscription is None:
        return  # deleted meanwhile, and its deliveries with it
    held = still_held(claimed)
    results = [(d, o) for d, o in attempted if d.id in held]
    # Attempts at an address the subscription no longer has say nothing of its health.
    if subscription.url == claimed.subscription.url:
        health.record_outcomes(subscription, [o for _, o in results], now)
    changes = {d.id: after_attempt(d.attempts + 1, o, now, subscription_active=subscription.active)
               for d, o in results}
    lifecycle.change_deliveries(changes=changes | given_back, only=_held_by(claimed), now=now)
    _insert_attempts(claimed, results, now)


def _insert_attempts(claimed: Claim, results: list[tuple[Delivery, http.Outcome]], now: datetime) -> None:
    bulk.insert([_attempt_row(d, o, now, probe=claimed.probe) for d, o in results])
    metrics.webhook_attempts(o for _, o in results)


def close_inactive(claimed: Claim, now: datetime) -> None:
    """A disabled subscription's deliveries are not sent: they end as failed."""
    closed = Change(Delivery.Status.FAILED, last_error="subscription disabled")
    lifecycle.change_deliveries(changes={d.id: closed for d in claimed.deliveries}, only=_held_by(claimed), now=now)


def _held_by(claimed: Claim) -> Only:
    return Only(from_statuses={Delivery.Status.PENDING}, lease=claimed.lease)


def _attempt_row(delivery: Delivery, outcome: http.Outcome, now: datetime, *, probe: bool) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery=delivery, number=delivery.attempts + 1, attempted_at=now,
        status_code=outcome.status_code, duration_ms=outcome.duration_ms,
        response_excerpt=outcome.excerpt, error_kind=outcome.error_kind,
        error_detail=outcome.error_detail, probe=probe,
    )
