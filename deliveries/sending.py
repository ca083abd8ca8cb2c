"""Delivering webhooks: a task's rounds of attempts for one subscription.

A task works for one subscription (see dispatch), so its slowest request is that
subscription's own. In rounds, it claims what the subscription may take (see claims), posts
it over at most the subscription's bound of concurrent lanes (posting), and records
attempts, deliveries and the subscription's health in one transaction (recording), while
the subscription has due work and for DRAIN_SECONDS at most: a busy healthy endpoint is
drained without a trip through the queue per round. Then it publishes at most one
follow-up for the subscription.
"""

import time
from collections import defaultdict
from datetime import datetime

from django.utils import timezone

from .claims import Claim, claim
from .dispatch import follow_up_on_commit
from .models import Delivery
from .posting import post_round
from .recording import close_inactive, record_round

# A task starts no new round after this long, so one subscription's backlog takes turns
# with everyone else's; a round itself ends within WEBHOOK_ROUND_SECONDS.
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
            close_inactive(claimed, now or timezone.now())
        if time.monotonic() > stop_after:
            break
        delivery_ids = []
    if claimed_any:
        follow_up_on_commit(subscription_id)
    return tried


def _attempt(claimed: Claim) -> int:
    started = timezone.now()
    outcomes = post_round(claimed.deliveries, started)
    record_round(claimed, outcomes, started)
    return sum(1 for outcome in outcomes if outcome is not None)
