"""Acceptance run for scheduling, cancellation and expiry against a running platform (not a
pytest module).

    DATABASE_URL=... CELERY_BROKER_URL=redis://... honcho start web worker beat   # one shell
    DATABASE_URL=... CELERY_BROKER_URL=redis://... python -m tests.acceptance.scheduling

Prints one line per check and a summary; exits non-zero if any check fails.
"""

import os
import sys
import time
from datetime import UTC, datetime, timedelta

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from comms.accounts import application_create, channel_upsert  # noqa: E402

BASE = os.environ.get("RELAY_URL", "http://127.0.0.1:8000") + "/api/v1"
results: list[bool] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


def msg(channel: str, receiver: str, **extra) -> dict:
    return {"channel": channel, "receiver": receiver, "content": {"text": "acceptance"}, **extra}


def parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")


class Api:
    def __init__(self, key: str):
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def post(self, path: str, body: dict | None = None) -> requests.Response:
        return self.session.post(f"{BASE}{path}", json=body)

    def get(self, message_id: str) -> dict:
        return self.session.get(f"{BASE}/messages/{message_id}").json()

    def wait(self, message_id: str, statuses: set[str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(message_id)
            if body["status"] in statuses or time.monotonic() > deadline:
                return body
            time.sleep(0.1)


def codes(body: dict) -> list[str]:
    return [e["statusCode"] for e in body["events"]]


def scheduled(api: Api) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=4)
    r = api.post("/messages", msg("acc4-sim", "+447700900123", sendAt=iso(send_at)))
    check("sendAt 4 s ahead answers 202 SCHEDULED", r.status_code == 202 and r.json()["status"] == "SCHEDULED",
          f"{r.status_code} {r.json().get('status')}")
    message_id = r.json()["id"]
    check("SCHEDULED is emitted", codes(api.get(message_id)) == ["SCHEDULED"])
    body = api.wait(message_id, {"DELIVERED"}, 20)
    events = {e["statusCode"]: e for e in body["events"]}
    # Event stamps have one-second resolution: SENT must not fall in a second before sendAt.
    sent_at = parse(events["SENT"]["timeStamp"]) if "SENT" in events else None
    check("not SENT before sendAt", sent_at is not None and sent_at >= send_at.replace(microsecond=0),
          f"sendAt {iso(send_at)} SENT {sent_at}")
    check("then DELIVERED", codes(body) == ["SCHEDULED", "QUEUED", "SENT", "DELIVERED"], str(codes(body)))


def cancel(api: Api) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    message_id = api.post("/messages", msg("acc4-sim", "+447700900124", sendAt=iso(send_at))).json()["id"]
    r = api.post(f"/messages/{message_id}/cancel")
    check("cancel a scheduled message: 200 CANCELLED", r.status_code == 200 and r.json()["status"] == "CANCELLED",
          f"{r.status_code}")
    time.sleep(5)  # past its sendAt: nothing may send it now
    body = api.get(message_id)
    check("cancelled message emitted CANCELLED and was never SENT",
          codes(body) == ["SCHEDULED", "CANCELLED"] and body["status"] == "CANCELLED", str(codes(body)))

    delivered = api.post("/messages", msg("acc4-sim", "+447700900125")).json()["id"]
    api.wait(delivered, {"DELIVERED"}, 20)
    r = api.post(f"/messages/{delivered}/cancel")
    body = api.get(delivered)
    check("cancel a delivered message: 409, FAILED_CANCELLATION emitted, still DELIVERED",
          r.status_code == 409 and codes(body)[-1] == "FAILED_CANCELLATION" and body["status"] == "DELIVERED",
          f"{r.status_code} {codes(body)} {body['status']}")


def expiry(api: Api) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=5)
    r = api.post("/messages", msg("acc4-slow", "ann#fail", expiresAt=iso(expires_at),
                                  fallback=msg("acc4-sim", "ann@example.com")))
    message_id = r.json()["id"]
    body = api.wait(message_id, {"EXPIRED", "DELIVERY_FAILED"}, 30)
    last = body["events"][-1]
    check("#fail with expiresAt 5 s ahead ends EXPIRED", body["status"] == "EXPIRED", str(codes(body)))
    check("EXPIRED carries errorCode and fallbackTo",
          last.get("errorCode") == "EXPIRED" and last.get("fallbackTo") == body.get("fallbackTo") is not None,
          str(last))
    fallback = api.wait(body["fallbackTo"], {"DELIVERED"}, 20) if body.get("fallbackTo") else {"status": None}
    check("its fallback is DELIVERED", fallback["status"] == "DELIVERED", str(fallback["status"]))

    now = datetime.now(UTC)
    for name, send_at in (("after", now + timedelta(minutes=2)), ("at", now + timedelta(minutes=1))):
        r = api.post("/messages", msg("acc4-sim", "+447700900126", sendAt=iso(send_at),
                                      expiresAt=iso(now + timedelta(minutes=1))))
        check(f"sendAt {name} expiresAt is a 400", r.status_code == 400, f"{r.status_code} {r.text[:120]}")


def main() -> None:
    channel_upsert(name="acc4-sim", type="simulator", max_attempts=3, retry_delay=1)
    channel_upsert(name="acc4-slow", type="simulator", max_attempts=50, retry_delay=1)
    _, key = application_create(name=f"acceptance-4-{int(time.time())}")
    api = Api(key)
    scheduled(api)
    cancel(api)
    expiry(api)
    print(f"\n{sum(results)}/{len(results)} checks passed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
