"""Claiming one subscription's deliveries for an attempt, within its share of the fleet.

A claim holds the subscription's row lock while it looks at what is in flight, so every
worker sees the same picture: one claim of a subscription in flight at a time, fleet-wide.
Its round posts over at most WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION lanes (see posting), so
a hanging endpoint holds one worker thread and that many connections, however many tasks
ask; the task in flight publishes a follow-up for the rest when it is done. A healthy
subscription's claim takes up to WEBHOOK_ROUND_MAX, so a round's fixed costs (claim, load,
record) are shared by more deliveries; any other's only as many as it has lanes, and while
it backs off (circuit breaker open) nothing but, once per probe interval, a single probe.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from comms.leases import ClaimSpec, claim_due

from . import health
from .models import Delivery, Subscription


@dataclass
class Claim:
    subscription: Subscription | None
    deliveries: list[Delivery] = field(default_factory=list)
    # The one attempt let through while backing off, to see whether the endpoint is back.
    probe: bool = False

    @property
    def lease(self) -> datetime | None:
        """The end of this claim's lease, the same on every row it took."""
        return self.deliveries[0].leased_until if self.deliveries else None


def claim(subscription_id: str, delivery_ids: Sequence[str], now: datetime) -> Claim:
    """Claim among `delivery_ids` (topped up with the subscription's oldest due work) as
    many as the subscription may have in flight now."""
    delivery_ids = list(dict.fromkeys(delivery_ids))
    # Most tasks of a busy subscription find a claim in flight: they learn it without
    # queueing for the row lock behind one another (the lock is taken, and this looked at
    # again, only when there is a chance to claim).
    if in_flight(subscription_id, now):
        return Claim(None)
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update(no_key=True).filter(id=subscription_id).first()
        if subscription is None:  # deleted, and its deliveries with it
            return Claim(None)
        room, probe = _room(subscription, now)
        spec = ClaimSpec(Delivery, {Delivery.Status.PENDING}, scope=("subscription_id", subscription_id))
        claimed = claim_due(spec, delivery_ids, now, fill_to=room, limit=room)
        if probe and claimed:
            subscription.next_probe_at = now + timedelta(seconds=settings.WEBHOOK_BREAKER_PROBE_INTERVAL)
            Subscription.objects.filter(id=subscription_id).update(next_probe_at=subscription.next_probe_at)
    if not claimed:
        return Claim(subscription)
    deliveries = list(
        Delivery.objects.filter(id__in=claimed)
        .select_related("event__message__channel")
        # What a payload needs; a message's content can be large.
        .defer("event__message__content", "event__message__sender", "event__message__receiver")
        .order_by("event__message_id", "event__sequence")
    )
    for delivery in deliveries:
        delivery.subscription = subscription
    return Claim(subscription, deliveries, probe=probe and bool(deliveries))


def still_held(claimed: Claim) -> set[str]:
    """The claimed rows this claim still holds, locked until the transaction ends: neither
    deleted, nor finished, nor (after a lapsed lease) claimed by another."""
    return set(Delivery.objects.select_for_update(no_key=True).filter(
        id__in=[d.id for d in claimed.deliveries], status=Delivery.Status.PENDING, leased_until=claimed.lease,
    ).values_list("id", flat=True))


def _room(subscription: Subscription, now: datetime) -> tuple[int, bool]:
    """How many attempts this claim may start, and whether the one it starts is a probe."""
    chunk = settings.WEBHOOK_SEND_CHUNK
    if not subscription.active:
        return chunk, False  # nothing is sent: its deliveries are only closed as failed
    if in_flight(subscription.id, now):
        return 0, False
    if health.is_healthy(subscription):
        return settings.WEBHOOK_ROUND_MAX, False
    if subscription.next_probe_at is None:
        # Failing: one delivery per lane, so an endpoint in trouble gets no more requests per
        # round, and its breaker opens after no more attempts, than before lanes.
        return min(chunk, settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION), False
    # Backing off: a single probe, once its time has come.
    return (1, True) if subscription.next_probe_at <= now else (0, False)


def in_flight(subscription_id: str, now: datetime) -> int:
    """Deliveries claimed and not yet recorded (or given back); a dead worker's count lapses
    with its lease."""
    return Delivery.objects.filter(subscription_id=subscription_id, status=Delivery.Status.PENDING,
                                   leased_until__gt=now).count()


def resting(subscription_ids: Collection[str], now: datetime) -> set[str]:
    """Those of these subscriptions that a new task could not claim for now: one with a
    claim in flight (that claim's follow-up comes for the rest), or backing off until a
    probe that is not yet due (the probe's follow-up, or the sweeper, comes then)."""
    in_flight_now = Delivery.objects.filter(
        subscription_id__in=subscription_ids, status=Delivery.Status.PENDING, leased_until__gt=now,
    ).values_list("subscription_id", flat=True)
    waiting = Subscription.objects.filter(
        id__in=subscription_ids, active=True, next_probe_at__gt=now).values_list("id", flat=True)
    return set(in_flight_now.union(waiting))  # one round trip, on the hot path of every event
