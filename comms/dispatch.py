"""Getting due messages to a worker: publishing send tasks after commit, and claiming.

`Message.next_attempt_at` is when the sweeper should next look at a row. Publishing a send
task gives the row RELAY_DISPATCH_GRACE to be claimed before the sweeper publishes again;
a claim pushes it RELAY_CLAIM_LEASE past that, which is what makes the claim exclusive.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from .models import Message
from .status import SENDABLE

_TABLE = Message._meta.db_table


def grace() -> timedelta:
    return timedelta(seconds=settings.RELAY_DISPATCH_GRACE)


def dispatch_on_commit(message_ids: Sequence[str], *, countdown: float | None = None) -> None:
    """Publish send tasks, RELAY_SEND_CHUNK ids each, once the current transaction commits.

    A failure to publish is logged, not raised: the rows are the outbox, and the sweeper
    publishes again what was not claimed.
    """
    ids = list(message_ids)
    if not ids:
        return

    def publish() -> None:
        from .tasks import send_messages

        size = settings.RELAY_SEND_CHUNK
        for start in range(0, len(ids), size):
            send_messages.apply_async((ids[start:start + size],), countdown=countdown)

    transaction.on_commit(publish, robust=True)


def claim(message_ids: Sequence[str], now: datetime) -> list[Message]:
    """Claim the sendable messages among these for one attempt each; others are skipped.

    A row can be claimed while its next_attempt_at lies within the grace of now: published
    and unclaimed, or due. The claim moves it a lease further, out of every other claimer's
    reach until the lease runs out (a killed worker's claim simply expires).
    """
    if not message_ids:
        return []
    ops = connection.ops
    lease_end = now + grace() + timedelta(seconds=settings.RELAY_CLAIM_LEASE)
    ids = list(message_ids)
    sql = (
        f"UPDATE {_TABLE} SET next_attempt_at = %s "
        f"WHERE id IN ({', '.join(['%s'] * len(ids))}) "
        f"AND status IN ({', '.join(['%s'] * len(SENDABLE))}) AND next_attempt_at <= %s "
        "RETURNING id"
    )
    params = [ops.adapt_datetimefield_value(lease_end), *ids, *sorted(SENDABLE),
              ops.adapt_datetimefield_value(now + grace())]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        claimed = [row[0] for row in cursor.fetchall()]
    if not claimed:
        return []
    by_id = Message.objects.select_related("channel").in_bulk(claimed)
    return [by_id[i] for i in ids if i in by_id]


def release(messages: Sequence[Message], now: datetime) -> None:
    """Give back claims this worker will not use, and publish them again."""
    with transaction.atomic():
        Message.objects.filter(id__in=[m.id for m in messages], status__in=SENDABLE).update(
            next_attempt_at=now + grace()
        )
        dispatch_on_commit([m.id for m in messages])
