"""Real channels with a real worker: tasks travel through the broker; email goes to a real SMTP
server on loopback, and Twilio messages to a local double of its API that calls back, signed,
into a live Relay server."""

import base64

import pytest
from rest_framework.test import APIClient

from comms.accounts import application_create, channel_upsert
from comms.status import Status
from tests.doubles import PostmarkDouble
from tests.smtp import SmtpServer
from tests.test_integration import event_codes, submit, wait_for
from tests.twilio_double import INVALID, UNREACHABLE, TwilioDouble

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def email_channel(port: int):
    config = {"backend": "smtp", "host": "127.0.0.1", "port": port, "security": "none", "timeout": 5,
              "from": "noreply@relay.example"}
    return channel_upsert(name="it-mail", type="email", config=config, max_attempts=2, retry_delay=0.2)[0]


def test_an_email_is_sent_over_smtp_and_delivered_by_a_real_worker(smtp):
    application, _ = application_create(name="it")

    message = submit(application, email_channel(smtp.port), "ann@example.com")

    wait_for(message.id, {Status.DELIVERED})
    assert event_codes(message.id) == ["QUEUED", "SENT", "DELIVERED"]
    assert [got.rcpt_tos for got in smtp.received] == [["ann@example.com"]]


def test_an_email_the_server_refuses_falls_back_with_a_real_worker(smtp):
    application, _ = application_create(name="it")
    backup, _ = channel_upsert(name="it-backup", type="simulator")
    smtp.refuse("ann@example.com", "550 5.1.1 No such user")

    message = submit(application, email_channel(smtp.port), "ann@example.com",
                     fallback={"channel": backup, "receiver": "+447700900123", "content": {"text": "hi"}})

    failed = wait_for(message.id, {Status.DELIVERY_FAILED})
    wait_for(failed.fallback_to_id, {Status.DELIVERED})
    assert event_codes(message.id) == ["QUEUED", "DELIVERY_FAILED"]


TOKEN = "twilio-auth-token-0123456789"


def twilio_channel(name: str, api_base_url: str, **extra):
    config = {"accountSid": "AC" + "0" * 32, "authToken": TOKEN, "from": "+15005550006",
              "apiBaseUrl": api_base_url, **extra}
    return channel_upsert(name=name, type="twilio", config=config, max_attempts=2, retry_delay=0.2)[0]


def test_twilio_sms_and_whatsapp_through_a_double_that_calls_back_signed(live_server, settings):
    settings.RELAY_PUBLIC_URL = live_server.url  # where the double calls back, and what it signs
    application, _ = application_create(name="it")
    backup, _ = channel_upsert(name="it-backup", type="simulator")
    with TwilioDouble(TOKEN) as twilio:
        sms = twilio_channel("it-sms", twilio.url)
        whatsapp = twilio_channel("it-wa", twilio.url, whatsapp=True)

        delivered = submit(application, sms, "+447700900123")
        read = submit(application, whatsapp, "+447700900124")
        retried = submit(application, sms, UNREACHABLE)
        refused = submit(application, sms, INVALID,
                         fallback={"channel": backup, "receiver": "+447700900125", "content": {"text": "hi"}})

        wait_for(delivered.id, {Status.DELIVERED})
        wait_for(read.id, {Status.READ})
        wait_for(retried.id, {Status.DELIVERY_FAILED})
        failed = wait_for(refused.id, {Status.DELIVERY_FAILED})
        wait_for(failed.fallback_to_id, {Status.DELIVERED})

    assert event_codes(delivered.id) == ["QUEUED", "SENT", "DELIVERED"]
    assert event_codes(read.id) == ["QUEUED", "SENT", "DELIVERED", "READ"]
    assert event_codes(retried.id) == ["QUEUED", "SENT", "DELIVERY_RETRIED", "SENT", "DELIVERY_FAILED"]
    assert event_codes(refused.id) == ["QUEUED", "DELIVERY_FAILED"]
    assert {status for _, status in twilio.callbacks} <= {200, 202}


def test_an_esp_email_is_sent_then_moved_by_its_webhooks_with_a_real_worker():
    application, _ = application_create(name="it")
    postmark = PostmarkDouble()
    try:
        config = {"backend": "postmark", "from": "noreply@acme.example", "apiBaseUrl": postmark.url,
                  "credentials": {"server_token": "t"}, "webhookSecret": "relay:hook-password"}
        channel, _ = channel_upsert(name="it-esp", type="email", config=config)
        message = wait_for(submit(application, channel, "ann@example.com").id, {Status.SENT})
        auth = "Basic " + base64.b64encode(b"relay:hook-password").decode()
        record = {"RecordType": "Delivery", "MessageID": message.provider_ref, "Recipient": "ann@example.com",
                  "DeliveredAt": "2026-11-23T10:00:05Z"}

        answer = APIClient().post("/api/v1/receipts/it-esp", record, format="json", HTTP_AUTHORIZATION=auth)

        assert answer.status_code == 200
        assert event_codes(wait_for(message.id, {Status.DELIVERED}).id) == ["QUEUED", "SENT", "DELIVERED"]
    finally:
        postmark.api.stop()
