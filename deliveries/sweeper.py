"""The safety net for webhooks: subscriptions whose due work nobody claimed get a task.

A delivery whose task was lost, whose claim lapsed (a killed worker) or whose long retry
has come is overdue once its next_attempt_at has passed. The sweeper publishes one task per
subscription with overdue work (at most `limit` subscriptions a sweep), never one per row:
that task takes the subscription's oldest due work within its in-flight bound, and its
follow-ups drain the rest. Backing-off subscriptions get nothing until their next probe.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from .claims import resting
from .dispatch import publish_on_commit
from .models import Delivery

log = logging.getLogger(__name__)


def sweep_due_deliveries(*, now: datetime | None = None, limit: int = 500) -> int:
    """Returns how many subscriptions were given a task: those waiting longest first, and
    none that could not claim now (a claim in flight, or backing off before its probe)."""
    now = now or timezone.now()
    overdue = Delivery.objects.filter(next_attempt_at__lte=now)
    # Rows that are no longer pending have no work due: clear them off the due index.
    overdue.exclude(status=Delivery.Status.PENDING).update(next_attempt_at=None)
    longest_waiting = list(
        overdue.filter(status=Delivery.Status.PENDING).values("subscription_id")
        .annotate(first=Min("next_attempt_at")).order_by("first")
        .values_list("subscription_id", flat=True)[:limit * 2]
    )
    busy = resting(longest_waiting, now)
    ready = [subscription_id for subscription_id in longest_waiting if subscription_id not in busy][:limit]
    with transaction.atomic():
        for subscription_id in ready:
            publish_on_commit(subscription_id)
    if ready:
        log.info("sweep: %d subscriptions with overdue deliveries", len(ready))
    return len(ready)
