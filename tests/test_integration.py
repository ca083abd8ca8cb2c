"""A real Celery worker, on the configured broker and database, moves real messages.

Nothing is eager here: tasks travel through the broker, countdowns are real countdowns.
"""

import time

import pytest

from comms.accounts import application_create, channel_upsert
from comms.models import Message
from comms.status import Status
from comms.submission import message_submit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

TIMEOUT = 30.0


def wait_for(message_id: str, statuses: set[str]) -> Message:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        message = Message.objects.get(id=message_id)
        if message.status in statuses:
            return message
        time.sleep(0.1)
    raise AssertionError(f"{message_id} stuck in {message.status}, wanted {statuses}")


def event_codes(message_id: str) -> list[str]:
    return list(
        Message.objects.get(id=message_id).events.order_by("sequence")
        .values_list("status_code", flat=True)
    )


def submit(application, channel, receiver, **extra):
    data = {"channel": channel, "receiver": receiver, "content": {"text": "hi"}, **extra}
    return message_submit(application=application, data=data)[0]


def test_a_message_is_queued_sent_and_delivered_by_a_real_worker():
    application, _ = application_create(name="it")
    channel, _ = channel_upsert(name="it-sim", type="simulator")

    message = submit(application, channel, "+447700900123")

    wait_for(message.id, {Status.DELIVERED})
    assert event_codes(message.id) == ["QUEUED", "SENT", "DELIVERED"]


def test_a_failing_message_retries_then_falls_back_to_a_delivered_one():
    application, _ = application_create(name="it")
    flaky, _ = channel_upsert(name="it-flaky", type="simulator", max_attempts=3, retry_delay=0.2)
    backup, _ = channel_upsert(name="it-backup", type="simulator")

    message = submit(
        application, flaky, "ann#fail",
        fallback={"channel": backup, "receiver": "ann@example.com", "content": {"text": "hi"}},
    )

    failed = wait_for(message.id, {Status.DELIVERY_FAILED})
    delivered = wait_for(failed.fallback_to_id, {Status.DELIVERED})
    assert event_codes(message.id) == [
        "QUEUED", "SENT", "DELIVERY_RETRIED", "SENT", "DELIVERY_RETRIED", "SENT", "DELIVERY_FAILED",
    ]
    assert failed.events.get(status_code="DELIVERY_FAILED").fallback_to == delivered.id
    assert delivered.channel == backup
    assert event_codes(delivered.id) == ["QUEUED", "SENT", "DELIVERED"]
