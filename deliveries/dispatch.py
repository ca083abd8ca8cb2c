"""Which delivery tasks to publish, decided once the transaction that made the work commits.

A task always carries one subscription's deliveries, so a slow endpoint can only ever hold
up its own; an empty id list asks the task to take that subscription's oldest due work.
Publishing itself is comms.publish's: by name, so nothing here imports a task.
"""

import math
from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Min, Q
from django.utils import timezone

from comms.due import within_countdown
from comms.outages import after_commit
from comms.publish import publish_deliveries

from .claims import resting
from .models import Delivery, Subscription


def publish_new_work(deliveries: Iterable[tuple[str, str]]) -> None:
    """New deliveries, (subscription id, delivery id) pairs, once committed: a task for each
    subscription that could take them now, none for one that could not (see claims.resting).

    A flood of tasks that could only find their subscription busy would queue everyone
    else's webhooks behind them. Decided after commit, so it cannot strand anything: a
    claim seen in flight here commits later, and its follow-up looks after that commit,
    when these rows are visible.
    """
    grouped: dict[str, list[str]] = defaultdict(list)
    for subscription_id, delivery_id in deliveries:
        grouped[subscription_id].append(delivery_id)
    if grouped:
        for subscription_id in set(grouped) - resting(grouped, timezone.now()):
            publish_deliveries(subscription_id, grouped[subscription_id])


def follow_up_on_commit(subscription_id: str) -> None:
    """Once a task's last claim is released: at most one task for whatever the subscription
    has next, its due work now or a countdown to its next retry or probe (to the whole
    second, so the retries of a round ride together; later than RELAY_MAX_COUNTDOWN is the
    sweeper's).

    After commit, not before: a task that found a claim of ours in flight left its
    deliveries to us, and only a look taken after our last commit is sure to see them."""
    after_commit(lambda: _follow_up(subscription_id))


def _follow_up(subscription_id: str) -> None:
    now = timezone.now()
    subscription = Subscription.objects.filter(id=subscription_id).only("active", "next_probe_at").first()
    due = Delivery.objects.filter(
        Q(leased_until__isnull=True) | Q(leased_until__lte=now),
        subscription_id=subscription_id, status=Delivery.Status.PENDING, due_at__isnull=False,
    ).aggregate(first=Min("due_at"))["first"]
    if subscription is None or due is None:
        return
    if subscription.active and subscription.next_probe_at:
        due = max(due, subscription.next_probe_at)
    if within_countdown(due, now):
        wait = (due - now).total_seconds()
        publish_deliveries(subscription_id, [], countdown=math.ceil(wait) if wait > 0 else None)
