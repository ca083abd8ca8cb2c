"""Getting due messages to a worker: publishing send tasks after commit, and claiming."""

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction

from .leases import claim_due, grace
from .models import Message
from .outages import after_commit
from .status import SENDABLE

__all__ = ["claim", "dispatch_on_commit", "grace", "release"]


def dispatch_on_commit(message_ids: Sequence[str], *, countdown: float | None = None) -> None:
    """Publish send tasks, RELAY_SEND_CHUNK ids each, once the current transaction commits.

    A failure to publish is logged, not raised: the rows are the outbox, and the sweeper
    publishes again what was not claimed.
    """
    from .tasks import send_messages

    publish_chunks_on_commit(send_messages, message_ids, settings.RELAY_SEND_CHUNK, countdown)


def publish_chunks_on_commit(task, ids: Sequence[str], size: int, countdown: float | None) -> None:
    ids = list(ids)
    if not ids:
        return

    def publish() -> None:
        for start in range(0, len(ids), size):
            task.apply_async((ids[start:start + size],), countdown=countdown)

    after_commit(publish)


def claim(message_ids: Sequence[str], now: datetime) -> list[Message]:
    """Claim the sendable messages among these for one attempt each (see comms.leases)."""
    message_ids = list(dict.fromkeys(message_ids))  # a repeated id is still one attempt
    if not message_ids:
        return []
    claimed = claim_due(Message, message_ids, SENDABLE, now, mark_column="claimed_until",
                        fill_to=settings.RELAY_SEND_CHUNK)
    if not claimed:
        return []
    by_id = Message.objects.select_related("channel").in_bulk(claimed)
    asked = set(message_ids)
    return [by_id[i] for i in message_ids if i in by_id] + [m for i, m in by_id.items() if i not in asked]


def release(messages: Sequence[Message], now: datetime) -> None:
    """Give back claims this worker will not use, and publish them again."""
    with transaction.atomic():
        Message.objects.filter(id__in=[m.id for m in messages], status__in=SENDABLE).update(
            next_attempt_at=now + grace(), claimed_until=None
        )
        dispatch_on_commit([m.id for m in messages])
