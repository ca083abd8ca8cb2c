"""What the console shows, read from the rollup (counts) and from indexed queries (backlog,
subscriptions). Each function is one query, whatever the number of channels or subscriptions."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, Count, F, Min, OuterRef, Q, Subquery, Sum, When

from comms.models import Application, Message
from comms.status import EventCode, Status
from deliveries.models import Delivery, Subscription

from .models import ACCEPTED, LATENCY_BOUNDS, LatencyMinute, StatusMinute, WebhookMinute

DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def since(now: datetime, span: timedelta) -> datetime:
    """The first minute of the `span` that ends with the current minute (24 hours: 1,440 minutes)."""
    return now.replace(second=0, microsecond=0) - span + timedelta(minutes=1)
CHART_CODES = (ACCEPTED, EventCode.DELIVERED.value, EventCode.DELIVERY_FAILED.value)
DUE_WORK = (Status.QUEUED, Status.DELIVERY_RETRIED, Status.SCHEDULED)


def counts_by_channel_and_code(now: datetime) -> list[dict]:
    """Per channel and code: the last day's and the last hour's counts."""
    return list(StatusMinute.objects.filter(minute__gte=since(now, DAY))
                .values("channel_id", "channel__name", "code")
                .annotate(day=Sum("count"), hour=Sum("count", filter=Q(minute__gte=since(now, HOUR)))))


def per_minute(now: datetime) -> list[tuple[datetime, str, int]]:
    """The chart's series: accepted, delivered and failed per minute over the last day
    (4,320 rows at most: tuples, not dicts)."""
    return list(StatusMinute.objects.filter(minute__gte=since(now, DAY), code__in=CHART_CODES)
                .values("minute", "code").annotate(n=Sum("count")).order_by().values_list("minute", "code", "n"))


def latency_buckets(now: datetime) -> list[dict]:
    return list(LatencyMinute.objects.filter(minute__gte=since(now, DAY))
                .values("channel_id", "bucket").annotate(n=Sum("count")).order_by())


def webhook_outcomes(now: datetime) -> dict[str, tuple[int, int]]:
    rows = (WebhookMinute.objects.filter(minute__gte=since(now, DAY)).values("subscription_id")
            .annotate(ok=Sum("succeeded"), bad=Sum("failed")).order_by())
    return {r["subscription_id"]: (r["ok"], r["bad"]) for r in rows}


# The console lists this many subscriptions, those that need an operator first; the rest
# are a link away (the admin's subscription list).
SUBSCRIPTIONS_SHOWN = 50


def subscriptions() -> tuple[list[Subscription], int]:
    """The subscriptions that most need looking at (disabled, then failing or backing off,
    then by their oldest undelivered event) with that event's time, and how many there are.
    The oldest pending delivery is found per subscription at the end of delivery_sub_status."""
    oldest = (Delivery.objects.filter(subscription=OuterRef("pk"), status=Delivery.Status.PENDING)
              .order_by("created_at").values("created_at")[:1])
    attention = Case(When(disabled_at__isnull=False, active=False, then=0),
                     When(Q(failing_since__isnull=False) | Q(backing_off_since__isnull=False), then=1), default=2)
    shown = (Subscription.objects.select_related("application").annotate(oldest_pending=Subquery(oldest))
             .order_by(attention, F("oldest_pending").asc(nulls_last=True), "application__name", "created_at"))
    return list(shown[:SUBSCRIPTIONS_SHOWN]), Subscription.objects.count()


@dataclass(frozen=True)
class Backlog:
    label: str
    count: int
    oldest: datetime | None  # the oldest due time, or (SENT) when the oldest was sent


def message_backlog(now: datetime) -> list[Backlog]:
    """Messages whose next step is due: a range scan of the partial index message_due_at, as
    long as the overdue rows (what the sweeper has not caught up with yet)."""
    rows = {r["status"]: r for r in (
        Message.objects.filter(due_at__lte=now, status__in=DUE_WORK).values("status").order_by()
        .annotate(n=Count("id"), oldest=Min("due_at")))}
    return [Backlog(f"{status.value} due", rows.get(status, {}).get("n", 0), rows.get(status, {}).get("oldest"))
            for status in DUE_WORK]


def sent_backlog() -> Backlog:
    """SENT messages awaiting a receipt (their due time may be NULL: not every provider is
    polled), per application from the message_app_status index; oldest by acceptance."""
    sent = Message.objects.filter(application=OuterRef("pk"), status=Status.SENT)
    # count(*), not count(id): the index alone answers it (an index-only scan).
    rows = Application.objects.annotate(
        n=Subquery(sent.values("application").annotate(n=Count("*")).values("n")),
        oldest=Subquery(sent.order_by("created_at").values("created_at")[:1]),
    ).values_list("n", "oldest")
    return Backlog("SENT awaiting a receipt", sum(n or 0 for n, _ in rows),
                   min((o for _, o in rows if o is not None), default=None))


def delivery_backlog(now: datetime) -> Backlog:
    """Webhook deliveries due, from the partial index delivery_due_work."""
    row = Delivery.objects.filter(due_at__lte=now).aggregate(n=Count("id"), oldest=Min("due_at"))
    return Backlog("Webhook deliveries due", row["n"], row["oldest"])


def median_seconds(buckets: dict[int, int]) -> float | None:
    """The median of a latency histogram, placed linearly within its bucket (the open last
    bucket answers its lower bound)."""
    total = sum(buckets.values())
    if not total:
        return None
    half, seen = total / 2, 0
    for i in range(len(LATENCY_BOUNDS) + 1):
        n = buckets.get(i, 0)
        if n and seen + n >= half:
            low = LATENCY_BOUNDS[i - 1] if i else 0.0
            if i == len(LATENCY_BOUNDS):
                return low
            return low + (LATENCY_BOUNDS[i] - low) * (half - seen) / n
        seen += n
    return None
