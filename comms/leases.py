"""Claims on rows that carry work: one conditional UPDATE, shared by messages and deliveries.

A row's `next_attempt_at` is when the sweeper should next look at it. A published task gives
the row RELAY_DISPATCH_GRACE to be claimed; a row can be claimed while its next_attempt_at
lies within the grace of now (published and unclaimed, or due). The claim moves it a
lease further, out of every other claimer's reach until the lease runs out, so a killed
worker's claim simply expires and the sweeper hands the row out again.
"""

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model


def grace() -> timedelta:
    return timedelta(seconds=settings.RELAY_DISPATCH_GRACE)


def claim_due(model: type[Model], ids: Sequence[str], statuses: Collection[str],
              now: datetime, *, mark_column: str | None = None, fill_to: int = 0,
              limit: int | None = None, scope: tuple[str, object] | None = None) -> set[str]:
    """Claim the rows among `ids` in one of `statuses` that are due; return their ids.

    `mark_column`, if given, is set to the lease's end, for others that must respect the
    claim without competing for it (a cancel, a bound on work in flight). `fill_to` tops
    the claim up with other due rows, oldest first, up to that many: under a backlog tasks
    coalesce into batches, so throughput grows with load instead of latency (the tasks of
    rows taken this way find nothing left to claim, which costs one cheap UPDATE).
    `limit` caps the whole claim, asked rows first; `scope` (column, value) confines both the
    asked rows and the top-up to one owner, such as one subscription.
    """
    extra = fill_to - len(ids)
    if limit is not None:
        extra = min(extra, limit - len(ids))
    if (not ids and extra <= 0) or limit == 0:
        return set()
    ops = connection.ops
    table = model._meta.db_table
    lease = timedelta(seconds=settings.RELAY_CLAIM_LEASE)
    due_before = ops.adapt_datetimefield_value(now + grace())
    statuses = sorted(statuses)
    in_statuses = f"status IN ({', '.join(['%s'] * len(statuses))})"
    due = f"{in_statuses} AND next_attempt_at <= %s"
    due_params = [*statuses, due_before]
    if scope:
        due += f" AND {scope[0]} = %s"
        due_params.append(scope[1])
    # Rows another transaction holds are skipped, never waited for: whoever holds them is
    # claiming or changing them, and two claimers waiting on each other's rows deadlock.
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    ctes, params = [], []
    if ids:
        capped = " ORDER BY next_attempt_at LIMIT %s" if limit is not None else ""
        ctes.append(f"wanted AS (SELECT id FROM {table} WHERE id IN ({', '.join(['%s'] * len(ids))}) "
                    f"AND {due}{capped}{lock})")
        params += [*ids, *due_params] + ([limit] if limit is not None else [])
    if extra > 0:
        # An ordered scan of a partial index on next_attempt_at, stopped after `extra`.
        ctes.append(f"fill AS (SELECT id FROM {table} WHERE {due} ORDER BY next_attempt_at LIMIT %s{lock})")
        params += [*due_params, extra]
    chosen = " UNION ".join(f"SELECT id FROM {cte.split(' ', 1)[0]}" for cte in ctes)
    # The chosen ids are gathered first and the UPDATE finds them by primary key, so the plan
    # does not hang on row estimates (stale statistics under a sudden backlog would otherwise
    # walk the whole due range); SQLite has no arrays, and no concurrent writers to plan for.
    if connection.vendor == "postgresql":
        target = f"id = ANY(ARRAY({chosen}))"
    else:
        target = f"id IN ({chosen})"
    mark = f", {mark_column} = %s" if mark_column else ""
    params.append(ops.adapt_datetimefield_value(now + grace() + lease))
    if mark_column:
        params.append(ops.adapt_datetimefield_value(now + lease))
    sql = (f"WITH {', '.join(ctes)} UPDATE {table} SET next_attempt_at = %s{mark} "
           f"WHERE {target} AND {due} RETURNING id")
    params += due_params
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}
