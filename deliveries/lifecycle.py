"""The one place that changes a delivery's status.

A delivery is pending until an attempt lands (succeeded) or it is given up (failed); a
failed attempt with a retry to come keeps it pending, due later; one its round never started
stays pending as it was, only its claim ends; a replay asked for by the application or an
operator makes it pending again, due now. Every change is a conditional UPDATE on the
statuses it may come from and, for a worker recording its claim, on that claim's lease: a
delivery that has moved on, or whose lapsed claim another worker took, is left alone. What a
change writes is one value (`Change`), what it requires another (`Only`).
"""

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from comms.lifecycle import KEEP

from .models import Delivery

Status = Delivery.Status

# What each status may become.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.PENDING}),
    Status.SUCCEEDED: frozenset({Status.PENDING}),
    Status.FAILED: frozenset({Status.PENDING}),
}

_TABLE = Delivery._meta.db_table
# Ids per UPDATE (a replay can name a whole backlog): within every backend's parameter limit.
CHUNK = 5000


@dataclass(frozen=True)
class Change:
    """What a delivery becomes. A field left out keeps its column; a finished delivery has
    nothing due, whatever `due_at` says."""

    status: Status
    due_at: datetime | None = KEEP
    attempts: int = KEEP
    last_status_code: int | None = KEEP
    last_error: str = KEEP


@dataclass(frozen=True)
class Only:
    """Which deliveries may change: those in one of `from_statuses` (within the table) and,
    given `lease`, still held under exactly that claim. A change made under a claim ends it;
    one made without (a replay) leaves an attempt in flight its claim."""

    from_statuses: Collection[Status]
    lease: datetime | None = None


def change_deliveries(*, changes: Mapping[str, Change], only: Only, now: datetime) -> dict[str, str]:
    """Apply each delivery's change where `only` allows; return what moved, each delivery's
    id with its subscription's.

    Deliveries changed alike (most often: a round that all succeeded) share one UPDATE."""
    alike: dict[Change, list[str]] = defaultdict(list)
    for delivery_id, change in changes.items():
        alike[change].append(delivery_id)
    moved: dict[str, str] = {}
    with transaction.atomic():
        for change, ids in alike.items():
            for start in range(0, len(ids), CHUNK):
                moved |= _apply(change, ids[start:start + CHUNK], only, now)
    return moved


def _apply(change: Change, ids: list[str], only: Only, now: datetime) -> dict[str, str]:
    sources = sorted(str(s) for s in only.from_statuses if change.status in TRANSITIONS[s])
    if not sources:
        return {}
    sets, params = _sets(change, only, now)
    where = f"id IN ({_marks(ids)}) AND status IN ({_marks(sources)})"
    params += [*ids, *sources]
    if only.lease is not None:
        where += " AND leased_until = %s"
        params.append(_db(only.lease))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_TABLE} SET {', '.join(sets)} WHERE {where} RETURNING id, subscription_id", params)
        return dict(cursor.fetchall())


def _sets(change: Change, only: Only, now: datetime) -> tuple[list[str], list[Any]]:
    values = {f.name: getattr(change, f.name) for f in fields(change)}
    values["status"] = str(change.status)
    if change.status != Status.PENDING:
        values["due_at"] = None
    if only.lease is not None:
        values["leased_until"] = None
    values["updated_at"] = now
    written = {column: value for column, value in values.items() if value is not KEEP}
    return [f"{column} = %s" for column in written], [_db(value) for value in written.values()]


def _db(value: Any) -> Any:
    return connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value


def _marks(values: Collection) -> str:
    return ", ".join(["%s"] * len(values))
