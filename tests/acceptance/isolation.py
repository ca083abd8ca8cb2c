"""Acceptance run for tenant isolation against a running platform (not a pytest module).

One tenant's hanging webhook endpoint must not stall every other tenant's messages.

    export DATABASE_URL=... CELERY_BROKER_URL=redis://...
    honcho start web worker beat              # in one shell
    python -m tests.acceptance.isolation      # in another

Application A ("acme") has three subscriptions to an endpoint that accepts connections and
never answers, and one healthy one; application B ("globex") has one healthy subscription.
B's latency (accept -> DELIVERED webhook) is measured alone, then while A sends 200 messages.
Environment: RELAY_URL (http://127.0.0.1:8000), ISO_TIMEOUT (240 s to wait for the load),
ISO_MAX_IN_FLIGHT (20 connections per hanging subscription: the default bound), ISO_PROBE_WATCH (0 s: how long
to keep watching the hanging endpoint after the load, e.g. for a circuit breaker's probes).
Prints one line per check, a SUMMARY line of JSON, and "N passed, M failed".
"""

import json
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db.models import Count  # noqa: E402

from comms.accounts import application_create, channel_upsert  # noqa: E402
from comms.models import Message, MessageEvent  # noqa: E402
from deliveries.models import Subscription  # noqa: E402
from tests.acceptance.webhooks import Receiver  # noqa: E402
from tests.hanging import Hanging  # noqa: E402

BASE = os.environ.get("RELAY_URL", "http://127.0.0.1:8000") + "/api/v1"
TIMEOUT = float(os.environ.get("ISO_TIMEOUT", "240"))
MAX_IN_FLIGHT = int(os.environ.get("ISO_MAX_IN_FLIGHT", "20"))
PROBE_WATCH = float(os.environ.get("ISO_PROBE_WATCH", "0"))
CHANNEL, RECEIVER, N = "iso-sim", "+447700900123", 200
HANG_PATHS = ["/hang/1", "/hang/2", "/hang/3"]
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def first_arrivals(rx: Receiver) -> dict[tuple[str, str, str], float]:
    """When each (path, messageId, statusCode) first arrived, verified."""
    seen: dict[tuple[str, str, str], float] = {}
    with rx.lock:
        for path, entries in rx.got.items():
            for entry in entries:
                payload = entry["payload"]
                seen.setdefault((path, payload["messageId"], payload["statusCode"]), entry["at"])
    return seen


def arrivals(rx: Receiver, path: str, ids, code: str) -> dict[str, float]:
    seen = first_arrivals(rx)
    return {i: seen[(path, i, code)] for i in ids if (path, i, code) in seen}


def p95(latencies):
    """Missing arrivals count as infinitely late: None when they reach the 95th percentile."""
    if not latencies:
        return None
    value = sorted(latencies)[math.ceil(0.95 * len(latencies)) - 1]
    return None if math.isinf(value) else round(value, 3)


def show(value):
    return "n/a (over the timeout)" if value is None else f"{value:.2f}s"


def wait(predicate, deadline):
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return predicate()


def send_many(key, n):
    """n single POST /messages from 8 threads: {message id: time its 202 arrived}."""
    local = threading.local()

    def one(i):
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.headers["Authorization"] = f"Bearer {key}"
        r = local.s.post(f"{BASE}/messages", json={"channel": CHANNEL, "receiver": RECEIVER,
                                                    "content": {"text": f"iso {i}"}, "context": {"i": i}})
        assert r.status_code == 202, r.text
        return r.json()["id"], time.monotonic()

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, range(n)))


def latencies(rx, path, accepted):
    got = arrivals(rx, path, accepted, "DELIVERED")
    return [got[i] - t if i in got else math.inf for i, t in accepted.items()]


def probes_per_interval(hang: Hanging, application) -> dict[str, float | None]:
    """Requests per WEBHOOK_BREAKER_PROBE_INTERVAL at each hanging path since its
    subscription began backing off (None: it never did)."""
    interval = settings.WEBHOOK_BREAKER_PROBE_INTERVAL
    now_wall, now_mono = time.time(), time.monotonic()
    result = {}
    for sub in Subscription.objects.filter(application=application, url__startswith=hang.url):
        path = sub.url[len(hang.url):]
        if sub.backing_off_since is None:
            result[path] = None
            continue
        # backingOffSince is when the round that opened the breaker began: its own
        # requests arrive within moments of it, and are not probes.
        since = now_mono - (now_wall - sub.backing_off_since.timestamp())
        count = sum(1 for t in hang.arrivals[path] if t > since + 2.0)
        result[path] = round(count / max((now_mono - since) / interval, 1.0), 2)
    return result


