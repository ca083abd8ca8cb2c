"""Acceptance run for the health console on a big table (not a pytest module).

    DATABASE_URL=postgres://... python manage.py seedhistory --messages 1000000   # once
    DATABASE_URL=postgres://... honcho start -p 8000 web &                         # optional
    DATABASE_URL=postgres://... python -m tests.acceptance.console

Times /admin/console/ and the message history pages as an operator: in this process
(Django's test client, after one warm-up), and over HTTP when a platform answers at
RELAY_URL. Every page must answer in under 500 ms. Prints one line per check and a summary.
"""

import os
import statistics
import sys
import time

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from comms.models import Message  # noqa: E402

URL = os.environ.get("RELAY_URL", "http://127.0.0.1:8000")
BOUND_MS = 500
RUNS = 5
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def pages() -> dict[str, str]:
    message = Message.objects.order_by("-created_at").only("id").first()
    return {
        "health console": "/admin/console/",
        "messages, newest first": "/admin/comms/message/",
        "messages, DELIVERY_FAILED": "/admin/comms/message/?status__exact=DELIVERY_FAILED",
        "a message's history": f"/admin/comms/message/{message.id}/change/" if message else "/admin/",
    }


def timed(get, path: str) -> list[float]:
    get(path)  # warm-up: templates compiled, connection open
    took = []
    for _ in range(RUNS):
        started = time.perf_counter()
        status = get(path)
        took.append((time.perf_counter() - started) * 1000)
        assert status == 200, f"{path}: HTTP {status}"
    return took


def report(where: str, get) -> None:
    for name, path in pages().items():
        took = timed(get, path)
        check(f"{where}: {name} under {BOUND_MS} ms", max(took) < BOUND_MS,
              f"median {statistics.median(took):.0f} ms, max {max(took):.0f} ms over {RUNS}")


def main() -> int:
    count = Message.objects.count()
    print(f"{count:,} messages in {settings.DATABASES['default']['NAME']}", flush=True)
    operator = get_user_model().objects.filter(username="acceptance-operator").first() or \
        get_user_model().objects.create_superuser("acceptance-operator", "ops@example.com", None)
    client = Client()
    client.force_login(operator)
    report("in-process", lambda path: client.get(path).status_code)
    http = requests.Session()
    http.cookies.set(settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
    try:
        http.get(f"{URL}/healthz", timeout=5)
    except requests.RequestException:
        print(f"(no platform at {URL}: HTTP timings skipped)", flush=True)
    else:
        report("over HTTP", lambda path: http.get(f"{URL}{path}", timeout=30).status_code)
    failed = [name for name, ok, _ in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
