"""Publishing delivery tasks after commit: always one subscription's deliveries per task.

A task never carries two subscriptions' deliveries, so a slow endpoint can only ever hold
up its own; an empty id list asks the task to take that subscription's oldest due work.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.utils import timezone

from comms.outages import after_commit

from .claims import resting


def publish_on_commit(subscription_id: str, delivery_ids: Sequence[str] = (), *,
                      countdown: float | None = None) -> None:
    """Tasks of WEBHOOK_SEND_CHUNK ids (or one with none), once the transaction commits.

    A failure to publish is logged, not raised: the rows are the outbox, and the sweeper
    publishes again for what nobody claimed.
    """
    ids = list(delivery_ids)
    after_commit(lambda: _publish(subscription_id, ids, countdown))


def publish_new_work_on_commit(deliveries: Iterable[tuple[str, str]]) -> None:
    """New deliveries, (subscription id, delivery id) pairs: a task for each subscription
    that could take them now, none for one that could not (see claims.resting).

    A flood of tasks that could only find their subscription busy would queue everyone
    else's webhooks behind them. Decided after commit, so it cannot strand anything: a
    claim seen in flight here commits later, and its follow-up looks after that commit,
    when these rows are visible.
    """
    grouped = _grouped(deliveries)
    if not grouped:
        return

    def publish() -> None:
        for subscription_id in set(grouped) - resting(grouped, timezone.now()):
            _publish(subscription_id, grouped[subscription_id])

    after_commit(publish)


def _publish(subscription_id: str, ids: list[str], countdown: float | None = None) -> None:
    from .tasks import send_deliveries

    size = settings.WEBHOOK_SEND_CHUNK
    for chunk in [ids[start:start + size] for start in range(0, len(ids), size)] or [[]]:
        send_deliveries.apply_async((chunk, subscription_id), countdown=countdown)


def _grouped(deliveries: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for subscription_id, delivery_id in deliveries:
        grouped[subscription_id].append(delivery_id)
    return grouped
