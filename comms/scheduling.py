"""Messages with a future sendAt: held in the database, started on time.

A SCHEDULED message due within RELAY_SCHEDULE_LOOKAHEAD gets a `start_scheduled` task with a
countdown to its sendAt, so it is QUEUED within moments of it. One due later waits in the
database (a long Celery countdown is held unacknowledged in worker memory); the sweeper
gives it its countdown once it comes within the lookahead (comms.due.schedule_due).
"""

from collections.abc import Sequence
from datetime import datetime

from . import lifecycle, outcomes
from .lifecycle import Change, Only
from .models import Message
from .publish import sends_on_commit
from .status import Status


def start_due(message_ids: Sequence[str], now: datetime) -> list[str]:
    """QUEUED for each scheduled message whose sendAt has come; returns those started.
    One started after its expiresAt (the platform was down) goes straight to EXPIRED."""
    due = Message.objects.filter(id__in=message_ids, status=Status.SCHEDULED, send_at__lte=now)
    for message in due.filter(expires_at__lte=now).select_related("channel"):
        outcomes.expired(message, now=now)
    ready = list(due.exclude(expires_at__lte=now).values_list("id", flat=True))
    moved = lifecycle.transition(ready, Change(Status.QUEUED, due_at=now),
                                 only=Only(from_statuses={Status.SCHEDULED}), now=now)
    sends_on_commit([m.id for m in moved])
    return [m.id for m in moved]
