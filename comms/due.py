"""When work is due: the one place for due times, the grace and the lease.

A row that carries work (a message, a webhook delivery) says what it waits for in two
columns:

- `due_at`: when its next step falls due: the next attempt (a queued or retried message, a
  pending delivery), the look at its sendAt (a scheduled message), the check for a missing
  receipt (a sent message). NULL when nothing is due.
- `leased_until`: while a worker holds a claim on it: nobody else takes it until then, a
  killed worker's claim simply runs out.

A task is published when work falls due; a worker claims the row with one conditional
UPDATE. A row still unclaimed a grace after it fell due had its task lost: the sweeper
publishes it again and dates it due from then, so it is published again at most once per
grace.
"""

from datetime import datetime, timedelta

from django.conf import settings


def grace() -> timedelta:
    """How long published work may wait for a worker before the sweeper publishes it again."""
    return timedelta(seconds=settings.RELAY_DISPATCH_GRACE)


def lease() -> timedelta:
    """How long a claim is its worker's; it outlasts a task's hard time limit."""
    return timedelta(seconds=settings.RELAY_CLAIM_LEASE)


def lookahead() -> timedelta:
    """How far ahead a scheduled message gets a countdown to its sendAt."""
    return timedelta(seconds=settings.RELAY_SCHEDULE_LOOKAHEAD)


def overdue_before(now: datetime) -> datetime:
    """Rows due before this, and not leased, were left: the sweeper's to publish again."""
    return now - grace()


def after(now: datetime, seconds: float | None) -> datetime | None:
    """Due `seconds` from now; None (nothing due) for None."""
    return None if seconds is None else now + timedelta(seconds=seconds)


def within_lookahead(send_at: datetime, now: datetime) -> bool:
    """Whether a message scheduled for `send_at` gets its countdown now."""
    return send_at - now <= lookahead()


def schedule_due(send_at: datetime, now: datetime) -> datetime:
    """The next step of a message scheduled for `send_at`: its countdown, published as soon
    as it comes within the lookahead, then its start at sendAt."""
    return send_at if within_lookahead(send_at, now) else send_at - lookahead()


def within_countdown(due: datetime, now: datetime) -> bool:
    """Whether work due at `due` may ride a Celery countdown: a long one is held
    unacknowledged in worker memory, so later work waits for the sweeper."""
    return (due - now).total_seconds() <= settings.RELAY_MAX_COUNTDOWN
