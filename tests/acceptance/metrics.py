"""Acceptance run for /metrics against a running platform (not a pytest module).

    export DATABASE_URL=... CELERY_BROKER_URL=redis://... METRICS_TOKEN=...
    honcho start -p 8000 web beat            # in one shell (gunicorn with config.gunicorn)
    python -m tests.acceptance.metrics       # in another: starts two workers of its own

It starts TWO separate Celery worker processes (each a prefork pool of 2), sends 500
messages on channels of its own (plain ones, #fail1, #reject, #fail with a fallback, #fail
expiring, scheduled ones it cancels) through the API to a webhook subscription, waits until
every message is final and every webhook delivered, then scrapes /metrics with the token and
checks the counters equal the database, channel by channel and status by status: what the
gunicorn workers counted (accepted) and what the Celery pool processes counted (outcomes,
latencies, provider errors, webhook attempts) add up in one scrape. Its channels are new
each run, so their counters start at zero whatever the metrics directory already holds;
the webhook attempts counter has no channel and is compared as the change over the run.
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db.models import Count  # noqa: E402

from comms.accounts import application_create, channel_upsert  # noqa: E402
from comms.models import Message, MessageEvent  # noqa: E402
from config.celery import app as celery_app  # noqa: E402
from deliveries.models import Delivery, DeliveryAttempt  # noqa: E402
from deliveries.services import subscription_create  # noqa: E402
from tests.receiver import Answer, Receiver  # noqa: E402

ROOT = os.environ.get("RELAY_URL", "http://127.0.0.1:8000")
BASE = ROOT + "/api/v1"
TOKEN = os.environ.get("METRICS_TOKEN", "")
OUTCOMES = ("DELIVERED", "DELIVERY_FAILED", "CANCELLED", "EXPIRED")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
EXPIRES_SOON = "soon"  # replaced by a time just ahead when the messages are sent
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


class Worker:
    def __init__(self, name: str):
        queues = ",".join([*settings.RELAY_QUEUES, "celery"])
        self.name = f"{name}@{os.uname().nodename}"
        self.proc = subprocess.Popen(
            ["celery", "-A", "config", "worker", "-Q", queues, "-n", self.name, "--concurrency", "2",
             "--loglevel", "WARNING"],
            start_new_session=True, stdout=open(f"/tmp/acceptance-metrics-{name}.log", "a"),
            stderr=subprocess.STDOUT)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


def scrape(token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    r = requests.get(f"{ROOT}/metrics", headers=headers, timeout=30)
    samples = {}
    for line in r.text.splitlines() if r.status_code == 200 else []:
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            samples[(match.group(1), tuple(sorted(LABEL.findall(match.group(2) or ""))))] = float(match.group(3))
    return r.status_code, samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def msg(channel: str, receiver: str, **extra) -> dict:
    return {"channel": channel, "receiver": receiver, "content": {"text": "metrics acceptance"}, **extra}


def the_500(sim: str, backup: str, slow: str) -> tuple[list[dict], int]:
    """500 messages in a shuffled-looking mix; returns them and how many are to be cancelled."""
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    mix = ([msg(sim, f"+4477009{i:05d}") for i in range(400)]
           + [msg(sim, f"fail1-{i}#fail1") for i in range(30)]
           + [msg(sim, f"reject-{i}#reject") for i in range(20)]
           + [msg(sim, f"fail-{i}#fail", fallback=msg(backup, f"backup-{i}")) for i in range(20)]
           + [msg(slow, f"expiring-{i}#fail", expiresAt=EXPIRES_SOON) for i in range(10)]
           + [msg(sim, f"scheduled-{i}", sendAt=later) for i in range(20)])
    return mix[::7] + [m for i, m in enumerate(mix) if i % 7], 20


def send(api: requests.Session, messages: list[dict]) -> list[dict]:
    """In batches of 100, the last one message by message."""
    created = []
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    messages = [{**m, "expiresAt": soon} if m.get("expiresAt") == EXPIRES_SOON else m for m in messages]
    for start in range(0, 400, 100):
        r = api.post(f"{BASE}/messages/batch", json={"messages": messages[start:start + 100]})
        assert r.status_code == 202, r.text
        created += r.json()["messages"]
    for body in messages[400:]:
        r = api.post(f"{BASE}/messages", json=body)
        assert r.status_code == 202, r.text
        created.append(r.json())
    return created


def wait_until(what: str, done, timeout: float) -> bool:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if done():
            check(what, True, f"after {time.monotonic() - start:.1f}s")
            return True
        time.sleep(0.5)
    check(what, False, f"not within {timeout:.0f}s")
    return False


def expected(channels: list[str]) -> dict:
    """What the counters must say, from the database: {(name, labels): value}."""
    want = {}
    for name in channels:
        events = MessageEvent.objects.filter(message__channel__name=name)
        want[("relay_messages_accepted_total", (("channel", name),))] = Message.objects.filter(channel__name=name).count()
        for status in OUTCOMES:
            want[("relay_messages_total", (("channel", name), ("status", status)))] = \
                events.filter(status_code=status).count()
        errors = (events.filter(status_code__in=["DELIVERY_RETRIED", "DELIVERY_FAILED"]).values("error_code")
                  .annotate(n=Count("id")).values_list("error_code", "n"))
        for code, n in errors:
            want[("relay_provider_errors_total", (("channel", name), ("code", code)))] = n
        want[("relay_message_accept_to_sent_seconds_count", (("channel", name),))] = \
            events.filter(status_code="SENT", attempt=1).count()
        want[("relay_message_sent_to_delivered_seconds_count", (("channel", name),))] = \
            events.filter(status_code="DELIVERED").count()
    return want


def webhook_attempts(subscription_id: str) -> Counter:
    attempts = DeliveryAttempt.objects.filter(delivery__subscription_id=subscription_id)
    return Counter("success" if a.status_code and 200 <= a.status_code < 300 else (a.error_kind or "failure")
                   for a in attempts.only("status_code", "error_kind"))


def compare(channels: list[str], subscription_id: str, before: dict) -> None:
    """Scrape until the counters equal the database (a worker counts just after its commit)."""
    deadline = time.monotonic() + 20
    while True:
        want = expected(channels)
        _, got = scrape()
        wrong = {key: (got.get(key, 0.0), n) for key, n in want.items() if got.get(key, 0.0) != n}
        hooks_want = webhook_attempts(subscription_id)
        hooks_got = {o: value(got, "relay_webhook_attempts_total", outcome=o)
                     - value(before, "relay_webhook_attempts_total", outcome=o) for o in hooks_want}
        if (not wrong and hooks_got == dict(hooks_want)) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for (name, labels), n in sorted(want.items()):
        shown = ",".join(f'{k}="{v}"' for k, v in labels)
        check(f"{name}{{{shown}}} equals the database", (name, labels) not in wrong,
              f"metrics {got.get((name, labels), 0.0):g}, database {n}")
    check("relay_webhook_attempts_total by outcome equals the database (change over the run)",
          hooks_got == dict(hooks_want), f"metrics {hooks_got}, database {dict(hooks_want)}")
    for name in channels:
        left = sum(v for (n, labels), v in got.items() if n == "relay_messages_waiting" and ("channel", name) in labels)
        check(f"nothing left waiting on {name} (relay_messages_waiting)", left == 0, f"{left:g}")
    pending = Delivery.objects.filter(status="pending").count()
    check("relay_webhook_deliveries_pending equals the database", value(got, "relay_webhook_deliveries_pending")
          == pending, f"metrics {value(got, 'relay_webhook_deliveries_pending'):g}, database {pending}")
    check("relay_metrics_database_up is 1", value(got, "relay_metrics_database_up") == 1)


def both_workers_worked(workers: list[Worker]) -> None:
    stats = celery_app.control.inspect(destination=[w.name for w in workers], timeout=5).stats() or {}
    totals = {name: sum(s.get("total", {}).values()) for name, s in stats.items()}
    check("both worker processes ran tasks", len(totals) == 2 and all(totals.values()), str(totals))


def run(api: requests.Session, channels: list[str], subscription_id: str, workers: list[Worker]) -> None:
    status, before = scrape()
    check("GET /metrics with the token is 200", status == 200, f"HTTP {status}")
    messages, cancels = the_500(*channels)
    t0 = time.monotonic()
    created = send(api, messages)
    check("500 messages accepted", len(created) == 500, f"in {time.monotonic() - t0:.1f}s")
    scheduled = [m["id"] for m in created if m["status"] == "SCHEDULED"]
    cancelled = [api.post(f"{BASE}/messages/{i}/cancel").status_code for i in scheduled]
    check(f"{cancels} scheduled messages cancelled", cancelled == [200] * cancels, str(Counter(cancelled)))
    ours = Message.objects.filter(channel__name__in=channels)
    wait_until("every message final", lambda: not ours.exclude(status__in=OUTCOMES).exists(), 300)
    pending = Delivery.objects.filter(subscription_id=subscription_id, status="pending")
    wait_until("every webhook delivered", lambda: not pending.exists(), 180)
    print("database:", dict(Counter(ours.values_list("channel__name", "status"))), flush=True)
    compare(channels, subscription_id, before)
    both_workers_worked(workers)
    check("GET /metrics without a token is 401", scrape(None)[0] == 401)
    check("GET /metrics with a wrong token is 401", scrape(TOKEN + "x")[0] == 401)


def main():
    if not TOKEN:
        sys.exit("set METRICS_TOKEN, for the platform and for this script")
    suffix = str(int(time.time()))
    application, key = application_create(name=f"metrics-{suffix}")
    channels = [f"met-sim-{suffix}", f"met-backup-{suffix}", f"met-slow-{suffix}"]
    channel_upsert(name=channels[0], type="simulator", max_attempts=3, retry_delay=1)
    channel_upsert(name=channels[1], type="simulator", max_attempts=1)
    # Retries 20 s apart: a failing message with a 30-second expiresAt expires before its third attempt.
    channel_upsert(name=channels[2], type="simulator", max_attempts=3, retry_delay=20)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    workers = [Worker("metrics-1"), Worker("metrics-2")]
    # A few 500s first, so some webhooks fail once and are retried.
    with Receiver([Answer(500)] * 15) as receiver:
        subscription = subscription_create(application=application, url=receiver.url)
        try:
            run(api, channels, subscription.id, workers)
        finally:
            for worker in workers:
                worker.stop()
    failed = [r for r in results if not r[1]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
