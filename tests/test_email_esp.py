"""The `email` channel through ESPs with django-anymail: sending through Anymail's Postmark
backend to a local double of Postmark's API (`apiBaseUrl`), and tracking webhooks in the
ESPs' documented shapes (Postmark, SendGrid, Mailgun) verified and parsed by Anymail's own
views, posted to the channel's receipts URL."""

import base64
import hashlib
import hmac
import json

import pytest
from rest_framework.test import APIClient

from comms.accounts import channel_upsert
from comms.models import Message
from comms.providers import ConfigError, ProviderError
from comms.providers.email import EmailProvider
from comms.status import ErrorCode, Status
from tests.doubles import POSTMARK_ID, PostmarkDouble
from tests.test_sending import Relay, codes, fresh

pytestmark = pytest.mark.django_db

SECRET = "relay:hook-password-1234"
SIGNING_KEY = "mailgun-webhook-signing-key"


@pytest.fixture
def postmark():
    double = PostmarkDouble()
    yield double
    double.api.stop()


def esp_channel(backend="postmark", name="esp", **extra):
    config = {"backend": backend, "from": "noreply@acme.example", "webhookSecret": SECRET, **extra}
    return channel_upsert(name=name, type="email", config=config, max_attempts=3, retry_delay=1)[0]


def postmark_channel(double: PostmarkDouble):
    return esp_channel(credentials={"server_token": "postmark-server-token"}, apiBaseUrl=double.url)


@pytest.fixture
def relay(application, published, django_capture_on_commit_callbacks):
    return Relay(application, published, django_capture_on_commit_callbacks,
                 content={"subject": "Hi", "text": "Hello", "html": "<p>Hello</p>"})


def webhook(channel, body, *, auth: str | None = SECRET):
    client = APIClient()
    if auth:
        client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(auth.encode()).decode())
    return client.post(f"/api/v1/receipts/{channel.name}", data=json.dumps(body), content_type="application/json")


def postmark_event(record_type: str, **fields) -> dict:
    times = {"Delivery": "DeliveredAt", "Bounce": "BouncedAt", "Open": "ReceivedAt", "Click": "ReceivedAt"}
    return {"RecordType": record_type, "MessageID": POSTMARK_ID, "Recipient": "ann@example.com",
            times[record_type]: "2026-11-23T10:00:05Z", "Tag": "", "Metadata": {}, "MessageStream": "outbound",
            **fields}


# --- sending -------------------------------------------------------------------------------


def test_an_esp_message_is_sent_with_the_channels_own_credentials_and_the_esps_id_kept(relay, postmark):
    message = relay.submit(postmark_channel(postmark), "ann@example.com")

    relay.attempt(message)

    ((headers, body),) = postmark.requests
    assert headers["X-Postmark-Server-Token"] == "postmark-server-token"
    assert (body["From"], body["To"], body["Subject"], body["TextBody"], body["HtmlBody"]) == \
        ("noreply@acme.example", "ann@example.com", "Hi", "Hello", "<p>Hello</p>")
    assert {"Name": "X-Relay-Message-Id", "Value": message.id} in body["Headers"]
    assert (fresh(message).status, fresh(message).provider_ref) == (Status.SENT, POSTMARK_ID)
    assert codes(message) == ["QUEUED", "SENT"]  # delivery comes by webhook


@pytest.mark.parametrize(("status", "answer", "code", "permanent"), [
    (422, {"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive.\n"
           "Found inactive addresses: ann@example.com.\nInactive recipients are ones that have generated a hard "
           "bounce or a spam complaint."}, ErrorCode.REJECTED_BY_CHANNEL, True),
    (422, {"ErrorCode": 406, "Message": "Unparseable"}, ErrorCode.CHANNEL_UNKNOWN_ERROR, False),
    (422, {"ErrorCode": 300, "Message": "Invalid email request"}, ErrorCode.REJECTED_BY_CHANNEL, True),
    (429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, ErrorCode.RATE_LIMITED, False),
    (500, {"ErrorCode": 500, "Message": "Internal server error"}, ErrorCode.CHANNEL_UNAVAILABLE, False),
])
def test_esp_send_errors_map_by_table(relay, postmark, status, answer, code, permanent):
    postmark.answers.append((status, answer))
    message = relay.submit(postmark_channel(postmark), "ann@example.com")

    relay.attempt(message)

    final = "DELIVERY_FAILED" if permanent else "DELIVERY_RETRIED"
    event = fresh(message).events.get(status_code=final)
    assert event.error_code == code


# --- tracking webhooks -----------------------------------------------------------------------


def sent(relay, channel, receiver="ann@example.com", **submit):
    message = relay.submit(channel, receiver, **submit)
    relay.attempt(message)
    return fresh(message)


def test_postmark_delivered_opened_and_clicked_webhooks_move_the_message(relay, postmark):
    channel = postmark_channel(postmark)
    message = sent(relay, channel)

    answers = [webhook(channel, postmark_event("Delivery")),
               webhook(channel, postmark_event("Open", UserAgent="Mozilla/5.0 (iPhone)", FirstOpen=True)),
               webhook(channel, postmark_event("Click", OriginalLink="https://acme.example/offer",
                                               UserAgent="Mozilla/5.0 (iPhone)"))]

    assert [a.json()["outcome"] for a in answers] == ["applied", "applied", "applied"]
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED", "READ", "INTERACTED"]
    assert message.events.get(status_code="READ").env == {"userAgent": "Mozilla/5.0 (iPhone)"}
    assert message.events.get(status_code="INTERACTED").link == "https://acme.example/offer"