def main():
    suffix = str(int(time.time()))
    rx, hang = Receiver(), Hanging()
    channel_upsert(name=CHANNEL, type="simulator")
    app_a, key_a = application_create(name=f"acme-{suffix}")
    app_b, key_b = application_create(name=f"globex-{suffix}")

    def subscribe(key, url, path):
        r = requests.post(f"{BASE}/subscriptions", json={"url": url + path},
                          headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201, r.text
        rx.secrets[path] = r.json()["secret"]

    subscribe(key_b, rx.url, "/b")
    for path in HANG_PATHS:
        subscribe(key_a, hang.url, path)
    subscribe(key_a, rx.url, "/a")

    # Baseline: B alone.
    b_base = send_many(key_b, N)
    wait(lambda: len(arrivals(rx, "/b", b_base, "DELIVERED")) == N, time.monotonic() + 120)
    base_p95 = p95(latencies(rx, "/b", b_base))
    check("baseline: B's 200 DELIVERED webhooks received", base_p95 is not None and
          len(arrivals(rx, "/b", b_base, "DELIVERED")) == N, f"p95 {show(base_p95)}")
    bound = max(2 * base_p95, base_p95 + 2) if base_p95 is not None else 0

    # Load: A's 200 (three hanging subscriptions), then at once B's 200.
    load_start = time.monotonic()
    a_ids = send_many(key_a, N)
    b_load = send_many(key_b, N)
    deadline = time.monotonic() + TIMEOUT
    wait(lambda: len(arrivals(rx, "/b", b_load, "DELIVERED")) == N, deadline)
    b_done = len(arrivals(rx, "/b", b_load, "DELIVERED"))
    b_p95 = p95(latencies(rx, "/b", b_load))
    check(f"under load: B's 200 DELIVERED within {TIMEOUT:.0f}s, p95 within the bound",
          b_done == N and b_p95 is not None and b_p95 <= bound,
          f"{b_done}/{N} received; p95 {show(b_p95)} (baseline {show(base_p95)}, bound {bound:.2f}s)")
    b_all = {**b_base, **b_load}
    expected = {("/b", i, c) for i in b_all for c in ("QUEUED", "SENT", "DELIVERED")}
    wait(lambda: expected <= set(first_arrivals(rx)), time.monotonic() + (30 if b_done == N else 0))
    missing = len(expected - set(first_arrivals(rx)))
    check("B: QUEUED, SENT and DELIVERED webhooks received at /b for all 400 messages",
          missing == 0, f"{len(expected) - missing}/{len(expected)}")

    # A's own messages and its healthy subscription.
    def a_db_delivered():
        return Message.objects.filter(id__in=list(a_ids), status="DELIVERED").count()

    wait(lambda: a_db_delivered() == N and len(arrivals(rx, "/a", a_ids, "DELIVERED")) == N, deadline)
    a_db = a_db_delivered()
    a_wh = len(arrivals(rx, "/a", a_ids, "DELIVERED"))
    a_p95 = p95(latencies(rx, "/a", a_ids))
    check("A: all 200 messages DELIVERED in the database", a_db == N, f"{a_db}/{N}")
    check("A: healthy subscription /a got all 200 DELIVERED webhooks, p95 within the bound",
          a_wh == N and a_p95 is not None and a_p95 <= bound, f"{a_wh}/{N}; p95 {show(a_p95)}")
    check("every webhook verified by standardwebhooks", not rx.bad,
          f"{len(rx.bad)} bad" + (f", first: {rx.bad[0]}" if rx.bad else ""))

    # The hanging endpoint.
    load_end = time.monotonic()
    with hang.lock:
        max_open = {p: hang.max_open[p] for p in HANG_PATHS}
        hang_requests = {p: len(hang.arrivals[p]) for p in HANG_PATHS}
        first = min((hang.arrivals[p][0] for p in HANG_PATHS if hang.arrivals[p]), default=None)
        total_max = hang.total_max
    check(f"hanging endpoint: at most {MAX_IN_FLIGHT} connections at once per subscription",
          all(v <= MAX_IN_FLIGHT for v in max_open.values()), f"max per path {max_open}, total {total_max}")
    after_60 = ({p: hang.per_minute(p, first + 60, load_end) for p in HANG_PATHS}
                if first is not None and load_end > first + 60 else None)
    print(f"      hanging requests per path {hang_requests}; per minute after the first 60 s {after_60}")
    probe_rpm = probes = None
    if PROBE_WATCH > 0:
        time.sleep(PROBE_WATCH)
        probe_rpm = {p: hang.per_minute(p, load_end, time.monotonic()) for p in HANG_PATHS}
        print(f"      hanging requests per minute in the {PROBE_WATCH:.0f}s after the load: {probe_rpm}")
        probes = probes_per_interval(hang, app_a)
        check("after backing off, about one probe per interval", bool(probes) and
              all(v is not None and v <= 1.2 for v in probes.values()), f"{probes}")

    # Nothing sent twice.
    all_ids = list(b_all) + list(a_ids)
    sent = MessageEvent.objects.filter(message_id__in=all_ids, status_code="SENT")
    dup = sent.values("message_id", "attempt").annotate(n=Count("id")).order_by().filter(n__gt=1).count()
    per_message = dict(sent.values_list("message_id").annotate(n=Count("id")).order_by())
    single = Message.objects.filter(id__in=all_ids, attempts=1).values_list("id", flat=True)
    not_one = sum(1 for i in single if per_message.get(i, 0) != 1)
    check("nothing sent twice: one SENT per attempt; exactly one SENT for single-attempt messages",
          dup == 0 and not_one == 0, f"{dup} duplicated attempts, {not_one} of {len(single)} not exactly one")

    summary = {
        "baseline_p95": base_p95, "bound": round(bound, 3), "b_load_delivered": b_done, "b_load_p95": b_p95,
        "b_webhooks_missing": missing, "a_db_delivered": a_db, "a_webhook_delivered": a_wh, "a_p95": a_p95,
        "bad_signatures": len(rx.bad), "hang_max_open": max_open, "hang_total_max_open": total_max,
        "hang_requests": hang_requests, "hang_rpm_after_60s": after_60, "hang_rpm_probe_watch": probe_rpm, "probes_per_interval": probes,
        "duplicate_sent_attempts": dup, "single_attempt_not_one_sent": not_one,
        "load_seconds": round(load_end - load_start, 1), "timeout": TIMEOUT,
    }
    print("SUMMARY " + json.dumps(summary), flush=True)
    hang.release()
    # Left behind, the hanging subscriptions would go on probing, into a later run's endpoint.
    Subscription.objects.filter(application__in=[app_a, app_b]).delete()
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
