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
              now: datetime, *, mark_column: str | None = None) -> set[str]:
    """Claim the rows among `ids` in one of `statuses` that are due; return their ids.

    `mark_column`, if given, is set to the lease's end, for others that must respect the
    claim without competing for it (a cancel).
    """
    if not ids:
        return set()
    ops = connection.ops
    lease = timedelta(seconds=settings.RELAY_CLAIM_LEASE)
    lease_end = now + grace() + lease
    mark = f", {mark_column} = %s" if mark_column else ""
    sql = (
        f"UPDATE {model._meta.db_table} SET next_attempt_at = %s{mark} "
        f"WHERE id IN ({', '.join(['%s'] * len(ids))}) "
        f"AND status IN ({', '.join(['%s'] * len(statuses))}) AND next_attempt_at <= %s "
        "RETURNING id"
    )
    params = [ops.adapt_datetimefield_value(lease_end)]
    if mark_column:
        params.append(ops.adapt_datetimefield_value(now + lease))
    params += [*ids, *sorted(statuses),
              ops.adapt_datetimefield_value(now + grace())]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}
