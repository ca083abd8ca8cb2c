"""The one place that changes a message's status.

Every change is a conditional UPDATE (`WHERE status IN <allowed>`), so a task that runs
twice, or a receipt that comes late, changes nothing; the event rows are written in the
same transaction, numbered per message by `event_seq`.
"""

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import hooks
from .models import Message, MessageEvent
from .status import ALLOWED_FROM, EventCode, Status

log = logging.getLogger(__name__)

_TABLE = Message._meta.db_table


@dataclass(frozen=True)
class EventDetails:
    error_code: str = ""
    error_message: str = ""
    raw_code: str = ""
    fallback_to: str = ""
    env: dict | None = None
    link: str = ""


@dataclass
class Moved:
    """A message that took the transition: its id, new sequence number and attempt count."""

    id: str
    sequence: int
    attempts: int
    application_id: int
    channel_id: int
    event: MessageEvent | None = field(default=None)


def transition(
    message_ids: Sequence[str],
    target: Status,
    *,
    details: EventDetails = EventDetails(),
    expected: Collection[Status] | None = None,
    attempts: int | None = None,
    count_attempt: bool = False,
    next_attempt_at: datetime | None = None,
    per_message: Mapping[str, Mapping[str, Any]] | None = None,
    unclaimed: bool = False,
    now: datetime | None = None,
) -> list[Moved]:
    """Move the messages that are in an allowed status to `target` and record the event.

    `expected` narrows the allowed source statuses (never widens them); `attempts` only moves
    messages whose attempt count is exactly that; `count_attempt` adds one to it.
    `next_attempt_at` replaces the due time (None clears it: nothing is due). `per_message`
    sets columns to a value per message ({column: {message_id: value}}). `unclaimed` skips
    messages a worker holds a claim on (a cancel must not take a message being sent).
    Messages that do not fit are left alone: the caller gets back only those that moved.
    """
    if not message_ids:
        return []
    allowed = ALLOWED_FROM.get(target, frozenset())
    if expected is not None:
        allowed = allowed & frozenset(expected)
    if not allowed:
        return []
    now = now or timezone.now()
    ops = connection.ops
    per_message = per_message or {}
    # Every change of status ends any claim on the message.
    sets = ["status = %s", "event_seq = event_seq + 1", "updated_at = %s", "claimed_until = NULL"]
    params: list[Any] = [target.value, ops.adapt_datetimefield_value(now)]
    if "next_attempt_at" not in per_message:
        sets.append("next_attempt_at = %s")
        params.append(ops.adapt_datetimefield_value(next_attempt_at))
    if count_attempt:
        sets.append("attempts = attempts + 1")
    for column, values in per_message.items():
        cases = " ".join("WHEN %s THEN %s" for _ in values)
        sets.append(f"{column} = CASE id {cases} ELSE {column} END")
        for message_id, value in values.items():
            if isinstance(value, datetime):
                value = ops.adapt_datetimefield_value(value)
            params += [message_id, value]
    where = [
        f"id IN ({', '.join(['%s'] * len(message_ids))})",
        f"status IN ({', '.join(['%s'] * len(allowed))})",
    ]
    params += list(message_ids) + sorted(s.value for s in allowed)
    if attempts is not None:
        where.append("attempts = %s")
        params.append(attempts)
    if unclaimed:
        where.append("(claimed_until IS NULL OR claimed_until < %s)")
        params.append(ops.adapt_datetimefield_value(now))
    sql = (
        f"UPDATE {_TABLE} SET {', '.join(sets)} WHERE {' AND '.join(where)} "
        "RETURNING id, event_seq, attempts, application_id, channel_id"
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            moved = [Moved(*row) for row in cursor.fetchall()]
        _record(moved, EventCode(target.value), details, now)
    if len(moved) < len(message_ids):
        log.debug("transition to %s skipped %d message(s)", target, len(message_ids) - len(moved))
    return moved


def record_event(message_id: str, code: EventCode, *, details: EventDetails = EventDetails(),
                 now: datetime | None = None) -> MessageEvent | None:
    """Record an event that does not change the status (FAILED_CANCELLATION)."""
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_TABLE} SET event_seq = event_seq + 1 WHERE id = %s "
                "RETURNING id, event_seq, attempts, application_id, channel_id",
                [message_id],
            )
            moved = [Moved(*row) for row in cursor.fetchall()]
        _record(moved, code, details, now)
    return moved[0].event if moved else None


def record_created(messages: Sequence[Message], now: datetime) -> list[MessageEvent]:
    """The first event of messages inserted in their starting status (QUEUED or SCHEDULED).

    Submission inserts rows with `event_seq=1` already set, so this only writes the events.
    """
    events = [
        MessageEvent(
            message_id=m.id, sequence=1, status_code=EventCode(m.status), created_at=now
        )
        for m in messages
        if m.status != Status.PENDING
    ]
    MessageEvent.objects.bulk_create(events)
    hooks.events_recorded(events, {m.id: (m.application_id, m.channel_id) for m in messages})
    return events


def _record(moved: list[Moved], code: EventCode, details: EventDetails, now: datetime) -> None:
    events = [
        MessageEvent(
            message_id=m.id,
            sequence=m.sequence,
            status_code=code,
            attempt=m.attempts,
            error_code=details.error_code,
            error_message=details.error_message,
            raw_code=details.raw_code,
            fallback_to=details.fallback_to,
            env=details.env,
            link=details.link,
            created_at=now,
        )
        for m in moved
    ]
    MessageEvent.objects.bulk_create(events)
    for m, event in zip(moved, events, strict=True):
        m.event = event
    hooks.events_recorded(events, {m.id: (m.application_id, m.channel_id) for m in moved})
