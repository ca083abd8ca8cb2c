"""Acceptance run for the core lifecycle against a running platform (not a pytest module).

    DATABASE_URL=... CELERY_BROKER_URL=redis://... honcho start web beat   # in one shell
    DATABASE_URL=... CELERY_BROKER_URL=redis://... python -m tests.acceptance.core

It starts and kills its own worker processes (the `worker` line of the Procfile), so the
kill and broker-flush scenarios are real. Prints one line per check and a summary.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import django
import redis
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402

from comms.accounts import application_create, channel_upsert  # noqa: E402
from comms.models import Message, MessageEvent  # noqa: E402

BASE = os.environ.get("RELAY_URL", "http://127.0.0.1:8000") + "/api/v1"
WORKER_CMD = ["celery", "-A", "config", "worker", "-Q", ",".join(settings.RELAY_QUEUES), "--loglevel", "WARNING"]
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen(
            WORKER_CMD, start_new_session=True,
            stdout=open("/tmp/acceptance-worker.log", "a"), stderr=subprocess.STDOUT,
        )

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def client(key):
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {key}"
    return s


def wait_all(ids, statuses, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        done = Message.objects.filter(id__in=ids, status__in=statuses).count()
        if done == len(ids):
            return time.monotonic() - start
        time.sleep(0.25)
    return None


def codes(message_id):
    return list(MessageEvent.objects.filter(message_id=message_id).order_by("sequence")
                .values_list("status_code", flat=True))


def msg(channel, receiver, **extra):
    return {"channel": channel, "receiver": receiver, "content": {"text": "acceptance"}, **extra}


def scenarios(api):
    r = api.post(f"{BASE}/messages", json=msg("acc-sim", "+447700900123"))
    plain = r.json()["id"]
    r = api.post(f"{BASE}/messages", json=msg("acc-sim", "ann#fail", fallback=msg("acc-backup", "ann@example.com")))
    failing = r.json()["id"]
    fail1 = api.post(f"{BASE}/messages", json=msg("acc-sim", "bob#fail1")).json()["id"]
    reject = api.post(f"{BASE}/messages", json=msg("acc-sim", "cat#reject")).json()["id"]
    read = api.post(f"{BASE}/messages", json=msg("acc-sim", "dan#read")).json()["id"]
    delete = api.post(f"{BASE}/messages", json=msg("acc-sim", "eve#delete")).json()["id"]
    wait_all([plain, fail1, read], {"DELIVERED", "READ"}, 30)
    wait_all([failing, reject], {"DELIVERY_FAILED"}, 30)
    wait_all([delete], {"DELETED"}, 30)

    check("plain message DELIVERED", codes(plain) == ["QUEUED", "SENT", "DELIVERED"], str(codes(plain)))
    c = codes(failing)
    detail = api.get(f"{BASE}/messages/{failing}").json()
    failed_event = detail["events"][-1]
    fb = failed_event.get("fallbackTo")
    wait_all([fb], {"DELIVERED"}, 30) if fb else None
    fb_detail = api.get(f"{BASE}/messages/{fb}").json() if fb else {}
    check("#fail (maxAttempts 3): exactly two DELIVERY_RETRIED then DELIVERY_FAILED with fallbackTo",
          c.count("DELIVERY_RETRIED") == 2 and c[-1] == "DELIVERY_FAILED" and bool(fb), str(c))
    check("fallback DELIVERED on its own channel",
          fb_detail.get("status") == "DELIVERED" and fb_detail.get("channel") == "acc-backup",
          f"{fb_detail.get('status')} on {fb_detail.get('channel')}")
    c = codes(fail1)
    check("#fail1 recovers after one retry", c == ["QUEUED", "SENT", "DELIVERY_RETRIED", "SENT", "DELIVERED"], str(c))
    c = codes(reject)
    check("#reject fails at once, no retry", c == ["QUEUED", "DELIVERY_FAILED"], str(c))
    read_events = api.get(f"{BASE}/messages/{read}").json()["events"]
    check("#read ends READ with env", read_events[-1]["statusCode"] == "READ" and "env" in read_events[-1],
          json.dumps(read_events[-1].get("env")))
    check("#delete ends DELETED", codes(delete)[-1] == "DELETED", str(codes(delete)))


def batch(api, n=1000):
    body = {"messages": [msg("acc-sim", f"+44770090{i:04d}") for i in range(n)], "context": {"run": "batch"}}
    t0 = time.monotonic()
    r = api.post(f"{BASE}/messages/batch", json=body)
    accept = time.monotonic() - t0
    ids = [m["id"] for m in r.json().get("messages", [])]
    took = wait_all(ids, {"DELIVERED"}, 120)
    check(f"batch of {n} accepted in one request", r.status_code == 202 and len(ids) == n,
          f"HTTP {r.status_code} in {accept:.2f}s")
    check(f"all {n} batch messages DELIVERED", took is not None,
          f"{took:.1f}s after accept" if took else "timeout")


def isolation(api, other, admin_less):
    mine = api.post(f"{BASE}/messages", json=msg("acc-sim", "iso")).json()["id"]
    check("another application's message is 404", other.get(f"{BASE}/messages/{mine}").status_code == 404)
    check("another application's list does not show it",
          mine not in [m["id"] for m in other.get(f"{BASE}/messages").json()["results"]])
    check("non-admin application cannot manage channels",
          admin_less.get(f"{BASE}/channels").status_code == 403
          and admin_less.post(f"{BASE}/channels", json={"name": "x", "type": "simulator"}).status_code == 403)
    before = Message.objects.count()
    bad = [
        b"{", b"[]", b"null", b'"x"', b'{"channel": 1}', b'{"channel":"acc-sim","receiver":"a","content":"x"}',
        b'{"channel":"acc-sim","receiver":"a","content":{"text":"x"},"sendAt":"soon"}',
        b'{"channel":"acc-sim","receiver":"a","content":{"text":"x"},"fallback":{"channel":"zz"}}',
        json.dumps({"messages": [msg("acc-sim", "a"), {"receiver": 5}]}).encode(),
        b"\xff\xfe", b'{"messages": "x"}',
    ]
    statuses = []
    for body in bad:
        for path in ("/messages", "/messages/batch"):
            statuses.append(api.post(f"{BASE}{path}", data=body,
                                     headers={"Content-Type": "application/json"}).status_code)
    statuses.append(api.post(f"{BASE}/messages", data=b"x" * (6 * 1024 * 1024),
                             headers={"Content-Type": "application/json"}).status_code)
    statuses.append(api.get(f"{BASE}/messages?createdAfter=yesterday").status_code)
    statuses.append(api.get(f"{BASE}/messages?status=NOPE").status_code)
    check("malformed input: no 5xx, nothing created",
          max(statuses) < 500 and Message.objects.count() == before, str(Counter(statuses)))


def kill_test(api, n=400):
    worker = Worker()
    body = {"messages": [msg("acc-slow", f"k{i}") for i in range(n)]}
    ids = [m["id"] for m in api.post(f"{BASE}/messages/batch", json=body).json()["messages"]]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sent = Message.objects.filter(id__in=ids, status="SENT").count()
        if sent >= n // 4:
            break
        time.sleep(0.05)
    states = Counter(Message.objects.filter(id__in=ids).values_list("status", flat=True))
    worker.kill()
    t_kill = time.monotonic()
    replacement = Worker()
    took = wait_all(ids, {"DELIVERED"}, 180)
    sent_counts = Counter(MessageEvent.objects.filter(message_id__in=ids, status_code="SENT")
                          .values_list("message_id", flat=True))
    twice = sum(1 for c in sent_counts.values() if c > 1)
    check(f"worker SIGKILLed with {n} in flight: all delivered", took is not None,
          f"states at kill {dict(states)}; all DELIVERED {time.monotonic() - t_kill:.1f}s after the kill")
    check("none sent twice (one SENT event per message)", twice == 0 and len(sent_counts) == n,
          f"{twice} with >1 SENT")
    replacement.stop()


def flush_test(api, n=200):
    body = {"messages": [msg("acc-sim", f"f{i}") for i in range(n)]}
    ids = [m["id"] for m in api.post(f"{BASE}/messages/batch", json=body).json()["messages"]]
    time.sleep(0.5)
    broker = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    queued = sum(broker.llen(queue) for queue in settings.RELAY_QUEUES)
    broker.flushdb()
    t0 = time.monotonic()
    worker = Worker()
    took = wait_all(ids, {"DELIVERED"}, 120)
    check(f"broker emptied with {n} queued: all delivered within the recovery window", took is not None,
          f"{queued} task(s) flushed; all DELIVERED {time.monotonic() - t0:.1f}s after the flush")
    worker.stop()


def main():
    suffix = str(int(time.time()))
    _, key = application_create(name=f"acc-{suffix}", is_admin=True)
    _, other_key = application_create(name=f"acc-other-{suffix}")
    channel_upsert(name="acc-sim", type="simulator", max_attempts=3, retry_delay=1)
    channel_upsert(name="acc-backup", type="simulator", max_attempts=1)
    channel_upsert(name="acc-slow", type="simulator", config={"receiptDelay": 2})
    api, other = client(key), client(other_key)
    which = sys.argv[1:] or ["scenarios", "batch", "isolation", "kill", "flush"]
    worker = Worker() if {"scenarios", "batch", "isolation"} & set(which) else None
    try:
        if "scenarios" in which:
            scenarios(api)
        if "batch" in which:
            batch(api)
        if "isolation" in which:
            isolation(api, other, other)
    finally:
        if worker:
            worker.stop()
    if "kill" in which:
        kill_test(api)
    if "flush" in which:
        flush_test(api)
    failed = [r for r in results if not r[1]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
