"""Messages with a future sendAt: held in the database, released on time.

A SCHEDULED message due within RELAY_SCHEDULE_LOOKAHEAD gets a `start_scheduled` task with a
countdown to its sendAt, so it is QUEUED within moments of it. One due later waits in the
database (a long Celery countdown is held unacknowledged in worker memory); the sweeper
gives it its countdown once it comes within the lookahead.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings

from . import lifecycle
from .dispatch import dispatch_on_commit, grace
from .models import Message
from .outages import after_commit
from .status import Status


def lookahead() -> timedelta:
    return timedelta(seconds=settings.RELAY_SCHEDULE_LOOKAHEAD)


def next_look(send_at: datetime, now: datetime) -> datetime:
    """When the sweeper should look at a message scheduled for `send_at`."""
    if send_at - now <= lookahead():
        return send_at + grace()  # its countdown is published now; the sweeper is the net
    return send_at - lookahead()


def publish_countdowns_on_commit(messages: Iterable[tuple[str, datetime]], now: datetime) -> None:
    """Countdown tasks for messages due within the lookahead, one per distinct sendAt."""
    by_time: dict[datetime, list[str]] = defaultdict(list)
    for message_id, send_at in messages:
        if send_at - now <= lookahead():
            by_time[send_at].append(message_id)
    if not by_time:
        return

    def publish() -> None:
        from .tasks import start_scheduled

        for send_at, ids in by_time.items():
            start_scheduled.apply_async((ids,), countdown=max((send_at - now).total_seconds(), 0))

    after_commit(publish)


def start_due(message_ids: Sequence[str], now: datetime) -> list[str]:
    """QUEUED for each scheduled message whose sendAt has come; returns those started.
    One released after its expiresAt (the platform was down) goes straight to EXPIRED."""
    from .sending import expire  # sending imports this module

    due = Message.objects.filter(id__in=message_ids, status=Status.SCHEDULED, send_at__lte=now)
    for message in due.filter(expires_at__lte=now).select_related("channel"):
        expire(message, now=now)
    due = list(due.exclude(expires_at__lte=now).values_list("id", flat=True))
    moved = lifecycle.transition(due, Status.QUEUED, expected={Status.SCHEDULED},
                                 next_attempt_at=now + grace(), now=now)
    dispatch_on_commit([m.id for m in moved])
    return [m.id for m in moved]


def schedule(messages: Sequence[Message], now: datetime) -> None:
    """Wake dormant (PENDING) messages with a future sendAt as SCHEDULED."""
    for message in messages:
        lifecycle.transition([message.id], Status.SCHEDULED, expected={Status.PENDING},
                             next_attempt_at=next_look(message.send_at, now), now=now)
    publish_countdowns_on_commit([(m.id, m.send_at) for m in messages], now)
