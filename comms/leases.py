"""Claims on rows that carry work: one conditional UPDATE, shared by messages and deliveries.

A row is claimable while it is in one of the claimer's statuses, due (`due_at` has come)
and not leased (no live `leased_until`). The claim sets its lease (see comms.due), so no
other claimer takes it until the lease runs out, and a killed worker's claim simply
expires: the sweeper then hands the row out again.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Model

from .due import lease


@dataclass(frozen=True)
class ClaimSpec:
    """Which rows of a table a claim may take."""

    model: type[Model]
    statuses: Collection[str]
    # (column, value) confining the claim to one owner, such as one subscription.
    scope: tuple[str, object] | None = None


def claim_due(spec: ClaimSpec, ids: Sequence[str], now: datetime, *, fill_to: int = 0,
              limit: int | None = None) -> set[str]:
    """Claim the due, unleased rows among `ids`; return their ids.

    `fill_to` tops the claim up with other due rows, oldest first, up to that many: under a
    backlog tasks coalesce into batches, so throughput grows with load instead of latency
    (the tasks of rows taken this way find nothing left to claim, one cheap UPDATE).
    `limit` caps the whole claim, asked rows first.
    """
    extra = fill_to - len(ids)
    if limit is not None:
        extra = min(extra, limit - len(ids))
    if (not ids and extra <= 0) or limit == 0:
        return set()
    due, due_params = _claimable(spec, now)
    ctes, params = [], []
    if ids:
        capped = " ORDER BY due_at LIMIT %s" if limit is not None else ""
        ctes.append(f"wanted AS (SELECT id FROM {_table(spec)} WHERE id IN ({_marks(ids)}) "
                    f"AND {due}{capped}{_skip_locked()})")
        params += [*ids, *due_params] + ([limit] if limit is not None else [])
    if extra > 0:
        # An ordered scan of the partial index on due_at, stopped after `extra`.
        ctes.append(f"fill AS (SELECT id FROM {_table(spec)} WHERE {due} ORDER BY due_at "
                    f"LIMIT %s{_skip_locked()})")
        params += [*due_params, extra]
    sql = (f"WITH {', '.join(ctes)} UPDATE {_table(spec)} SET leased_until = %s "
           f"WHERE {_chosen(ctes)} AND {due} RETURNING id")
    params += [connection.ops.adapt_datetimefield_value(now + lease()), *due_params]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _claimable(spec: ClaimSpec, now: datetime) -> tuple[str, list]:
    statuses = sorted(spec.statuses)
    at = connection.ops.adapt_datetimefield_value(now)
    sql = (f"status IN ({_marks(statuses)}) AND due_at <= %s "
           "AND (leased_until IS NULL OR leased_until <= %s)")
    params = [*statuses, at, at]
    if spec.scope:
        sql += f" AND {spec.scope[0]} = %s"
        params.append(spec.scope[1])
    return sql, params


def _chosen(ctes: list[str]) -> str:
    """The chosen ids are gathered first and the UPDATE finds them by primary key, so the
    plan does not hang on row estimates (stale statistics under a sudden backlog would
    otherwise walk the whole due range); SQLite has no arrays, and no concurrent writers."""
    chosen = " UNION ".join(f"SELECT id FROM {cte.split(' ', 1)[0]}" for cte in ctes)
    return f"id = ANY(ARRAY({chosen}))" if connection.vendor == "postgresql" else f"id IN ({chosen})"


def _skip_locked() -> str:
    # Rows another transaction holds are skipped, never waited for: whoever holds them is
    # claiming or changing them, and two claimers waiting on each other's rows deadlock.
    return " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""


def _table(spec: ClaimSpec) -> str:
    return spec.model._meta.db_table


def _marks(values: Collection) -> str:
    return ", ".join(["%s"] * len(values))
