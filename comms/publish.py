"""Publishing tasks by name, once the transaction that made their work commits.

The only way work reaches the broker: services decide and write rows, then ask this module
to publish. Tasks are named, not imported, so only `tasks.py` modules import task functions
and no service depends on one. The routes (CELERY_TASK_ROUTES) send each name to its
stage's queue. A failure to publish is an outage to wait out (see outages.after_commit): the
rows are the outbox, and the sweepers publish again what nobody claimed.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from celery import current_app
from django.conf import settings

from .outages import after_commit

SEND_MESSAGES = "comms.send_messages"
START_SCHEDULED = "comms.start_scheduled"
PROCESS_RECEIPTS = "comms.process_receipts"
SEND_DELIVERIES = "deliveries.send_deliveries"


def publish(name: str, args: Sequence, *, countdown: float | None = None) -> None:
    """Publish now, on the app's pooled producer connection."""
    current_app.send_task(name, args=tuple(args), countdown=countdown)


def sends_on_commit(message_ids: Sequence[str], *, countdown: float | None = None) -> None:
    """Send tasks of RELAY_SEND_CHUNK ids each."""
    ids = list(message_ids)
    size = settings.RELAY_SEND_CHUNK

    def publish_chunks() -> None:
        for start in range(0, len(ids), size):
            publish(SEND_MESSAGES, (ids[start:start + size],), countdown=countdown)

    if ids:
        after_commit(publish_chunks)


def starts_on_commit(messages: Iterable[tuple[str, datetime]], now: datetime) -> None:
    """A countdown to its sendAt for each scheduled message, one task per distinct time."""
    by_time: dict[datetime, list[str]] = defaultdict(list)
    for message_id, send_at in messages:
        by_time[send_at].append(message_id)

    def publish_countdowns() -> None:
        for send_at, ids in by_time.items():
            publish(START_SCHEDULED, (ids,), countdown=max((send_at - now).total_seconds(), 0))

    if by_time:
        after_commit(publish_countdowns)


def receipts_on_commit(channel_name: str, payloads: list[dict], *, tries: int = 0,
                       countdown: float | None = None) -> None:
    """Receipts to process on the receipts queue, as if the provider had just posted them."""
    if payloads:
        after_commit(lambda: publish(PROCESS_RECEIPTS, (channel_name, payloads, tries), countdown=countdown))


def deliveries_on_commit(subscription_id: str, delivery_ids: Sequence[str] = (), *,
                         countdown: float | None = None) -> None:
    """Webhook tasks of WEBHOOK_SEND_CHUNK ids for one subscription (one with none asks the
    task to take the subscription's oldest due work)."""
    ids = list(delivery_ids)
    after_commit(lambda: publish_deliveries(subscription_id, ids, countdown=countdown))


def publish_deliveries(subscription_id: str, ids: list[str], *, countdown: float | None = None) -> None:
    size = settings.WEBHOOK_SEND_CHUNK
    for chunk in [ids[start:start + size] for start in range(0, len(ids), size)] or [[]]:
        publish(SEND_DELIVERIES, (chunk, subscription_id), countdown=countdown)
