"""Prometheus metrics: what changed (counters, histograms) and, at scrape time, what waits.

Counters move only for changes that commit, once per message change: lifecycle and the
other writers call these functions inside their transaction, and the counting waits for
`on_commit`, so a rollback counts nothing and a transition that moved nothing (run twice,
or too late) was never reported. What waits (the backlog) is not counted at all: it is read
from the database when Prometheus scrapes (`Reading`s), so it is right fleet-wide.

Gunicorn and Celery fork their workers, so the values live in prometheus_client's
multiprocess mode: each process writes its own files under PROMETHEUS_MULTIPROC_DIR, and
/metrics adds up every file of the host. prometheus_client picks that mode when it is first
imported, so the directory is set before the import, here, the one module that imports it.
Counters of a process that exited stay in its files and keep counting toward the totals;
there are no live gauges (the backlog is read at scrape time), so process_dead is only
housekeeping. The directory belongs to one host and is wiped only while none of that host's
Relay processes runs (at boot, or on a tmpfs); wiping it resets the counters, which
Prometheus's rate() and increase() take in their stride.
"""

import logging
import os
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", settings.PROMETHEUS_MULTIPROC_DIR)
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import (  # noqa: E402 (the directory must be set first)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402

from .lookups import TtlCache  # noqa: E402
from .models import Channel, MessageEvent  # noqa: E402
from .status import EventCode, Status  # noqa: E402

log = logging.getLogger(__name__)

if not values.ValueClass._multiprocess:
    log.warning("prometheus_client was imported before comms.metrics: this process's metrics are not shared")

# The statuses a message ends in, as far as sending goes (READ and the like may follow DELIVERED).
OUTCOMES = frozenset({Status.DELIVERED, Status.DELIVERY_FAILED, Status.CANCELLED, Status.EXPIRED})
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)

ACCEPTED = Counter("relay_messages_accepted", "Messages created (accepted, fallbacks included), by channel.",
                   ["channel"])
FINISHED = Counter("relay_messages", "Messages that reached an outcome: DELIVERED, DELIVERY_FAILED, CANCELLED "
                   "or EXPIRED, by channel.", ["channel", "status"])
PROVIDER_ERRORS = Counter("relay_provider_errors", "Attempts a provider refused or reported failed, by channel and "
                          "errorCode.", ["channel", "code"])
WEBHOOK_ATTEMPTS = Counter("relay_webhook_attempts", "Webhook requests recorded, by outcome: success or the error "
                           "kind (http_status, timeout, connection, tls, refused_url, invalid_request).", ["outcome"])
ACCEPT_TO_SENT = Histogram(
    "relay_message_accept_to_sent_seconds", "From QUEUED (acceptance; for a scheduled message or a fallback, its "
    "start) to the first attempt's SENT, by channel.", ["channel"], buckets=LATENCY_BUCKETS)
SENT_TO_DELIVERED = Histogram(
    "relay_message_sent_to_delivered_seconds", "From the delivered attempt's SENT to DELIVERED, by channel.",
    ["channel"], buckets=LATENCY_BUCKETS)

# Channel names by id: a renamed channel's counters move to its new name within this long.
NAME_SECONDS = 300.0
_names = TtlCache()


class MovedRow(Protocol):
    """What lifecycle.Moved offers: a message that took a transition."""

    id: str
    channel_id: int
    attempts: int


def accepted(channel_ids: Iterable[int]) -> None:
    """Messages created on these channels (one id per message), counted once they commit."""
    tally = Tally(channel_ids)
    if tally:
        transaction.on_commit(lambda: _count(ACCEPTED, tally), robust=True)


def moved(status: str, rows: Sequence[MovedRow], now: datetime) -> None:
    """Messages that moved to `status` at `now`: counted and timed once they commit."""
    if not rows or status not in OUTCOMES | {Status.SENT}:
        return
    taken = [(row.id, row.channel_id, row.attempts) for row in rows]
    transaction.on_commit(lambda: _after_move(Status(status), taken, now), robust=True)


def provider_error(channel_name: str, code: str) -> None:
    """An attempt the provider refused or reported failed, once the decision commits."""
    transaction.on_commit(lambda: PROVIDER_ERRORS.labels(channel_name, str(code)).inc(), robust=True)


