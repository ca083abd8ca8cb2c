"""Publishing delivery tasks after commit: always one subscription's deliveries per task.

A task never carries two subscriptions' deliveries, so a slow endpoint can only ever hold
up its own; an empty id list asks the task to take that subscription's oldest due work.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import transaction


def publish_on_commit(subscription_id: str, delivery_ids: Sequence[str] = (), *,
                      countdown: float | None = None) -> None:
    """Tasks of WEBHOOK_SEND_CHUNK ids (or one with none), once the transaction commits.

    A failure to publish is logged, not raised: the rows are the outbox, and the sweeper
    publishes again for what nobody claimed.
    """
    from .tasks import send_deliveries

    ids = list(delivery_ids)
    size = settings.WEBHOOK_SEND_CHUNK
    chunks = [ids[start:start + size] for start in range(0, len(ids), size)] or [[]]

    def publish() -> None:
        for chunk in chunks:
            send_deliveries.apply_async((chunk, subscription_id), countdown=countdown)

    transaction.on_commit(publish, robust=True)


def publish_by_subscription_on_commit(deliveries: Iterable[tuple[str, str]]) -> None:
    """`deliveries` are (subscription id, delivery id) pairs."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for subscription_id, delivery_id in deliveries:
        grouped[subscription_id].append(delivery_id)
    for subscription_id, ids in grouped.items():
        publish_on_commit(subscription_id, ids)
