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
              now: datetime, *, mark_column: str | None = None, fill_to: int = 0) -> set[str]:
    """Claim the rows among `ids` in one of `statuses` that are due; return their ids.

    `mark_column`, if given, is set to the lease's end, for others that must respect the
    claim without competing for it (a cancel). `fill_to` tops the claim up with other due
    rows, oldest first, up to that many: under a backlog tasks coalesce into batches, so
    throughput grows with load instead of latency (the tasks of rows taken this way find
    nothing left to claim, which costs one cheap UPDATE).
    """
    if not ids:
        return set()
    ops = connection.ops
    table = model._meta.db_table
    lease = timedelta(seconds=settings.RELAY_CLAIM_LEASE)
    lease_end = now + grace() + lease
    due_before = ops.adapt_datetimefield_value(now + grace())
    status_list = ", ".join(["%s"] * len(statuses))
    mark = f", {mark_column} = %s" if mark_column else ""
    wanted = f"id IN ({', '.join(['%s'] * len(ids))})"
    params: list = [ops.adapt_datetimefield_value(lease_end)]
    if mark_column:
        params.append(ops.adapt_datetimefield_value(now + lease))
    params += list(ids)
    fill = ""
    extra = fill_to - len(ids)
    if extra > 0:
        # An ordered scan of the partial index on next_attempt_at, stopped after `extra`;
        # SKIP LOCKED keeps concurrent claimers from queueing behind each other (SQLite has
        # one writer anyway). Joined by UNION ALL, never OR: an OR with a subquery makes
        # PostgreSQL filter the whole table instead of using either index.
        lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        fill = (f"WITH fill AS (SELECT id FROM {table} WHERE next_attempt_at <= %s "
                f"AND status IN ({status_list}) ORDER BY next_attempt_at LIMIT %s{lock}) ")
        wanted = f"id IN (SELECT id FROM {table} WHERE {wanted} UNION ALL SELECT id FROM fill)"
        params = [due_before, *sorted(statuses), extra, *params]
    sql = (
        f"{fill}UPDATE {table} SET next_attempt_at = %s{mark} WHERE {wanted} "
        f"AND status IN ({status_list}) AND next_attempt_at <= %s RETURNING id"
    )
    params += [*sorted(statuses), due_before]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}
