"""The safety net for webhooks: subscriptions whose due work nobody claimed get a task.

A delivery is overdue once it is still unclaimed a grace after it fell due (see comms.due):
its task was lost, its claim lapsed (a killed worker), or its long retry has come. The
sweeper publishes one task per subscription with overdue work (at most `limit`
subscriptions a sweep), never one per row: that task takes the subscription's oldest due
work within its in-flight bound, and its follow-ups drain the rest. Backing-off
subscriptions, and those with a claim in flight, get nothing (see claims.resting).
"""

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Min, Q, QuerySet
from django.utils import timezone

from comms.due import overdue_before
from comms.publish import deliveries_on_commit

from .claims import resting
from .models import Delivery

log = logging.getLogger(__name__)


def sweep_due_deliveries(*, now: datetime | None = None, limit: int = 500) -> int:
    """Returns how many subscriptions were given a task: those waiting longest first, and
    none that could not claim now (a claim in flight, or backing off before its probe)."""
    now = now or timezone.now()
    overdue = Delivery.objects.filter(
        Q(leased_until__isnull=True) | Q(leased_until__lte=now), due_at__lte=overdue_before(now))
    pending = overdue.filter(status=Delivery.Status.PENDING)
    longest_waiting = list(
        pending.values("subscription_id").annotate(first=Min("due_at")).order_by("first")
        .values_list("subscription_id", flat=True)[:limit * 2]
    )
    busy = resting(longest_waiting, now)
    ready = [subscription_id for subscription_id in longest_waiting if subscription_id not in busy][:limit]
    with transaction.atomic():
        # Rows that are no longer pending have no work due: clear them off the due index.
        _unlocked(overdue.exclude(status=Delivery.Status.PENDING)).update(due_at=None)
        # Published now: not overdue again, so not published again, before another grace.
        _unlocked(pending.filter(subscription_id__in=ready)).update(due_at=now, updated_at=now)
        for subscription_id in ready:
            deliveries_on_commit(subscription_id)
    if ready:
        log.info("sweep: %d subscriptions with overdue deliveries", len(ready))
    return len(ready)


def _unlocked(rows: QuerySet) -> QuerySet:
    """These rows but those another transaction holds (a claim, a record): skipped, never
    waited for, as claims skip the sweeper's."""
    return Delivery.objects.filter(id__in=rows.select_for_update(skip_locked=True).values("id"))
