"""Rolling the history up into counts per minute (console.models).

A refresh recomputes whole minutes from the source rows: it deletes the rollup's rows for
[start, end) and inserts them again, in one transaction. It starts a few minutes before
where the last refresh stopped (CONSOLE_REROLL_MINUTES), so rows committed late (an event is
stamped when its transaction starts, and commits a moment after) are counted the next time
round; the current minute, still filling, is always rolled again. The periodic task keeps
the rollup close to now, and each console page tops it up for the minutes since (re-rolling
less: the task's next run counts what commits late).

The source queries are time-range scans (messages by created_at, events by created_at,
attempts by attempted_at): on PostgreSQL the console's migration gives the events and
attempts a BRIN index, which costs almost nothing to keep since rows arrive in time order.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, DurationField, ExpressionWrapper, F, Q, Value, When
from django.db.models.functions import TruncMinute
from django.utils import timezone

from comms.models import Message, MessageEvent
from comms.status import EventCode
from deliveries.models import DeliveryAttempt

from .models import ACCEPTED, LATENCY_BOUNDS, LatencyMinute, RollupMark, StatusMinute, WebhookMinute

ROLLUPS = (StatusMinute, LatencyMinute, WebhookMinute)


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def kept_since(now: datetime) -> datetime:
    """The oldest minute the rollup keeps: older rows are pruned, and never rolled."""
    return floor_minute(now) - timedelta(hours=settings.CONSOLE_ROLLUP_HOURS)


# What a console page re-rolls before the mark: the periodic task re-rolls
# CONSOLE_REROLL_MINUTES, which counts late commits within a minute; a page need not wait for
# them, and rolls as little as it can.
PAGE_REROLL_MINUTES = 1


def refresh(now: datetime | None = None, *, since: datetime | None = None,
            reroll_minutes: int | None = None) -> tuple[datetime, datetime] | None:
    """Roll the minutes from `reroll_minutes` (CONSOLE_REROLL_MINUTES) before the last refresh,
    or from `since`, through the current one. Returns the range rolled, or None if another
    refresh holds the mark (it is doing the same work; its result commits in a moment)."""
    now = now or timezone.now()
    reroll = settings.CONSOLE_REROLL_MINUTES if reroll_minutes is None else reroll_minutes
    _ensure_mark()
    end = floor_minute(now) + timedelta(minutes=1)
    with transaction.atomic():
        mark = RollupMark.objects.select_for_update(skip_locked=True).filter(pk=1).first()
        if mark is None:
            return None
        start = since or (mark.rolled_until - timedelta(minutes=reroll) if mark.rolled_until else kept_since(now))
        start = max(floor_minute(start), kept_since(now))
        roll(start, end)
        mark.rolled_until = floor_minute(now)
        mark.save(update_fields=["rolled_until"])
    return start, end


def _ensure_mark() -> None:
    if not RollupMark.objects.filter(pk=1).exists():
        try:
            with transaction.atomic():
                RollupMark.objects.create(pk=1)
        except IntegrityError:
            pass  # another refresh made it first


def roll(start: datetime, end: datetime) -> None:
    """Replace the rollup's rows for the minutes in [start, end) with counts from the history."""
    for model in ROLLUPS:
        model.objects.filter(minute__gte=start, minute__lt=end).delete()
    events = _event_counts(start, end)
    StatusMinute.objects.bulk_create(_status_rows(start, end, events), batch_size=2000)
    LatencyMinute.objects.bulk_create(_latency_rows(events), batch_size=2000)
    WebhookMinute.objects.bulk_create(_webhook_rows(start, end), batch_size=2000)


def prune(now: datetime | None = None) -> int:
    """Drop rows older than the rollup keeps."""
    oldest = kept_since(now or timezone.now())
    return sum(model.objects.filter(minute__lt=oldest).delete()[0] for model in ROLLUPS)


def _minute(field: str) -> TruncMinute:
    return TruncMinute(field, tzinfo=UTC)


def _event_counts(start: datetime, end: datetime) -> list[dict]:
    """Events per minute, channel and code (DELIVERED ones also per latency bucket): one pass
    over the range's events and their messages serves both rollups."""
    latency = ExpressionWrapper(F("created_at") - F("message__created_at"), output_field=DurationField())
    bucket = Case(*(When(Q(status_code=EventCode.DELIVERED, latency__lte=timedelta(seconds=bound)), then=Value(i))
                    for i, bound in enumerate(LATENCY_BOUNDS)),
                  When(status_code=EventCode.DELIVERED, then=Value(len(LATENCY_BOUNDS))), default=None)
    return list(MessageEvent.objects.filter(created_at__gte=start, created_at__lt=end)
                .annotate(m=_minute("created_at"), latency=latency, bucket=bucket)
                .values("m", "message__channel_id", "status_code", "bucket").annotate(n=Count("id")).order_by())


def _status_rows(start: datetime, end: datetime, events: list[dict]) -> list[StatusMinute]:
    accepted = (Message.objects.filter(created_at__gte=start, created_at__lt=end)
                .annotate(m=_minute("created_at")).values("m", "channel_id").annotate(n=Count("id")).order_by())
    counts: dict[tuple, int] = defaultdict(int)
    for r in events:
        counts[r["m"], r["message__channel_id"], r["status_code"]] += r["n"]
    return [StatusMinute(minute=r["m"], channel_id=r["channel_id"], code=ACCEPTED, count=r["n"])
            for r in accepted] + \
        [StatusMinute(minute=m, channel_id=channel, code=code, count=n) for (m, channel, code), n in counts.items()]


def _latency_rows(events: list[dict]) -> list[LatencyMinute]:
    return [LatencyMinute(minute=r["m"], channel_id=r["message__channel_id"], bucket=r["bucket"], count=r["n"])
            for r in events if r["bucket"] is not None]


def _webhook_rows(start: datetime, end: datetime) -> list[WebhookMinute]:
    ok = Q(status_code__gte=200, status_code__lt=300)
    rows = (DeliveryAttempt.objects.filter(attempted_at__gte=start, attempted_at__lt=end)
            .annotate(m=_minute("attempted_at")).values("m", "delivery__subscription_id")
            .annotate(ok=Count("id", filter=ok), n=Count("id")).order_by())
    return [WebhookMinute(minute=r["m"], subscription_id=r["delivery__subscription_id"],
                          succeeded=r["ok"], failed=r["n"] - r["ok"]) for r in rows]
