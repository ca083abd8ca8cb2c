"""A message must fit its channel's type: an E.164 number and a body Twilio takes for SMS and
WhatsApp, an address and a bounded size for email. A misfit is a 400 naming the field, and
nothing is created."""

import pytest

from comms.accounts import channel_upsert
from comms.models import Message

pytestmark = pytest.mark.django_db

SMS = {"accountSid": "AC" + "1" * 32, "authToken": "t" * 32, "from": "+15005550006"}
SMTP = {"backend": "smtp", "host": "127.0.0.1", "port": 2525, "security": "none", "from": "relay@example.com"}


@pytest.fixture
def sms(db):
    return channel_upsert(name="sms", type="twilio", config=SMS)[0]


@pytest.fixture
def whatsapp(db):
    return channel_upsert(name="wa", type="twilio", config={**SMS, "whatsapp": True})[0]


@pytest.fixture
def mail(db):
    return channel_upsert(name="mail", type="email", config=SMTP)[0]


def send(api, channel, receiver, text="hello", **extra):
    return api.post("/api/v1/messages", {"channel": channel, "receiver": receiver,
                                         "content": {"text": text, **extra.pop("content", {})}, **extra},
                    format="json")


def errors(response):
    assert response.status_code == 400, response.content
    return response.json()["errors"]


@pytest.mark.parametrize("receiver", ["07700900123", "+44 7700 900123", "+0447700900123", "+1234567890123456",
                                      "ann@example.com", "+44770090012x"])
def test_an_sms_receiver_must_be_e164(api, sms, receiver):
    assert "E.164" in errors(send(api, "sms", receiver))["receiver"][0]


@pytest.mark.parametrize("receiver", ["+447700900123", "+15005550006"])
def test_an_e164_receiver_is_accepted_for_sms(api, sms, receiver):
    assert send(api, "sms", receiver).status_code == 202


def test_a_whatsapp_receiver_may_carry_its_prefix_and_must_be_e164_behind_it(api, whatsapp):
    assert send(api, "wa", "whatsapp:+447700900123").status_code == 202
    assert send(api, "wa", "+447700900124").status_code == 202
    response = send(api, "wa", "whatsapp:07700900123")
    assert response.status_code == 400
    assert "whatsapp:+447700900123" in response.json()["errors"]["receiver"][0]


def test_an_sms_body_over_1600_characters_is_refused_with_its_length(api, sms):
    message = errors(send(api, "sms", "+447700900123", text="x" * 1601))["content"]["text"][0]

    assert "1600" in message and "1601" in message
    assert Message.objects.count() == 0
    assert send(api, "sms", "+447700900123", text="x" * 1600).status_code == 202


@pytest.mark.parametrize("sender, ok", [("+447700900999", True), ("RELAY", True), ("Relay Shop", True),
                                        ("12345", False), ("TOO LONG NAME", False)])
def test_an_sms_sender_is_a_number_or_an_alphanumeric_id(api, sms, sender, ok):
    response = send(api, "sms", "+447700900123", sender=sender)

    assert response.status_code == (202 if ok else 400), response.content


@pytest.mark.parametrize("receiver", ["ann", "ann@", "+447700900123", "ann@example.com#read", "a b@example.com"])
def test_an_email_receiver_must_be_an_address(api, mail, receiver):
    assert "email address" in errors(send(api, "mail", receiver))["receiver"][0]


@pytest.mark.parametrize("sender, ok", [("news@example.com", True), ("Ann <ann@example.com>", True),
                                        ("ann", False), ("Ann <ann>", False)])
def test_an_email_sender_is_an_address_with_or_without_a_display_name(api, mail, sender, ok):
    response = send(api, "mail", "bob@example.com", sender=sender)

    assert response.status_code == (202 if ok else 400), response.content


def test_an_email_over_the_size_limit_is_refused_with_its_size(api, mail, settings):
    settings.RELAY_MAX_EMAIL_BYTES = 1000

    message = errors(send(api, "mail", "bob@example.com", text="é" * 300,
                          content={"html": "<p>" + "x" * 400 + "</p>", "subject": "hi"}))["content"][0]

    assert "1000" in message and "1009" in message
    assert Message.objects.count() == 0
    assert send(api, "mail", "bob@example.com", text="x" * 990, content={"subject": "hi"}).status_code == 202


def test_a_fallback_is_checked_against_its_own_channel(api, mail, sms):
    response = send(api, "mail", "bob@example.com",
                    fallback={"channel": "sms", "receiver": "bob@example.com", "content": {"text": "hi"}})

    assert "E.164" in errors(response)["fallback"]["receiver"][0]
    assert Message.objects.count() == 0


def test_a_batch_names_the_item_that_does_not_fit_and_creates_nothing(api, mail, sms):
    response = api.post("/api/v1/messages/batch", {"messages": [
        {"channel": "sms", "receiver": "+447700900123", "content": {"text": "ok"}},
        {"channel": "mail", "receiver": "+447700900123", "content": {"text": "not an address"}},
    ]}, format="json")

    assert "email address" in errors(response)["messages"]["1"]["receiver"][0]
    assert Message.objects.count() == 0


def test_the_simulator_takes_any_receiver_with_its_tokens(api, channel):
    assert send(api, "sim", "ann@example.com#read").status_code == 202
    assert send(api, "sim", "+447700900123#fail2").status_code == 202
