"""The safety net: finds work the broker lost or a dead worker left, and sends it on.

Runs from Celery beat every RELAY_SWEEP_INTERVAL seconds. It takes the rows that fell due
more than a grace ago and hold no live lease (see comms.due), with `FOR UPDATE SKIP
LOCKED`, so sweepers on several machines never take the same row.
"""

import logging
from collections import defaultdict
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import due, scheduling
from .models import Message
from .providers import provider_for
from .publish import receipts_on_commit, sends_on_commit, starts_on_commit
from .status import SENDABLE, Status

log = logging.getLogger(__name__)


def sweep_due_work(*, now: datetime | None = None, limit: int = 2000) -> dict[str, int]:
    now = now or timezone.now()
    with transaction.atomic():
        by_status: dict[str, list[Message]] = defaultdict(list)
        for message in _overdue(now, limit):
            by_status[message.status].append(message)
        counts = {
            "dispatched": _dispatch([m for s in SENDABLE for m in by_status.pop(s, [])], now),
            "released": _release_scheduled(by_status.pop(Status.SCHEDULED, []), now),
            "polled": _poll_overdue_receipts(by_status.pop(Status.SENT, []), now),
            # Anything else had a due time it should not: nothing is due for it.
            "cleared": Message.objects.filter(id__in=[m.id for ms in by_status.values() for m in ms])
            .update(due_at=None),
        }
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def _overdue(now: datetime, limit: int) -> list[Message]:
    # The partial index message_due_at holds only rows with something due, so this stays
    # cheap however many messages are at rest.
    return list(
        Message.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now), due_at__lte=due.overdue_before(now))
        .order_by("due_at")
        .select_related("channel")[:limit]
    )


def _dispatch(messages: list[Message], now: datetime) -> int:
    """Publish again, due from now: not again before another grace has passed."""
    ids = [m.id for m in messages]
    Message.objects.filter(id__in=ids).update(due_at=now, leased_until=None)
    sends_on_commit(ids)
    return len(ids)


def _release_scheduled(messages: list[Message], now: datetime) -> int:
    """Start what is due; give what comes due within the lookahead its countdown."""
    started = scheduling.start_due([m.id for m in messages if m.send_at <= now], now)
    soon = [m for m in messages if m.send_at > now]
    for message in soon:
        message.due_at = due.schedule_due(message.send_at, now)
    Message.objects.bulk_update(soon, ["due_at"])
    starts_on_commit([(m.id, m.send_at) for m in soon if due.within_lookahead(m.send_at, now)], now)
    return len(started)


def _poll_overdue_receipts(messages: list[Message], now: datetime) -> int:
    by_channel: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_channel[message.channel_id].append(message)
    for items in by_channel.values():
        provider = provider_for(items[0].channel)
        for message in items:
            message.due_at = due.after(now, provider.receipt_timeout(message))
        Message.objects.bulk_update(items, ["due_at"])
        local = provider.poll(items)
        if local is not None:
            receipts_on_commit(provider.channel.name, local.payloads, countdown=local.delay)
    return len(messages)
