"""Acceptance run for webhook deliveries against a running platform (not a pytest module).

    export DATABASE_URL=... CELERY_BROKER_URL=redis://... WEBHOOK_RETRY_SCHEDULE=1,2,4
    honcho start web worker beat          # in one shell
    python -m tests.acceptance.webhooks   # in another

A short WEBHOOK_RETRY_SCHEDULE keeps the 500-500-200 scenario to seconds instead of the
default five minutes before the third attempt. Prints one line per check and the rates.
"""

import json
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import django
import requests
from standardwebhooks import Webhook

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from comms.accounts import application_create, channel_upsert  # noqa: E402
from comms.payloads import TIMESTAMP_FORMAT  # noqa: E402
from deliveries.models import Delivery, DeliveryAttempt  # noqa: E402

BASE = os.environ.get("RELAY_URL", "http://127.0.0.1:8000") + "/api/v1"
results = []
ALLOWED_KEYS = {"id", "statusCode", "messageId", "channelName", "errorCode", "errorMessage",
                "fallbackTo", "env", "link", "context", "timeStamp", "sequence"}


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


class Receiver:
    """Routes by path; verifies every request with the path's secret."""

    def __init__(self):
        self.secrets: dict[str, str] = {}
        self.script: dict[str, list[int]] = {}
        self.got: dict[str, list[dict]] = defaultdict(list)
        self.bad: list[str] = []
        self.calls: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path
                with receiver.lock:
                    receiver.calls[path] += 1
                    script = receiver.script.get(path, [])
                    code = script.pop(0) if script else 200
                    if path == "/bare":
                        pass
                    elif path in receiver.secrets:
                        try:
                            payload = Webhook(receiver.secrets[path]).verify(body, dict(self.headers))
                            receiver.got[path].append({"payload": payload, "headers": dict(self.headers),
                                                       "code": code, "at": time.monotonic()})
                        except Exception as exc:
                            receiver.bad.append(f"{path}: {exc}")
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def wait(predicate, timeout=60):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def shape_ok(payload):
    keys = set(payload)
    required = {"id", "statusCode", "messageId", "channelName", "context", "timeStamp"}
    try:
        time.strptime(payload["timeStamp"], TIMESTAMP_FORMAT.replace("%z", "+0000"))
    except ValueError:
        return False
    return (required <= keys <= ALLOWED_KEYS and None not in payload.values()
            and len(payload["id"]) == 32 and len(payload["messageId"]) == 32)


def main():
    suffix = str(int(time.time()))
    _, key = application_create(name=f"wh-{suffix}")
    _, other_key = application_create(name=f"wh-other-{suffix}")
    channel_upsert(name="wh-sim", type="simulator")
    api, other = requests.Session(), requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    other.headers["Authorization"] = f"Bearer {other_key}"
    rx = Receiver()

    def subscribe(session, path, **extra):
        r = session.post(f"{BASE}/subscriptions", json={"url": rx.url + path, **extra})
        assert r.status_code == 201, r.text
        rx.secrets[path] = r.json()["secret"]
        return r.json()

    subscribe(api, "/all")
    subscribe(api, "/delivered", events=["DELIVERED"])
    subscribe(other, "/other")
    body = {"channel": "wh-sim", "receiver": "+447700900123", "content": {"text": "hi"}, "context": {"k": 1}}
    mid = api.post(f"{BASE}/messages", json=body).json()["id"]
    wait(lambda: len([g for g in rx.got["/all"] if g["payload"]["messageId"] == mid]) >= 3)
    time.sleep(1)
    mine = [g["payload"] for g in rx.got["/all"] if g["payload"]["messageId"] == mid]
    check("subscriber receives QUEUED, SENT, DELIVERED, each verified by standardwebhooks",
          sorted(p["statusCode"] for p in mine) == ["DELIVERED", "QUEUED", "SENT"] and not rx.bad,
          f"{[p['statusCode'] for p in mine]}, bad signatures: {len(rx.bad)}")
    check("each payload exactly in the DESIGN.md shape", all(shape_ok(p) for p in mine) and
          all(p["context"] == {"k": 1} and p["channelName"] == "wh-sim" for p in mine),
          json.dumps(mine[-1]) if mine else "")
    filtered = [g["payload"]["statusCode"] for g in rx.got["/delivered"]]
    check("a subscription filtered to DELIVERED receives only DELIVERED", filtered == ["DELIVERED"], str(filtered))
    check("another application's subscription receives nothing", rx.calls["/other"] == 0, str(rx.calls["/other"]))

    # 500, 500, then 200.
    rx.script["/flaky"] = [500, 500]
    subscribe(api, "/flaky", events=["QUEUED"])
    mid = api.post(f"{BASE}/messages", json=body).json()["id"]
    wait(lambda: any(g["code"] == 200 for g in rx.got["/flaky"]), 60)
    got = rx.got["/flaky"]
    ids = {g["headers"].get("webhook-id") for g in got}
    delivery = Delivery.objects.filter(subscription_id__isnull=False, event__message_id=mid,
                                       event__status_code="QUEUED", subscription__url__endswith="/flaky").first()
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
                    .values_list("status_code", "duration_ms"))
    check("500, 500, 200: received on the third attempt with one webhook-id throughout",
          [g["code"] for g in got] == [500, 500, 200] and len(ids) == 1, f"codes {[g['code'] for g in got]}, ids {len(ids)}")
    check("each attempt recorded with its status code and duration",
          [a[0] for a in attempts] == [500, 500, 200] and all(a[1] is not None for a in attempts), str(attempts))

    # 410 disables.
    rx.script["/gone"] = [410] * 100
    sub = subscribe(api, "/gone", events=["QUEUED"])
    api.post(f"{BASE}/messages", json=body)
    wait(lambda: rx.calls["/gone"] >= 1)
    time.sleep(1)
    api.post(f"{BASE}/messages", json=body)
    time.sleep(3)
    state = api.get(f"{BASE}/subscriptions/{sub['id']}").json()
    check("410 disables the subscription and nothing further is sent",
          state["active"] is False and rx.calls["/gone"] == 1,
          f"active={state['active']} reason={state['disabledReason']!r} calls={rx.calls['/gone']}")

    # Throughput: N messages, 3 webhooks each, to the local receiver.
    n = int(os.environ.get("WEBHOOK_ACCEPTANCE_N", "1000"))
    bench = f"/bench-{suffix}"
    subscribe(api, bench)
    for i in range(0, n, 1000):
        items = [dict(body, receiver=f"b{j}") for j in range(i, min(n, i + 1000))]
        api.post(f"{BASE}/messages/batch", json={"messages": items})
    took = wait(lambda: len(rx.got[bench]) >= 3 * n, 600)
    rate = 3 * n / took if took else 0
    # The reference: bare POSTs from one process with two threads (the worker's concurrency).
    session = requests.Session()
    count = 3000

    def bare(_):
        session.post(rx.url + "/bare", data=b"{}", headers={"Content-Type": "application/json"})

    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(bare, range(count)))
    bare_rate = count / (time.monotonic() - t0)
    check(f"{3 * n} webhooks for {n} messages all received and verified", took is not None and not rx.bad,
          f"{rate:.0f} webhooks/s end to end; bare requests {bare_rate:.0f}/s; ratio {rate / bare_rate:.2f}")
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")


if __name__ == "__main__":
    main()
