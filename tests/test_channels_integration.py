"""Real channels with a real worker: tasks travel through the broker, the email goes to a real
SMTP server on loopback, and its acceptance comes back as DELIVERED."""

import pytest

from comms.accounts import application_create, channel_upsert
from comms.status import Status
from tests.smtp import SmtpServer
from tests.test_integration import event_codes, submit, wait_for

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
