"""Acceptance run for quotas per application against a running platform (not a pytest module).

    DATABASE_URL=... CELERY_BROKER_URL=redis://... honcho start web beat   # in one shell
    DATABASE_URL=... CELERY_BROKER_URL=redis://... python -m tests.acceptance.quotas

An application with a daily quota of 5 messages: a batch of 6 is a 429 quota_exceeded with
Retry-After and creates nothing; a batch of 5 is accepted; then one more is refused. One
with a request rate of 3 a minute gets 429 rate_limited on its fourth request. Another
application, with neither, is not affected. Prints one line per check and a summary.
"""

import os
import sys
import time

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from comms.accounts import application_create, channel_upsert  # noqa: E402
from comms.models import Message  # noqa: E402

BASE = os.environ.get("RELAY_URL", "http://127.0.0.1:8000") + "/api/v1"
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def session(key: str) -> requests.Session:
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    return api


def batch(api: requests.Session, channel: str, count: int) -> requests.Response:
    items = [{"channel": channel, "receiver": f"+44770090{i:04d}", "content": {"text": "quota"}} for i in range(count)]
    return api.post(f"{BASE}/messages/batch", json={"messages": items})


def daily_quota(channel: str, suffix: str) -> None:
    app, key = application_create(name=f"acc-quota-{suffix}")
    app.daily_message_quota = 5
    app.save()
    api = session(key)
    over = batch(api, channel, 6)
    body = over.json()
    check("a batch over the daily quota is 429 quota_exceeded with Retry-After",
          over.status_code == 429 and body.get("code") == "quota_exceeded"
          and int(over.headers.get("Retry-After", "0")) > 0,
          f"HTTP {over.status_code} {body.get('code')} Retry-After {over.headers.get('Retry-After')}")
    check("and nothing is created", not Message.objects.filter(application=app).exists(),
          f"{Message.objects.filter(application=app).count()} messages")
    fits = batch(api, channel, 5)
    check("a batch that fits the quota is accepted", fits.status_code == 202,
          f"HTTP {fits.status_code}, {Message.objects.filter(application=app).count()} messages")
    one_more = api.post(f"{BASE}/messages", json={"channel": channel, "receiver": "+447700900999",
                                                  "content": {"text": "quota"}})
    check("one more after the quota is spent is refused", one_more.status_code == 429
          and Message.objects.filter(application=app).count() == 5, f"HTTP {one_more.status_code}")


def request_rate(channel: str, suffix: str) -> None:
    app, key = application_create(name=f"acc-rate-{suffix}")
    app.api_requests_per_minute = 3
    app.save()
    api = session(key)
    answers = [api.get(f"{BASE}/messages").status_code for _ in range(3)]
    fourth = api.get(f"{BASE}/messages")
    check("three requests a minute pass", answers == [200, 200, 200], str(answers))
    check("the fourth is 429 rate_limited with Retry-After",
          fourth.status_code == 429 and fourth.json().get("code") == "rate_limited"
          and int(fourth.headers.get("Retry-After", "0")) > 0,
          f"HTTP {fourth.status_code} Retry-After {fourth.headers.get('Retry-After')}")


def main() -> int:
    suffix = str(int(time.time()))
    channel = f"acc-quota-sim-{suffix}"
    channel_upsert(name=channel, type="simulator")
    # Processes cache an application a few seconds (RELAY_LOOKUP_CACHE_SECONDS): these are new.
    daily_quota(channel, suffix)
    request_rate(channel, suffix)
    _, free_key = application_create(name=f"acc-free-{suffix}")
    free = batch(session(free_key), channel, 20)
    check("an application without limits is not affected", free.status_code == 202, f"HTTP {free.status_code}")
    failed = [name for name, ok, _ in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
