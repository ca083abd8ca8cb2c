"""Acceptance run for the real channels against a running platform (not a pytest module).

    export DATABASE_URL=... CELERY_BROKER_URL=redis://... RELAY_PUBLIC_URL=http://127.0.0.1:8000
    honcho start web worker-send worker-receipts worker-webhooks worker-sweeps beat   # one shell
    python -m tests.acceptance.channels                                                 # another

It starts its own local doubles on loopback: a real SMTP server (aiosmtpd), a double of
Postmark's API (for an ESP channel with `apiBaseUrl`), whose webhooks this script posts as
Postmark would, and a double of Twilio's API that calls the StatusCallback it was given,
signed as Twilio signs, so RELAY_PUBLIC_URL must be where this platform answers. Channels
are created through the API with an admin key. Prints one line per check.
"""

import base64
import os
import time

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402

from comms.accounts import application_create, channel_upsert  # noqa: E402
from tests.acceptance.webhooks import Receiver  # noqa: E402
from tests.doubles import PostmarkDouble  # noqa: E402
from tests.smtp import SmtpServer  # noqa: E402
from tests.twilio_double import INVALID, UNREACHABLE, TwilioDouble  # noqa: E402

ROOT = os.environ.get("RELAY_URL", "http://127.0.0.1:8000")
BASE = ROOT + "/api/v1"
HOOK_SECRET = "relay:acceptance-hook-password"
TWILIO_TOKEN = "acceptance-twilio-auth-token"
CONTENT = {"subject": "Your code", "text": "Your code is 1234", "html": "<p>Your code is <b>1234</b></p>"}
results: list[bool] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


