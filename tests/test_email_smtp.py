"""The `email` channel over SMTP, against a real local SMTP server (aiosmtpd)."""

import pytest

from comms.accounts import channel_upsert
from comms.models import Channel
from comms.providers import ConfigError, ProviderError, provider_for
from comms.providers.email import EmailProvider
from comms.status import ErrorCode, Status
from tests.smtp import SmtpServer
from tests.test_sending import Relay, codes, fresh

pytestmark = pytest.mark.django_db

CONTENT = {"subject": "Your code", "text": "Your code is 1234", "html": "<p>Your code is <b>1234</b></p>"}


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def email_channel(port: int, name: str = "mail", **extra) -> Channel:
    config = {"backend": "smtp", "host": "127.0.0.1", "port": port, "security": "none", "timeout": 5,
              "from": "Relay <noreply@relay.example>", **extra}
    return channel_upsert(name=name, type="email", config=config, max_attempts=3, retry_delay=1)[0]


@pytest.fixture
def relay(application, published, django_capture_on_commit_callbacks):
    return Relay(application, published, django_capture_on_commit_callbacks, content=CONTENT)


def send_one(channel: Channel, receiver: str, make_message) -> str:
    provider = provider_for(channel)
    try:
        return provider.send(make_message(channel, receiver), attempt=1)
    finally:
        provider.close()


@pytest.fixture
def make_message(application):
    from comms.models import Message

    def make(channel, receiver, sender=""):
        return Message.objects.create(application=application, channel=channel, receiver=receiver,
                                      sender=sender, content=CONTENT, status=Status.QUEUED)

    return make


# --- sending --------------------------------------------------------------------------------


def test_an_accepted_message_arrives_once_with_both_parts_from_the_channels_address(smtp, make_message):
    channel = email_channel(smtp.port)

    reference = send_one(channel, "ann@example.com", make_message)

    (got,) = smtp.received
    assert (got.mail_from, got.rcpt_tos) == ("noreply@relay.example", ["ann@example.com"])
    assert got.message["Subject"] == "Your code"
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in got.message.walk()
             if not part.is_multipart()}
    assert parts == {"text/plain": CONTENT["text"], "text/html": CONTENT["html"]}
    assert got.message["Message-ID"] == reference
    assert got.message["X-Relay-Message-Id"] in reference


def test_the_messages_sender_overrides_the_channels_from(smtp, make_message):
    channel = email_channel(smtp.port)
    provider = provider_for(channel)

    provider.send(make_message(channel, "ann@example.com", sender="alerts@acme.example"), attempt=1)
    provider.close()

    assert smtp.received[0].mail_from == "alerts@acme.example"


def test_one_connection_serves_every_message_of_a_task(smtp, make_message):
    channel = email_channel(smtp.port)
    provider = provider_for(channel)

    for receiver in ("ann@example.com", "bob@example.com", "cid@example.com"):
        provider.send(make_message(channel, receiver), attempt=1)
    provider.close()

    assert len({got.peer for got in smtp.received}) == 1


@pytest.mark.parametrize(("reply", "code", "permanent"), [
    ("550 5.1.1 No such user", ErrorCode.INVALID_RECEIVER, True),
    ("553 5.1.3 Bad address", ErrorCode.INVALID_RECEIVER, True),
    ("451 4.3.0 Try again later", ErrorCode.RECEIVER_UNREACHABLE, False),
    ("452 4.2.2 Mailbox full", ErrorCode.RECEIVER_UNREACHABLE, False),
])
def test_a_refused_recipient_maps_by_its_reply_class(smtp, make_message, reply, code, permanent):
    smtp.refuse("ann@example.com", reply)

    with pytest.raises(ProviderError) as failure:
        send_one(email_channel(smtp.port), "ann@example.com", make_message)

    assert (failure.value.code, failure.value.permanent, failure.value.raw_code) == \
        (code, permanent, f"smtp {reply[:3]}")


def test_a_server_that_cannot_be_reached_is_a_temporary_failure(make_message):
    with SmtpServer() as closed:
        port = closed.port  # free again once stopped: nothing listens there

    with pytest.raises(ProviderError) as failure:
        send_one(email_channel(port), "ann@example.com", make_message)

    assert (failure.value.code, failure.value.permanent) == (ErrorCode.CHANNEL_UNAVAILABLE, False)


