"""Acceptance run for send rates against a running platform (not a pytest module).

    DATABASE_URL=... CELERY_BROKER_URL=redis://... honcho start web beat   # in one shell
    DATABASE_URL=... CELERY_BROKER_URL=redis://... python -m tests.acceptance.rates

It starts two Celery workers of its own (the `worker` line of the Procfile, under two
names), gives a simulator channel rateLimit 5 and submits 50 messages to it in one batch:
they must go SENT no faster than 5 a second (first to last >= 9 s), with both workers
sending, and all be DELIVERED, none failed or retried for the rate. Prints one line per
check and a summary.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402

from comms.accounts import application_create, channel_upsert  # noqa: E402
from comms.models import Message, MessageEvent  # noqa: E402

BASE = os.environ.get("RELAY_URL", "http://127.0.0.1:8000") + "/api/v1"
RATE, COUNT = 5, 50
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def start_worker(name: str) -> tuple[subprocess.Popen, Path]:
    log = Path(f"/tmp/acceptance-rates-{name}.log")
    log.write_text("")
    command = ["celery", "-A", "config", "worker", "-Q", ",".join(settings.RELAY_QUEUES), "-n", f"{name}@%h",
               "--concurrency", "2", "--loglevel", "INFO"]
    return subprocess.Popen(command, start_new_session=True, stdout=log.open("a"), stderr=subprocess.STDOUT), log


def wait_delivered(ids: list[str], timeout: float) -> bool:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if Message.objects.filter(id__in=ids, status="DELIVERED").count() == len(ids):
            return True
        time.sleep(0.25)
    return False


def paced_run(api: requests.Session, channel: str) -> None:
    body = {"messages": [{"channel": channel, "receiver": f"+4477009{i:05d}", "content": {"text": "paced"}}
                         for i in range(COUNT)]}
    response = api.post(f"{BASE}/messages/batch", json=body)
    ids = [m["id"] for m in response.json().get("messages", [])]
    check(f"{COUNT} messages accepted in one batch", response.status_code == 202 and len(ids) == COUNT,
          f"HTTP {response.status_code}")
    delivered = wait_delivered(ids, timeout=COUNT / RATE + 60)
    sent = sorted(MessageEvent.objects.filter(message_id__in=ids, status_code="SENT")
                  .values_list("created_at", flat=True))
    span = (sent[-1] - sent[0]).total_seconds() if sent else 0.0
    check(f"all {COUNT} DELIVERED", delivered,
          f"{Message.objects.filter(id__in=ids, status='DELIVERED').count()}/{COUNT}")
    check(f"SENT no faster than {RATE}/s: first to last >= {(COUNT - 1) / RATE - 0.8:.0f} s",
          len(sent) == COUNT and span >= 9.0,
          f"{len(sent)} SENT over {span:.2f} s ({(len(sent) - 1) / span if span else 0:.2f}/s)")
    # Over any ten consecutive sends, no faster than the rate (a SENT is recorded after the
    # provider answered, so single gaps carry that jitter; ten at a time, it averages out).
    tens = [(sent[i + 10] - sent[i]).total_seconds() for i in range(len(sent) - 10)]
    gaps = [(b - a).total_seconds() for a, b in zip(sent, sent[1:], strict=False)]
    check(f"no ten consecutive sends faster than {RATE}/s (>= {10 / RATE:.1f} s, less 10 %)",
          bool(tens) and min(tens) >= 10 / RATE * 0.9,
          f"fastest ten in {min(tens, default=0):.2f} s; single gaps {min(gaps, default=0):.3f}"
          f"-{max(gaps, default=0):.3f} s")
    others = MessageEvent.objects.filter(message_id__in=ids).exclude(status_code__in=["QUEUED", "SENT", "DELIVERED"])
    check("none failed or retried for the rate", not others.exists(),
          str(list(others.values_list("status_code", flat=True))[:5]))


def main() -> int:
    suffix = str(int(time.time()))
    _, key = application_create(name=f"acc-rates-{suffix}")
    channel = f"acc-paced-{suffix}"
    channel_upsert(name=channel, type="simulator", max_attempts=3, retry_delay=1, rate_limit=RATE)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    workers = [start_worker(f"rates{n}") for n in (1, 2)]
    try:
        time.sleep(5)  # both workers up and consuming before the burst
        paced_run(api, channel)
    finally:
        for process, _log in workers:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    sends = [log.read_text().count("comms.send_messages[") for _process, log in workers]
    check("both workers sent", all(n > 0 for n in sends), f"send tasks received per worker: {sends}")
    failed = [name for name, ok, _ in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
