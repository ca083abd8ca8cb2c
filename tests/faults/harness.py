"""What every case shares: the report, tenants (an application, its key, its subscription),
clients that submit through outages, and the checks of a case's outcome.

The checks read the throwaway database through Django's ORM (set up by the runner once the
servers exist); every query goes through `db()`, which reconnects after an outage.
"""

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests
from django.db import InterfaceError, OperationalError, connections
from django.db.models import Count

from comms.models import Application, Message, MessageEvent
from deliveries.models import Delivery

from .receiver import WebhookReceiver

DELIVERED_TIMELINE = ["QUEUED", "SENT", "DELIVERED"]


class Report:
    def __init__(self):
        self.results: list[tuple[str, str, bool, str]] = []

    def check(self, case: str, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((case, name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  [{case}] {name}  {detail}", flush=True)
        return ok

    def note(self, case: str, text: str) -> None:
        print(f"      [{case}] {text}", flush=True)

    @property
    def failed(self) -> list[tuple[str, str, bool, str]]:
        return [r for r in self.results if not r[2]]


def wait_until(predicate, timeout: float, interval: float = 0.25) -> float | None:
    """Seconds until predicate() held (0.0: it held at once), or None at the timeout."""
    start = time.monotonic()
    if predicate():
        return 0.0
    while True:
        time.sleep(interval)
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None


def db(query, timeout: float = 60):
    """Run an ORM query; after a database outage the old connection is dead, so close it and
    try again until the server answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return query()
        except (OperationalError, InterfaceError):
            connections.close_all()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# --- tenants -------------------------------------------------------------------------------

@dataclass
class Tenant:
    name: str
    key: str
    application_id: int
    base: str
    paths: list[str] = field(default_factory=list)
    subscription_ids: dict[str, str] = field(default_factory=dict)

    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.key}"
        return s

    def subscribe(self, url: str, path: str, receiver: WebhookReceiver | None) -> str:
        r = self.session().post(f"{self.base}/subscriptions", json={"url": url}, timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"subscription for {self.name} refused: {r.status_code} {r.text[:300]}")
        body = r.json()
        if receiver is not None:
            receiver.secrets[path] = body["secret"]
            self.paths.append(path)
        self.subscription_ids[path] = body["id"]
        return body["id"]

    def messages(self):
        return Message.objects.filter(application_id=self.application_id)


def make_tenant(platform, receiver: WebhookReceiver, name: str) -> Tenant:
    """An application made by `createapp` (its key is the last line printed), subscribed to
    every event at the receiver's /<name>."""
    key = platform.manage("createapp", name).strip().splitlines()[-1].strip()
    app_id = db(lambda: Application.objects.get(name=name).id)
    tenant = Tenant(name=name, key=key, application_id=app_id, base=f"{platform.base}/api/v1")
    tenant.subscribe(receiver.url(f"/{name}"), f"/{name}", receiver)
    return tenant


def message(channel: str, receiver: str, i: int) -> dict:
    return {"channel": channel, "receiver": receiver, "content": {"text": f"fault {i}"}, "context": {"i": i}}


def submit_batches(tenant: Tenant, channel: str, n: int, *, size: int = 100, pause: float = 0.0) -> list[str]:
    """n messages in batches; every batch must be accepted (the API is up meanwhile)."""
    s, ids = tenant.session(), []
    for start in range(0, n, size):
        body = {"messages": [message(channel, f"+4477009{i:05d}", i) for i in range(start, min(start + size, n))]}
        r = s.post(f"{tenant.base}/messages/batch", json=body, timeout=60)
        if r.status_code != 202:
            raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
        ids += [m["id"] for m in r.json()["messages"]]
        if pause:
            time.sleep(pause)
    return ids


# --- clients through an outage -------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    at: float
    what: str  # "POST /messages", "GET /messages", ...
    status: int | str  # an HTTP status, or the name of a client-side error
    well_formed_503: bool = False
    took: float = 0.0  # seconds the answer took


def observe(what: str, response: requests.Response) -> Seen:
    ok_503 = False
    if response.status_code == 503:
        try:
            code = response.json().get("code")
        except ValueError:
            code = None
        ok_503 = code == "unavailable" and bool(response.headers.get("Retry-After"))
    return Seen(time.monotonic(), what, response.status_code, ok_503, response.elapsed.total_seconds())


class Submitter:
    """Single POST /messages from a few threads, each with an Idempotency-Key, retried until
    accepted (a 503 during an outage says nothing was promised; the key makes the retry
    safe). Every answer is recorded."""

    def __init__(self, tenant: Tenant, channel: str, n: int, *, threads: int = 3, pace: float = 0.1,
                 prefix: str = "m", deadline: float = 180):
        self.tenant, self.channel, self.n, self.pace, self.prefix = tenant, channel, n, pace, prefix
        self.accepted: dict[str, float] = {}  # message id -> when its 202 arrived
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._next = 0
        self._deadline = time.monotonic() + deadline
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> "Submitter":
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(end - time.monotonic(), 0))
        return not any(t.is_alive() for t in self.threads)

    def _take(self) -> int | None:
        with self.lock:
            if self._next >= self.n:
                return None
            self._next += 1
            return self._next - 1

    def _run(self) -> None:
        s = self.tenant.session()
        while (i := self._take()) is not None:
            body = message(self.channel, f"+4477009{i:05d}", i)
            key = f"{self.prefix}-{i}"
            while time.monotonic() < self._deadline:
                try:
                    r = s.post(f"{self.tenant.base}/messages", json=body, headers={"Idempotency-Key": key},
                               timeout=40)
                except requests.RequestException as exc:
                    with self.lock:
                        self.seen.append(Seen(time.monotonic(), "POST /messages", type(exc).__name__))
                    time.sleep(0.3)
                    continue
                with self.lock:
                    self.seen.append(observe("POST /messages", r))
                if r.status_code == 202:
                    with self.lock:
                        self.accepted[r.json()["id"]] = time.monotonic()
                    break
                time.sleep(0.3)
            time.sleep(self.pace)


class OutagePoller:
    """While a fault lasts, one client calls the API over and over and records each answer."""

    def __init__(self, tenant: Tenant, channel: str, message_id: str):
        self.tenant, self.seen = tenant, []
        self.created: set[str] = set()  # the message its POSTs made (one key: at most one)
        self.calls = [
            ("GET /messages", "get", f"{tenant.base}/messages?pageSize=5", None),
            ("GET /messages/{id}", "get", f"{tenant.base}/messages/{message_id}", None),
            ("GET /subscriptions", "get", f"{tenant.base}/subscriptions", None),
            # One key throughout: however often it is answered, it makes at most one message.
            ("POST /messages", "post", f"{tenant.base}/messages", message(channel, "+447700900999", -1)),
        ]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "OutagePoller":
        self._thread.start()
        return self

    def stop(self) -> list[Seen]:
        self._stop.set()
        self._thread.join(60)
        return self.seen

    def _run(self) -> None:
        s = self.tenant.session()
        n = 0
        while not self._stop.is_set():
            what, method, url, body = self.calls[n % len(self.calls)]
            n += 1
            try:
                r = s.request(method, url, json=body, timeout=40,
                              headers={"Idempotency-Key": "outage-poll"} if body else None)
                self.seen.append(observe(what, r))
                if method == "post" and r.status_code == 202:
                    self.created.add(r.json()["id"])
            except requests.RequestException as exc:
                self.seen.append(Seen(time.monotonic(), what, type(exc).__name__))
            time.sleep(0.1)


def check_answers(report: Report, case: str, seen: list[Seen], outage: tuple[float, float],
                  down: tuple[float, float], *, all_503_while_down: bool) -> None:
    """Through the fault (`outage`: from the stop request until the server is back): never a
    500 (nor any 5xx but 503), nor a dropped connection, and every 503 JSON
    {"code": "unavailable"} with Retry-After. With `all_503_while_down`, every call made
    and answered while the server was down (`down`: stop done, start not begun) is such a
    503, and there were some."""
    statuses = Counter(str(s.status) for s in seen)
    during = Counter(str(s.status) for s in seen if outage[0] <= s.at <= outage[1])
    bad = [s for s in seen if not isinstance(s.status, int) or (s.status >= 500 and s.status != 503)
           or (s.status == 503 and not s.well_formed_503)]
    slowest = max((s.took for s in seen if outage[0] <= s.at <= outage[1]), default=0.0)
    report.check(case, "API through the outage: no 500, no dropped request, every 503 JSON "
                       "code=unavailable with Retry-After", not bad,
                 f"{len(seen)} answers {dict(statuses)}; {dict(during)} during the outage, "
                 f"slowest {slowest:.2f} s" + (f"; bad: {[(s.what, s.status) for s in bad[:5]]}" if bad else ""))
    if all_503_while_down:
        inside = [s for s in seen if isinstance(s.status, int) and s.at - s.took >= down[0] and s.at <= down[1]]
        by_call = Counter(f"{s.what} {s.status}" for s in inside)
        report.check(case, "every call made while the server was down answered 503 unavailable",
                     bool(inside) and all(s.status == 503 and s.well_formed_503 for s in inside),
                     f"{len(inside)} calls in {down[1] - down[0]:.1f} s: {dict(by_call)}")


# --- outcomes ------------------------------------------------------------------------------

def check_delivered(report: Report, case: str, tenant: Tenant, receiver: WebhookReceiver, *,
                    ids, since: float, since_what: str, timeout: float = 150,
                    webhook_timeout: float = 60) -> bool:
    """Every message of the tenant (at least the accepted `ids`) DELIVERED, none sent twice,
    every webhook received."""
    ids = set(ids)

    def statuses():
        return dict(db(lambda: list(tenant.messages().values_list("id", "status"))))

    # `since` is monotonic; the events carry wall-clock times (same machine, same clock).
    since_wall = datetime.now(UTC) - timedelta(seconds=time.monotonic() - since)
    took = wait_until(lambda: set(statuses().values()) == {"DELIVERED"}, timeout, 0.5)
    final = statuses()
    counts = Counter(final.values())
    lost = ids - set(final)
    stamps = sorted(db(lambda: list(MessageEvent.objects.filter(
        message__application_id=tenant.application_id, status_code="DELIVERED").values_list("created_at", flat=True))))
    # When the last one, and 90% of them, were DELIVERED: a slow bulk, or a tail?
    last = relative(stamps[-1] - since_wall, since_what) if stamps else "none"
    most = relative(stamps[math.ceil(0.9 * len(stamps)) - 1] - since_wall, "") if stamps else "none"
    ok = report.check(
        case, f"all {len(ids)} accepted messages DELIVERED",
        took is not None and not lost and counts["DELIVERED"] == len(final),
        f"{counts['DELIVERED']}/{len(final)} DELIVERED, the last {last} (90% of them {most.strip()})"
        + ("" if took is not None else f"; timeout, statuses {dict(counts)}")
        + (f"; {len(final) - len(ids)} more in the database than accepted" if len(final) > len(ids) else "")
        + (f"; {len(lost)} accepted but not in the database" if lost else ""))
    report.note(case, f"where the time went: {hops(tenant)}")
    ok &= check_sent_once(report, case, tenant)
    ok &= check_webhooks(report, case, tenant, receiver, since=since, since_what=since_what,
                         timeout=webhook_timeout)
    return ok


def hops(tenant: Tenant, slow: float = 10.0) -> str:
    """The longest wait between consecutive events of a message, per hop (QUEUED→SENT,
    SENT→DELIVERED), and how many waited longer than `slow` s: a lease or a receipt poll
    shows up here as a tail, where a slow platform shows up as everything slow."""
    rows = db(lambda: list(MessageEvent.objects.filter(message__application_id=tenant.application_id)
                           .order_by("message_id", "sequence")
                           .values_list("message_id", "status_code", "created_at")))
    waits: dict[str, list[float]] = {}
    previous: tuple[str, str, object] | None = None
    for row in rows:
        if previous and previous[0] == row[0]:
            waits.setdefault(f"{previous[1]}→{row[1]}", []).append((row[2] - previous[2]).total_seconds())
        previous = row
    return "; ".join(f"{hop} max {max(w):.1f} s ({sum(1 for x in w if x > slow)} over {slow:.0f} s)"
                     for hop, w in waits.items()) or "no events"


def relative(delta: timedelta, what: str) -> str:
    seconds = delta.total_seconds()
    return f"{abs(seconds):.1f} s {'after' if seconds >= 0 else 'before'} {what}"


def check_sent_once(report: Report, case: str, tenant: Tenant) -> bool:
    """No attempt has two SENT events, and a message sent once has exactly one; and the
    timeline of a plain simulator message is QUEUED, SENT, DELIVERED, nothing repeated."""
    def figures():
        sent = MessageEvent.objects.filter(message__application_id=tenant.application_id, status_code="SENT")
        dup = sent.values("message_id", "attempt").annotate(n=Count("id")).order_by().filter(n__gt=1).count()
        per_message = dict(sent.values_list("message_id").annotate(n=Count("id")).order_by())
        single = list(tenant.messages().filter(attempts=1).values_list("id", flat=True))
        not_one = sum(1 for i in single if per_message.get(i, 0) != 1)
        retried = tenant.messages().exclude(attempts=1).count()
        timelines: dict[str, list[str]] = {}
        for mid, code in (MessageEvent.objects.filter(message__application_id=tenant.application_id)
                          .order_by("message_id", "sequence").values_list("message_id", "status_code")):
            timelines.setdefault(mid, []).append(code)
        odd = Counter(" ".join(t) for t in timelines.values() if t != DELIVERED_TIMELINE)
        return dup, not_one, len(single), retried, odd

    dup, not_one, single, retried, odd = db(figures)
    ok = report.check(case, "none sent twice (one SENT per attempt; exactly one for single-attempt messages)",
                      dup == 0 and not_one == 0 and retried == 0,
                      f"{dup} sent twice, {not_one} of {single} without exactly one SENT, "
                      f"{retried} with attempts != 1")
    ok &= report.check(case, "every timeline is exactly QUEUED, SENT, DELIVERED", not odd,
                       f"{sum(odd.values())} other" + (f": {dict(odd.most_common(3))}" if odd else ""))
    return ok


def expected_webhooks(tenant: Tenant) -> set[str]:
    """Every event of the tenant's messages: each subscription takes every event."""
    return set(db(lambda: list(MessageEvent.objects.filter(message__application_id=tenant.application_id)
                               .values_list("id", flat=True))))


def check_webhooks(report: Report, case: str, tenant: Tenant, receiver: WebhookReceiver, *, since: float,
                   since_what: str, timeout: float = 60, paths: list[str] | None = None) -> bool:
    """Each of the tenant's receiver subscriptions got every event's webhook-id, and nothing
    of anyone else's. (Delivery is at least once: repeats are counted, not failed.)"""
    expected = expected_webhooks(tenant)
    ok = True
    for path in paths or tenant.paths:
        sub = tenant.subscription_ids[path]

        def unsettled(sub=sub):
            return dict(db(lambda: Delivery.objects.filter(subscription_id=sub).exclude(status="succeeded")
                           .values_list("status").annotate(n=Count("id")).order_by()))

        took = wait_until(lambda p=path: expected <= set(receiver.received(p)), timeout, 0.5)
        if took is not None:  # the last answers are recorded a moment after they are received
            wait_until(lambda: not unsettled(), 10, 0.5)
        received = receiver.received(path)
        missing, foreign = expected - set(received), set(received) - expected
        last = max((received[i][0] for i in expected & set(received)), default=since) - since
        left = unsettled()
        ok &= report.check(
            case, f"every webhook received at {path} (by webhook-id)", not missing and not foreign,
            f"{len(expected) - len(missing)}/{len(expected)} received, the last {last:.1f} s after {since_what}; "
            f"{receiver.requests[path]} requests"
            + (f"; deliveries not succeeded: {left}" if left else "")
            + (f"; {len(foreign)} not this application's" if foreign else "")
            + ("" if took is not None else " (timeout)"))
    return ok


def p95(values: list[float]) -> float:
    if not values:
        return math.inf
    return sorted(values)[math.ceil(0.95 * len(values)) - 1]