def test_a_server_that_refuses_tls_is_a_temporary_failure(smtp, make_message):
    with pytest.raises(ProviderError) as failure:
        send_one(email_channel(smtp.port, security="starttls"), "ann@example.com", make_message)

    assert (failure.value.code, failure.value.permanent) == (ErrorCode.CHANNEL_UNAVAILABLE, False)
    assert smtp.received == []


def test_after_a_failure_the_next_message_gets_a_fresh_connection(smtp, make_message):
    channel = email_channel(smtp.port)
    provider = provider_for(channel)
    smtp.refuse("bob@example.com", "451 4.3.0 Try again later")

    with pytest.raises(ProviderError):
        provider.send(make_message(channel, "bob@example.com"), attempt=1)
    provider.send(make_message(channel, "ann@example.com"), attempt=1)
    provider.close()

    assert [got.rcpt_tos for got in smtp.received] == [["ann@example.com"]]


# --- the lifecycle ---------------------------------------------------------------------------


def test_an_accepted_email_is_sent_then_delivered(relay, smtp):
    message = relay.submit(email_channel(smtp.port), "ann@example.com")

    relay.attempt(message)

    assert codes(message) == ["QUEUED", "SENT", "DELIVERED"]


def test_an_accepted_email_stays_sent_when_acceptance_is_not_delivery(relay, smtp):
    message = relay.submit(email_channel(smtp.port, acceptedIsDelivered=False), "ann@example.com")

    relay.attempt(message)

    assert codes(message) == ["QUEUED", "SENT"]


def test_a_550_fails_at_once_and_starts_the_fallback(relay, smtp, backup_channel):
    smtp.refuse("ann@example.com", "550 5.1.1 No such user")
    message = relay.submit(email_channel(smtp.port), "ann@example.com",
                           fallback={"channel": backup_channel, "receiver": "+447700900123", "content": {"text": "x"}})

    relay.attempt(message)

    assert codes(message) == ["QUEUED", "DELIVERY_FAILED"]
    failed = message.events.get(status_code="DELIVERY_FAILED")
    assert (failed.error_code, failed.raw_code) == (ErrorCode.INVALID_RECEIVER, "smtp 550")
    assert fresh(message).fallback_to.status == Status.QUEUED


def test_a_451_then_250_is_retried_then_delivered(relay, smtp):
    smtp.refuse("ann@example.com", "451 4.3.0 Try again later", times=1)
    message = relay.submit(email_channel(smtp.port), "ann@example.com")

    relay.attempt(message)
    relay.attempt(message)

    assert codes(message) == ["QUEUED", "DELIVERY_RETRIED", "SENT", "DELIVERED"]
    assert len(smtp.received) == 1


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "complaint"), [
    ({"backend": "carrier-pigeon"}, "backend"),
    ({"host": ""}, "host"),
    ({"from": "nobody"}, "from"),
    ({"security": "tls"}, "security"),
    ({"port": 70000}, "port"),
    ({"timeout": 0}, "timeout"),
    ({"password": 1234}, "password"),
    ({"acceptedIsDelivered": "yes"}, "acceptedIsDelivered"),
    ({"colour": "blue"}, "unknown"),
])
def test_a_bad_smtp_config_is_refused_naming_the_key(change, complaint):
    config = {"backend": "smtp", "host": "smtp.example.com", "from": "a@example.com", **change}

    with pytest.raises(ConfigError, match=complaint):
        EmailProvider.clean_config(config)


def test_the_port_follows_the_security_when_not_given():
    ports = [EmailProvider.clean_config({"backend": "smtp", "host": "h", "from": "a@b.c", "security": s})["port"]
             for s in ("starttls", "ssl", "none")]

    assert ports == [587, 465, 25]


def test_the_api_never_shows_the_smtp_password(admin_api):
    config = {"backend": "smtp", "host": "smtp.example.com", "from": "a@example.com",
              "username": "relay", "password": "correct-horse-battery"}
    admin_api.post("/api/v1/channels", {"name": "mail", "type": "email", "config": config}, format="json")

    shown = admin_api.get("/api/v1/channels/mail").json()["config"]

    assert (shown["username"], shown["password"]) == ("relay", "••••tery")