class Relay:
    def __init__(self, key: str, suffix: str):
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.suffix = suffix

    def channel(self, name: str, type: str, config: dict, **fields) -> str:
        name = f"{name}-{self.suffix}"
        body = {"name": name, "type": type, "config": config, "maxAttempts": 3, "retryDelay": 1, **fields}
        response = self.session.post(f"{BASE}/channels", json=body)
        assert response.status_code == 201, response.text
        return name

    def send(self, channel: str, receiver: str, **extra) -> str:
        body = {"channel": channel, "receiver": receiver, "content": CONTENT, **extra}
        response = self.session.post(f"{BASE}/messages", json=body)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def message(self, message_id: str) -> dict:
        return self.session.get(f"{BASE}/messages/{message_id}").json()

    def wait(self, message_id: str, statuses: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.message(message_id)
            if message["status"] in statuses or time.monotonic() > deadline:
                return message
            time.sleep(0.2)


def codes(message: dict) -> list[str]:
    return [event["statusCode"] for event in message["events"]]


def fallback_delivered(relay: Relay, message: dict) -> bool:
    return bool(message.get("fallbackTo")) and \
        relay.wait(message["fallbackTo"], {"DELIVERED"})["status"] == "DELIVERED"


def smtp_checks(relay: Relay, backup: str, rx: Receiver) -> None:
    with SmtpServer() as smtp:
        mail = relay.channel("acc-mail", "email", {
            "backend": "smtp", "host": "127.0.0.1", "port": smtp.port, "security": "none", "timeout": 5,
            "from": "Relay <noreply@relay.example>", "password": "smtp-password-never-shown"})
        smtp.refuse("refused@example.com", "550 5.1.1 No such user")
        smtp.refuse("later@example.com", "451 4.3.0 Try again later", times=1)
        ok = relay.wait(relay.send(mail, "ann@example.com"), {"DELIVERED"})
        refused = relay.wait(relay.send(mail, "refused@example.com", fallback={
            "channel": backup, "receiver": "+447700900123", "content": {"text": "hi"}}), {"DELIVERY_FAILED"})
        later = relay.wait(relay.send(mail, "later@example.com"), {"DELIVERED"})
        arrived = [got for got in smtp.received if got.rcpt_tos == ["ann@example.com"]]
        parts = sorted(part.get_content_type() for got in arrived for part in got.message.walk()
                       if not part.is_multipart())
        check("SMTP: the message arrives once, both parts, from the channel's from",
              len(arrived) == 1 and parts == ["text/html", "text/plain"]
              and arrived[0].mail_from == "noreply@relay.example", f"{len(arrived)} arrived, parts {parts}")
        heard = wait_for_webhooks(rx, ok["id"], {"QUEUED", "SENT", "DELIVERED"})
        check("SMTP: the subscriber gets QUEUED, SENT, DELIVERED", heard == ["QUEUED", "SENT", "DELIVERED"], f"{heard}")
        check("SMTP: 550 is DELIVERY_FAILED with no retry, and its fallback is DELIVERED",
              codes(refused) == ["QUEUED", "DELIVERY_FAILED"] and fallback_delivered(relay, refused), f"{codes(refused)}")
        check("SMTP: 451 then 250 gives DELIVERY_RETRIED then DELIVERED",
              codes(later) == ["QUEUED", "DELIVERY_RETRIED", "SENT", "DELIVERED"], f"{codes(later)}")
        shown = relay.session.get(f"{BASE}/channels/{mail}").json()["config"]["password"]
        check("SMTP: GET /channels/{name} never shows the password", shown.startswith("••••") and "never" not in shown,
              shown)


def wait_for_webhooks(rx: Receiver, message_id: str, wanted: set[str], timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        with rx.lock:
            heard = [e["payload"]["statusCode"] for entries in rx.got.values() for e in entries
                     if e["payload"]["messageId"] == message_id]
        if wanted <= set(heard) or time.monotonic() > deadline:
            return sorted(heard, key=["QUEUED", "SENT", "DELIVERED"].index)
        time.sleep(0.1)


def esp_webhook(channel: str, record: dict, *, secret: str | None = HOOK_SECRET) -> requests.Response:
    headers = {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()} if secret else {}
    return requests.post(f"{BASE}/receipts/{channel}", json=record, headers=headers)


def postmark_record(kind: str, message_id: str, **fields) -> dict:
    at = {"Delivery": "DeliveredAt", "Bounce": "BouncedAt", "Open": "ReceivedAt", "Click": "ReceivedAt"}[kind]
    return {"RecordType": kind, "MessageID": message_id, "Recipient": "ann@example.com", at: "2026-11-23T10:00:05Z",
            "Tag": "", "Metadata": {}, "MessageStream": "outbound", **fields}


def esp_checks(relay: Relay, backup: str) -> None:
    postmark = PostmarkDouble()
    try:
        esp = relay.channel("acc-esp", "email", {
            "backend": "postmark", "from": "noreply@acme.example", "apiBaseUrl": postmark.url,
            "credentials": {"server_token": "acceptance-server-token"}, "webhookSecret": HOOK_SECRET})
        first = relay.wait(relay.send(esp, "ann@example.com"), {"SENT"})
        reference = _reference(first["id"])
        check("ESP: SENT with the ESP's message id as reference", first["status"] == "SENT" and bool(reference),
              f"reference {reference}")
        unsigned = esp_webhook(esp, postmark_record("Delivery", reference), secret=None)
        check("ESP: an unsigned webhook is 401 and changes nothing",
              unsigned.status_code == 401 and relay.message(first["id"])["status"] == "SENT", f"{unsigned.status_code}")
        for record in (postmark_record("Delivery", reference),
                       postmark_record("Open", reference, UserAgent="Mozilla/5.0 (iPhone)", FirstOpen=True),
                       postmark_record("Click", reference, OriginalLink="https://acme.example/offer")):
            esp_webhook(esp, record)
        after = relay.message(first["id"])
        check("ESP: delivered, opened and clicked webhooks give DELIVERED, READ, INTERACTED",
              codes(after)[-3:] == ["DELIVERED", "READ", "INTERACTED"], f"{codes(after)}")
        second = relay.wait(relay.send(esp, "bounce@example.com", fallback={
            "channel": backup, "receiver": "+447700900123", "content": {"text": "hi"}}), {"SENT"})
        esp_webhook(esp, postmark_record("Bounce", _reference(second["id"]), ID=7, Type="HardBounce", TypeCode=1,
                                         Email="bounce@example.com", Description="Unknown user"))
        bounced = relay.wait(second["id"], {"DELIVERY_FAILED"}, timeout=10)
        check("ESP: a bounce turns another DELIVERY_FAILED and starts its fallback",
              bounced["status"] == "DELIVERY_FAILED" and fallback_delivered(relay, bounced), f"{codes(bounced)}")
    finally:
        postmark.api.stop()


def _reference(message_id: str) -> str:
    from comms.models import Message

    return Message.objects.get(id=message_id).provider_ref


def twilio_checks(relay: Relay, backup: str) -> None:
    if settings.RELAY_PUBLIC_URL.rstrip("/") != ROOT.rstrip("/"):
        print(f"note: RELAY_PUBLIC_URL is {settings.RELAY_PUBLIC_URL}, the platform is at {ROOT}; "
              "Twilio's callbacks are signed over the public URL", flush=True)
    with TwilioDouble(TWILIO_TOKEN) as twilio:
        config = {"accountSid": "AC" + "0" * 32, "authToken": TWILIO_TOKEN, "from": "+15005550006",
                  "apiBaseUrl": twilio.url}
        sms = relay.channel("acc-sms", "twilio", config)
        whatsapp = relay.channel("acc-wa", "twilio", {**config, "whatsapp": True})
        delivered = relay.wait(relay.send(sms, "+447700900123"), {"DELIVERED"})
        read = relay.wait(relay.send(whatsapp, "+447700900124"), {"READ"})
        retried = relay.wait(relay.send(sms, UNREACHABLE), {"DELIVERY_FAILED"})
        refused = relay.wait(relay.send(sms, INVALID, fallback={
            "channel": backup, "receiver": "+447700900125", "content": {"text": "hi"}}), {"DELIVERY_FAILED"})
        check("Twilio: SMS reaches DELIVERED", delivered["status"] == "DELIVERED", f"{codes(delivered)}")
        check("Twilio: WhatsApp reaches READ", read["status"] == "READ", f"{codes(read)}")
        check("Twilio: error 30003 is retried", "DELIVERY_RETRIED" in codes(retried), f"{codes(retried)}")
        check("Twilio: 21211 fails at once into the fallback",
              codes(refused) == ["QUEUED", "DELIVERY_FAILED"] and fallback_delivered(relay, refused), f"{codes(refused)}")
        forged = requests.post(f"{BASE}/receipts/{sms}", data={"MessageSid": "SM1", "MessageStatus": "delivered"},
                               headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})
        check("Twilio: a callback with a bad X-Twilio-Signature is 401", forged.status_code == 401,
              f"{forged.status_code}")


def main() -> None:
    suffix = str(int(time.time()))
    _, key = application_create(name=f"acc-channels-{suffix}", is_admin=True)
    relay = Relay(key, suffix)
    backup, _ = channel_upsert(name=f"acc-backup-{suffix}", type="simulator")
    rx = Receiver()
    hook = relay.session.post(f"{BASE}/subscriptions", json={"url": rx.url + "/hooks"}).json()
    rx.secrets["/hooks"] = hook["secret"]
    smtp_checks(relay, backup.name, rx)
    esp_checks(relay, backup.name)
    twilio_checks(relay, backup.name)
    relay.session.delete(f"{BASE}/subscriptions/{hook['id']}")
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    raise SystemExit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