def test_a_duplicate_webhook_is_ignored(relay, postmark):
    channel = postmark_channel(postmark)
    message = sent(relay, channel)

    first, again = webhook(channel, postmark_event("Delivery")), webhook(channel, postmark_event("Delivery"))

    assert (first.json()["outcome"], again.json()["outcome"]) == ("applied", "ignored")
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED"]


def test_a_bounce_fails_the_message_and_starts_its_fallback(relay, postmark, backup_channel):
    channel = postmark_channel(postmark)
    message = sent(relay, channel, fallback={"channel": backup_channel, "receiver": "+447700900123",
                                             "content": {"text": "x"}})

    webhook(channel, postmark_event("Bounce", ID=42, Type="HardBounce", TypeCode=1, Email="ann@example.com",
                                    Description="The server was unable to deliver your message"))

    failed = message.events.get(status_code="DELIVERY_FAILED")
    assert (failed.error_code, failed.raw_code) == (ErrorCode.RECEIVER_UNREACHABLE, "bounced:bounced")
    assert fresh(message).fallback_to.status == Status.QUEUED


@pytest.mark.parametrize("auth", [None, "relay:wrong-password"])
def test_an_unauthenticated_webhook_is_401_and_changes_nothing(relay, postmark, auth):
    channel = postmark_channel(postmark)
    message = sent(relay, channel)

    response = webhook(channel, postmark_event("Delivery"), auth=auth)

    assert response.status_code == 401
    assert fresh(message).status == Status.SENT


def test_a_channel_without_a_webhook_secret_takes_no_basic_auth_webhook(relay, postmark):
    channel = esp_channel(credentials={"server_token": "t"}, apiBaseUrl=postmark.url, webhookSecret="")

    assert webhook(channel, postmark_event("Delivery"), auth=None).status_code == 401


def sent_as(relay, postmark, channel, reference: str):
    """A message SENT on `channel` under the ESP's `reference` (sent through the Postmark
    double, since this test has no double of that ESP's API)."""
    via = esp_channel("postmark", name=f"via-{channel.name}", credentials={"server_token": "t"},
                      apiBaseUrl=postmark.url)
    message = sent(relay, via)
    Message.objects.filter(id=message.id).update(channel=channel, provider_ref=reference)
    return message


def test_sendgrid_events_arrive_as_a_batch_and_each_is_applied(relay, postmark):
    channel = esp_channel("sendgrid", name="sg", credentials={"api_key": "SG.key"})
    # SendGrid's events carry Anymail's own message id (anymail_id), which its backend returns.
    message = sent_as(relay, postmark, channel, "anymail-id-1")

    response = webhook(channel, [
        {"email": "ann@example.com", "timestamp": 1795000000, "event": "delivered", "anymail_id": "anymail-id-1",
         "sg_event_id": "ev-1", "sg_message_id": "sg-1.filter", "response": "250 OK"},
        {"email": "ann@example.com", "timestamp": 1795000010, "event": "open", "anymail_id": "anymail-id-1",
         "sg_event_id": "ev-2", "useragent": "Mozilla/5.0"},
    ])

    assert response.status_code == 200
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED", "READ"]


def mailgun_event(event: str, message_id: str, *, key: str = SIGNING_KEY, **data) -> dict:
    timestamp, token = "1795000000", "a" * 50
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {"event": event, "timestamp": 1795000000.5, "id": "ev-1", "recipient": "ann@example.com",
                           "message": {"headers": {"message-id": message_id}}, **data}}


def test_mailgun_webhooks_are_verified_by_their_signature(relay, postmark):
    channel = esp_channel("mailgun", name="mg", credentials={"api_key": "key", "webhook_signing_key": SIGNING_KEY},
                          webhookSecret="")
    # Anymail gives Mailgun's ids in angle brackets, from the send API and the webhooks alike.
    message = sent_as(relay, postmark, channel, "<20261123.1@mg.acme.example>")

    forged = webhook(channel, mailgun_event("delivered", "20261123.1@mg.acme.example", key="not-the-key"), auth=None)
    genuine = webhook(channel, mailgun_event("delivered", "20261123.1@mg.acme.example"), auth=None)

    assert (forged.status_code, genuine.status_code) == (401, 200)
    assert fresh(message).status == Status.DELIVERED


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "complaint"), [
    ({"backend": "no-such-esp"}, "neither smtp nor an ESP"),
    ({"credentials": "token"}, "credentials"),
    ({"webhookSecret": 5}, "webhookSecret"),
    ({"colour": "blue"}, "unknown"),
])
def test_a_bad_esp_config_is_refused_naming_the_key(change, complaint):
    with pytest.raises(ConfigError, match=complaint):
        EmailProvider.clean_config({"backend": "postmark", "from": "a@example.com", **change})


def test_the_api_never_shows_esp_credentials_or_the_webhook_secret(admin_api):
    config = {"backend": "postmark", "from": "a@example.com", "credentials": {"server_token": "pm-server-token-9876"},
              "webhookSecret": SECRET}
    admin_api.post("/api/v1/channels", {"name": "esp", "type": "email", "config": config}, format="json")

    shown = admin_api.get("/api/v1/channels/esp").json()["config"]

    assert (shown["credentials"]["server_token"], shown["webhookSecret"]) == ("••••9876", "••••1234")


def test_an_esp_failure_raises_a_provider_error_not_a_crash(postmark, application):
    postmark.answers.append((500, {"ErrorCode": 500, "Message": "down"}))
    channel = postmark_channel(postmark)
    message = Message.objects.create(application=application, channel=channel, receiver="ann@example.com",
                                     content={"text": "x"}, status=Status.QUEUED)

    with pytest.raises(ProviderError):
        EmailProvider(channel).send(message, attempt=1)
