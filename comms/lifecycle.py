"""The one place that changes a message's status.

Every change is a conditional UPDATE (`WHERE status IN <allowed>`), so a task that runs
twice, or a receipt that comes late, changes nothing; the event rows are written in the
same transaction, numbered per message by `event_seq`. What a move writes is one value
(`Change`), what it requires another (`Only`).
"""

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import bulk, hooks, metrics
from .ids import new_id
from .models import Message, MessageEvent
from .outages import after_commit
from .status import ALLOWED_FROM, WAITING, EventCode, Status

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


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


@dataclass(frozen=True)
class Change:
    """A move to `status`: its event's details and what else it writes. A field left out
    keeps its column as it is. Whatever the change, the move ends any claim (the lease), and
    a status that waits for nothing (see status.WAITING) has nothing due."""

    status: Status
    details: EventDetails = EventDetails()
    due_at: datetime | None = KEEP
    count_attempt: bool = False
    # Values per message: {column: {message id: value}}, such as each attempt's provider_ref.
    per_message: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Only:
    """Which of the messages may move, beyond the transition table: `from_statuses` narrows
    the allowed sources (never widens them), `attempts` asks for exactly that attempt count,
    `unleased` skips messages a worker holds a claim on (a cancel must not take one being sent)."""

    from_statuses: Collection[Status] | None = None
    attempts: int | None = None
    unleased: bool = False


@dataclass
class Moved:
    """A message that took the transition: its id, new sequence number and attempt count."""

    id: str
    sequence: int
    attempts: int
    application_id: int
    channel_id: int
    event: MessageEvent | None = field(default=None)


def transition(message_ids: Sequence[str], change: Change, *, only: Only = Only(),
               now: datetime | None = None) -> list[Moved]:
    """Move the messages that are in an allowed status and fit `only`; record the events.
    Messages that do not fit are left alone: the caller gets back only those that moved."""
    allowed = ALLOWED_FROM.get(change.status, frozenset())
    if only.from_statuses is not None:
        allowed = allowed & frozenset(only.from_statuses)
    if not message_ids or not allowed:
        return []
    now = now or timezone.now()
    sets, params = _sets(change, now)
    where, where_params = _where(message_ids, allowed, only, now)
    sql = (f"UPDATE {_TABLE} SET {', '.join(sets)} WHERE {' AND '.join(where)} "
           "RETURNING id, event_seq, attempts, application_id, channel_id")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params + where_params)
            moved = [Moved(*row) for row in cursor.fetchall()]
        _record(moved, EventCode(change.status.value), change.details, now)
        metrics.moved(change.status, moved, now)
    if len(moved) < len(message_ids):
        log.debug("transition to %s skipped %d message(s)", change.status, len(message_ids) - len(moved))
    return moved


def _sets(change: Change, now: datetime) -> tuple[list[str], list[Any]]:
    sets = ["status = %s", "event_seq = event_seq + 1", "updated_at = %s", "leased_until = NULL"]
    params: list[Any] = [change.status.value, _db(now)]
    due_at = change.due_at if change.status in WAITING else None
    if due_at is not KEEP:
        sets.append("due_at = %s")
        params.append(_db(due_at))
    if change.count_attempt:
        sets.append("attempts = attempts + 1")
    for column, values in change.per_message.items():
        sets.append(f"{column} = CASE id {' '.join('WHEN %s THEN %s' for _ in values)} ELSE {column} END")
        for message_id, value in values.items():
            params += [message_id, _db(value)]
    return sets, params


def _where(message_ids: Sequence[str], allowed: Collection[Status], only: Only,
           now: datetime) -> tuple[list[str], list[Any]]:
    where = [f"id IN ({', '.join(['%s'] * len(message_ids))})",
             f"status IN ({', '.join(['%s'] * len(allowed))})"]
    params: list[Any] = list(message_ids) + sorted(s.value for s in allowed)
    if only.attempts is not None:
        where.append("attempts = %s")
        params.append(only.attempts)
    if only.unleased:
        where.append("(leased_until IS NULL OR leased_until <= %s)")
        params.append(_db(now))
    return where, params


def _db(value: Any) -> Any:
    return connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value


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


def create(messages: Sequence[Message], now: datetime) -> list[MessageEvent]:
    """Insert new messages and, for those not dormant, their first event (QUEUED or
    SCHEDULED), in one round trip. The rows come with `event_seq=1` already set where an
    event follows; fallbacks go before their predecessors, so every fallback_to exists."""
    events = [
        MessageEvent(id=new_id(), message_id=m.id, sequence=1, status_code=EventCode(m.status), created_at=now)
        for m in messages
        if m.status != Status.PENDING
    ]
    _write(events, {m.id: (m.application_id, m.channel_id) for m in messages}, messages)
    metrics.accepted(m.channel_id for m in messages)
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
    _write(events, {m.id: (m.application_id, m.channel_id) for m in moved})
    for m, event in zip(moved, events, strict=True):
        m.event = event


def _write(events: list[MessageEvent], owners: dict[str, tuple[int, int]], messages: Sequence[Message] = ()) -> None:
    """The new messages, their events and the listeners' rows, in one statement."""
    outboxes = hooks.outboxes(events, owners)
    bulk.insert(messages, events, *(outbox.rows for outbox in outboxes))
    for outbox in outboxes:
        if outbox.after_commit is not None:
            after_commit(outbox.after_commit)