def webhook_attempts(outcomes: Iterable) -> None:
    """Webhook requests (deliveries.http.Outcome) recorded, once their attempt rows commit."""
    tally = Tally("success" if o.ok else (o.error_kind or "failure") for o in outcomes)
    if tally:
        transaction.on_commit(lambda: _count_by_label(WEBHOOK_ATTEMPTS, tally), robust=True)


def _after_move(status: Status, rows: list[tuple[str, int, int]], now: datetime) -> None:
    names = _channel_names({channel_id for _, channel_id, _ in rows})
    if status in OUTCOMES:
        for channel_id, n in Tally(channel_id for _, channel_id, _ in rows).items():
            FINISHED.labels(names[channel_id], status.value).inc(n)
    if status == Status.SENT:
        # Only the first attempt: a retry's wait is the channel's policy, not a backlog.
        _observe(ACCEPT_TO_SENT, EventCode.QUEUED, [r for r in rows if r[2] == 1], names, now)
    elif status == Status.DELIVERED:
        _observe(SENT_TO_DELIVERED, EventCode.SENT, rows, names, now)


def _observe(histogram: Histogram, since: EventCode, rows: list[tuple[str, int, int]],
             names: dict[int, str], now: datetime) -> None:
    """Observe, per message, the time from its latest `since` event to `now`."""
    if not rows:
        return
    started = _latest_events([r[0] for r in rows], since)
    for message_id, channel_id, _ in rows:
        if message_id in started:
            histogram.labels(names[channel_id]).observe(max((now - started[message_id]).total_seconds(), 0.0))


def _latest_events(message_ids: list[str], code: EventCode) -> dict[str, datetime]:
    """When each message last had an event `code`. Plain SQL: this follows every chunk of
    SENT and DELIVERED, and the ORM would cost it twice the query's own time."""
    marks = ", ".join(["%s"] * len(message_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT message_id, MAX(created_at) FROM {MessageEvent._meta.db_table} "
                       f"WHERE status_code = %s AND message_id IN ({marks}) GROUP BY message_id",
                       [code.value, *message_ids])
        return {message_id: _aware(at) for message_id, at in cursor.fetchall()}


def _aware(value: datetime | str) -> datetime:
    # SQLite answers an aggregate with the text Django stored (UTC, naive).
    value = parse_datetime(value) if isinstance(value, str) else value
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def _count(counter: Counter, by_channel: Tally) -> None:
    names = _channel_names(set(by_channel))
    _count_by_label(counter, {names[channel_id]: n for channel_id, n in by_channel.items()})


def _count_by_label(counter: Counter, tally: dict[str, int]) -> None:
    for label, n in tally.items():
        counter.labels(label).inc(n)


def _channel_names(ids: set[int]) -> dict[int, str]:
    missing = [i for i in ids if _names.get(str(i)) is None]
    if missing:
        for channel_id, name in Channel.objects.filter(id__in=missing).values_list("id", "name"):
            _names.put(str(channel_id), name, NAME_SECONDS)
    return {i: _names.get(str(i)) or str(i) for i in ids}


# --- What waits, read at scrape time -------------------------------------------------------


@dataclass
class Reading:
    """A gauge read from the database at scrape time: its samples as (label values, value)."""

    name: str
    documentation: str
    labels: Sequence[str] = ()
    samples: list[tuple[Sequence[str], float]] = field(default_factory=list)


Source = Callable[[datetime], list[Reading]]


class _ReadingsCollector:
    """Turns the sources' readings into gauges; a source the database fails is left out,
    and relay_metrics_database_up says so."""

    def __init__(self, sources: Sequence[Source]):
        self.sources = sources

    def collect(self):
        up = 1.0
        now = timezone.now()
        for source in self.sources:
            try:
                readings = source(now)
            except DatabaseError as exc:
                log.warning("metrics: the backlog could not be read (%s)", exc)
                up = 0.0
                continue
            for reading in readings:
                family = GaugeMetricFamily(reading.name, reading.documentation, labels=list(reading.labels))
                for label_values, value in reading.samples:
                    family.add_metric(list(label_values), value)
                yield family
        yield GaugeMetricFamily("relay_metrics_database_up", "1 if the backlog gauges could be read from the "
                                "database at this scrape, else 0.", value=up)


def exposition(sources: Sequence[Source]) -> tuple[bytes, str]:
    """The scrape: every process's counters and histograms of this host, and the backlog."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_ReadingsCollector(sources))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_dead(pid: int) -> None:
    """A worker process exited (gunicorn's child_exit, Celery's worker_process_shutdown)."""
    multiprocess.mark_process_dead(pid)
