"""The safety net: finds work the broker lost or a dead worker left, and sends it on.

Runs from Celery beat every RELAY_SWEEP_INTERVAL seconds. Rows are claimed with
`FOR UPDATE SKIP LOCKED`, so sweepers on several machines never take the same row.
"""

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from . import scheduling
from .dispatch import dispatch_on_commit, grace
from .models import Message
from .outages import after_commit
from .providers import provider_for
from .status import SENDABLE, Status

log = logging.getLogger(__name__)


def sweep_due_work(*, now: datetime | None = None, limit: int = 2000) -> dict[str, int]:
    now = now or timezone.now()
    counts = {"dispatched": 0, "released": 0, "polled": 0, "cleared": 0}
    with transaction.atomic():
        # The partial index message_due_work holds only rows with work due, so this stays
        # cheap however many messages are at rest.
        due = list(
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .select_related("channel")[:limit]
        )
        by_status: dict[str, list[Message]] = defaultdict(list)
        for message in due:
            by_status[message.status].append(message)

        sendable = [m.id for s in SENDABLE for m in by_status.pop(s, [])]
        if sendable:
            Message.objects.filter(id__in=sendable).update(next_attempt_at=now + grace())
            dispatch_on_commit(sendable)
        counts["dispatched"] = len(sendable)

        counts["released"] = _release_scheduled(by_status.pop(Status.SCHEDULED, []), now)

        counts["polled"] = _poll_overdue_receipts(by_status.pop(Status.SENT, []), now)

        # Anything else had a due time it should not: nothing is due for it.
        rest = [m.id for ms in by_status.values() for m in ms]
        counts["cleared"] = Message.objects.filter(id__in=rest).update(next_attempt_at=None)
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def _release_scheduled(messages: list[Message], now: datetime) -> int:
    """Start what is due; give what comes due within the lookahead its countdown."""
    started = scheduling.start_due([m.id for m in messages if m.send_at <= now], now)
    soon = [m for m in messages if m.send_at > now]
    for message in soon:
        message.next_attempt_at = scheduling.next_look(message.send_at, now)
    Message.objects.bulk_update(soon, ["next_attempt_at"])
    scheduling.publish_countdowns_on_commit([(m.id, m.send_at) for m in soon], now)
    return len(started)


def _poll_overdue_receipts(messages: list[Message], now: datetime) -> int:
    by_channel: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_channel[message.channel_id].append(message)
    for items in by_channel.values():
        provider = provider_for(items[0].channel)
        for message in items:
            timeout = provider.receipt_timeout(message)
            message.next_attempt_at = now + timedelta(seconds=timeout) if timeout is not None else None
        Message.objects.bulk_update(items, ["next_attempt_at"])
        after_commit(lambda p=provider, ms=items: p.poll(ms))
    return len(messages)
