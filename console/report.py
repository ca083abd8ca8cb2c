"""The console page's content: the queries' rows shaped into what an operator reads."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from comms.status import EventCode
from deliveries.health import state_of

from . import chart, queries
from .models import ACCEPTED

CODES = [ACCEPTED, *EventCode.values]
CHART_SERIES = [(ACCEPTED, "Accepted", "accepted"), (EventCode.DELIVERED, "Delivered", "delivered"),
                (EventCode.DELIVERY_FAILED, "Failed", "failed")]


@dataclass(frozen=True)
class ChannelRow:
    name: str
    accepted: int
    delivered: int
    failed: int
    rate: float | None  # delivered / (delivered + failed), as a percentage
    median: float | None  # seconds, accept→DELIVERED


@dataclass(frozen=True)
class SubscriptionRow:
    id: str
    application: str
    url: str
    state: str
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str
    attempts: int
    success_rate: float | None
    oldest_pending: datetime | None


def build(now: datetime) -> dict:
    by_channel = queries.counts_by_channel_and_code(now)
    shown, subscription_count = queries.subscriptions()
    return {
        "now": now,
        "status_counts": _status_counts(by_channel),
        "chart": chart.draw(queries.per_minute(now), now, CHART_SERIES),
        "channels": _channels(by_channel, queries.latency_buckets(now)),
        "subscriptions": _subscriptions(shown, queries.webhook_outcomes(now)),
        "subscriptions_not_shown": subscription_count - len(shown),
        "backlog": [*queries.message_backlog(now), queries.sent_backlog(), queries.delivery_backlog(now)],
    }


def _status_counts(rows: list[dict]) -> list[dict]:
    hour, day = defaultdict(int), defaultdict(int)
    for row in rows:
        hour[row["code"]] += row["hour"] or 0
        day[row["code"]] += row["day"] or 0
    return [{"code": code, "hour": hour[code], "day": day[code]} for code in CODES if day[code]]


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _channels(rows: list[dict], latency: list[dict]) -> list[ChannelRow]:
    names, counts = {}, defaultdict(lambda: defaultdict(int))
    for row in rows:
        names[row["channel_id"]] = row["channel__name"]
        counts[row["channel_id"]][row["code"]] += row["day"] or 0
    buckets = defaultdict(dict)
    for row in latency:
        buckets[row["channel_id"]][row["bucket"]] = row["n"]
    result = []
    for channel_id, name in sorted(names.items(), key=lambda item: item[1]):
        c = counts[channel_id]
        delivered, failed = c[EventCode.DELIVERED], c[EventCode.DELIVERY_FAILED]
        result.append(ChannelRow(name, c[ACCEPTED], delivered, failed, _percent(delivered, delivered + failed),
                                 queries.median_seconds(buckets[channel_id])))
    return result


def _subscriptions(subscriptions: list, outcomes: dict[str, tuple[int, int]]) -> list[SubscriptionRow]:
    rows = []
    for s in subscriptions:
        ok, bad = outcomes.get(s.id, (0, 0))
        # Disabled (by the platform) says more than inactive (which may be the owner's choice).
        state = "disabled" if s.disabled_at and not s.active else state_of(s).value
        rows.append(SubscriptionRow(s.id, s.application.name, s.url, state, s.failing_since,
                                    s.disabled_at, s.disabled_reason, ok + bad, _percent(ok, ok + bad),
                                    s.oldest_pending))
    return rows
