"""expiresAt: a message not handed to the provider by then is EXPIRED (errorCode EXPIRED),
whether it was scheduled, in a backlog or waiting to be retried; EXPIRED starts the fallback.

Time is injected through the `clock` fixture (django.utils.timezone.now), tasks are recorded
by `published` and run by calling what a worker would; nothing sleeps.
"""


import pytest

from comms import outcomes, receipts, sending, sweeper, tasks
from comms.models import Channel, Message, MessageEvent
from comms.status import ErrorCode, Status
from tests.timing import grace, seconds

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"
URL = "/api/v1/messages"


class Worker:
    """Submits through the API and does what workers would, one call at a time, at clock.now."""

    def __init__(self, api, channel, published, capture, clock):
        self.api, self.channel, self.published, self.capture, self.clock = api, channel, published, capture, clock
        self._receipts_taken = 0

    def submit(self, receiver: str = PHONE, **fields) -> str:
        body = {"channel": self.channel.name, "receiver": receiver, "content": {"text": "Hi"}, **fields}
        with self.capture(execute=True):
            response = self.api.post(URL, body, format="json")
        assert response.status_code == 202, response.json()
        return response.json()["id"]

    def send(self, *message_ids: str) -> int:
        with self.capture(execute=True):
            return sending.send_attempts(list(message_ids))

    def sweep(self) -> dict[str, int]:
        with self.capture(execute=True):
            return sweeper.sweep_due_work()

    def receipts(self) -> None:
        """Apply every receipt the simulator published since the last call."""
        calls = self.published.of("process_receipts")[self._receipts_taken:]
        self._receipts_taken += len(calls)
        for (channel_name, payloads, *_), _ in calls:
            channel = Channel.objects.get(name=channel_name)
            with self.capture(execute=True):
                receipts.receipts_process(channel=channel, payloads=payloads)

    def attempt(self, message_id: str) -> None:
        self.send(message_id)
        self.receipts()


@pytest.fixture
def worker(api, channel, published, django_capture_on_commit_callbacks, clock):
    return Worker(api, channel, published, django_capture_on_commit_callbacks, clock)


def row(message_id: str) -> Message:
    return Message.objects.get(id=message_id)


def codes(message_id: str) -> list[str]:
    return list(MessageEvent.objects.filter(message_id=message_id).order_by("sequence")
                .values_list("status_code", flat=True))


def expired_event(api, message_id: str) -> dict:
    events = api.get(f"{URL}/{message_id}").json()["events"]
    return next(e for e in events if e["statusCode"] == "EXPIRED")


def fallback_to(channel) -> dict:
    return {"channel": channel.name, "receiver": PHONE, "content": {"text": "Plan B"}}


# While scheduled


def test_a_scheduled_message_whose_expiry_passed_before_release_is_expired_not_sent(worker, clock):
    message_id = worker.submit(sendAt=(clock.now + seconds(60)).isoformat(),
                               expiresAt=(clock.now + seconds(90)).isoformat())

    clock.now += seconds(3600)  # the platform was down past both times
    worker.sweep()
    worker.send(message_id)

    assert row(message_id).status == Status.EXPIRED
    assert "SENT" not in codes(message_id)


def test_a_scheduled_message_found_past_its_expiry_goes_straight_to_expired(worker, clock):
    message_id = worker.submit(sendAt=(clock.now + seconds(60)).isoformat(),
                               expiresAt=(clock.now + seconds(90)).isoformat())

    clock.now += seconds(3600)
    worker.sweep()

    assert codes(message_id) == ["SCHEDULED", "EXPIRED"]


# In a backlog


def test_a_queued_message_still_in_the_backlog_at_its_expiry_is_expired(worker, api, clock):
    message_id = worker.submit(expiresAt=(clock.now + seconds(60)).isoformat())

    clock.now += seconds(61)  # the send task was lost or the queue was long
    worker.sweep()
    worker.send(message_id)

    assert row(message_id).status == Status.EXPIRED
    assert codes(message_id) == ["QUEUED", "EXPIRED"]
    event = expired_event(api, message_id)
    assert (event["errorCode"], event["errorMessage"]) == ("EXPIRED", ErrorCode.EXPIRED.label)
    assert "fallbackTo" not in event


def test_only_the_expired_messages_of_a_backlog_chunk_are_expired(worker, clock):
    short = worker.submit(expiresAt=(clock.now + seconds(60)).isoformat())
    long = worker.submit(expiresAt=(clock.now + seconds(3600)).isoformat())
    forever = worker.submit()

    clock.now += seconds(61)
    worker.send(short, long, forever)

    assert [row(i).status for i in (short, long, forever)] == [Status.EXPIRED, Status.SENT, Status.SENT]


def test_a_queued_message_before_its_expiry_is_sent(worker, clock):
    message_id = worker.submit(expiresAt=(clock.now + seconds(60)).isoformat())

    clock.now += seconds(59)
    worker.send(message_id)

    assert row(message_id).status == Status.SENT


# Between retries (the channel retries after 10 s, then 20 s)


def test_a_retry_due_before_the_expiry_is_made(worker, channel, clock):
    message_id = worker.submit(f"{PHONE}#fail1", expiresAt=(clock.now + seconds(60)).isoformat())
    worker.attempt(message_id)

    clock.now += seconds(channel.retry_delay)
    worker.attempt(message_id)

    assert row(message_id).status == Status.DELIVERED


def test_a_retry_that_would_fall_after_the_expiry_waits_only_until_the_expiry(worker, published, clock):
    expires_at = clock.now + seconds(5)  # sooner than the channel's 10 s delay
    message_id = worker.submit(f"{PHONE}#fail", expiresAt=expires_at.isoformat())
    published.clear()

    clock.now += seconds(1)
    worker.attempt(message_id)

    message = row(message_id)
    assert message.status == Status.DELIVERY_RETRIED
    [(_, options)] = published.of("send_messages")
    assert options["countdown"] == (expires_at - clock.now).total_seconds()


def test_a_retry_that_would_fall_after_the_expiry_is_not_made_and_the_message_expires(worker, clock):
    message_id = worker.submit(f"{PHONE}#fail", expiresAt=(clock.now + seconds(5)).isoformat())
    worker.attempt(message_id)

    clock.now += seconds(5)  # the woken task, at expiresAt
    worker.send(message_id)

    assert row(message_id).status == Status.EXPIRED
    assert codes(message_id) == ["QUEUED", "SENT", "DELIVERY_RETRIED", "EXPIRED"]


def test_a_retry_woken_by_the_sweeper_after_the_expiry_is_not_made(worker, clock):
    message_id = worker.submit(f"{PHONE}#fail", expiresAt=(clock.now + seconds(15)).isoformat())
    worker.attempt(message_id)  # retried after 10 s: before the expiry
    clock.now += seconds(10)
    worker.attempt(message_id)  # the next would come 20 s later: after it

    # The countdown was lost: the sweeper's turn, a grace after the retry fell due.
    clock.now = row(message_id).due_at + grace()
    worker.sweep()
    worker.send(message_id)

    assert row(message_id).status == Status.EXPIRED
    assert codes(message_id).count("SENT") == 2
    assert row(message_id).attempts == 2


def test_a_failure_reported_after_the_expiry_ends_expired_without_another_attempt(worker, clock):
    message_id = worker.submit(f"{PHONE}#fail", expiresAt=(clock.now + seconds(30)).isoformat())
    worker.send(message_id)

    clock.now += seconds(60)  # the failure receipt arrives late
    worker.receipts()
    worker.send(message_id)

    assert row(message_id).status == Status.EXPIRED
    assert codes(message_id).count("SENT") == 1


# The fallback


def test_expired_names_the_fallback_and_queues_it(worker, api, published, backup_channel, clock):
    message_id = worker.submit(expiresAt=(clock.now + seconds(60)).isoformat(),
                               fallback=fallback_to(backup_channel))
    fallback_id = row(message_id).fallback_to_id
    published.clear()

    clock.now += seconds(61)
    worker.send(message_id)

    event = expired_event(api, message_id)
    assert (event["errorCode"], event["fallbackTo"]) == ("EXPIRED", fallback_id)
    assert row(fallback_id).status == Status.QUEUED
    assert codes(fallback_id) == ["QUEUED"]
    assert fallback_id in published.sent_ids()


def test_the_fallback_of_an_expired_message_is_sent_on_its_own_channel(worker, backup_channel, clock):
    message_id = worker.submit(expiresAt=(clock.now + seconds(60)).isoformat(),
                               fallback=fallback_to(backup_channel))
    fallback_id = row(message_id).fallback_to_id
    clock.now += seconds(61)
    worker.send(message_id)

    worker.attempt(fallback_id)

    assert row(fallback_id).status == Status.DELIVERED
    assert row(fallback_id).channel == backup_channel


def test_an_expired_retry_starts_the_fallback(worker, backup_channel, clock):
    message_id = worker.submit(f"{PHONE}#fail", expiresAt=(clock.now + seconds(5)).isoformat(),
                               fallback=fallback_to(backup_channel))
    fallback_id = row(message_id).fallback_to_id
    worker.attempt(message_id)

    clock.now += seconds(5)
    worker.send(message_id)

    assert row(message_id).events.get(status_code="EXPIRED").fallback_to == fallback_id
    assert row(fallback_id).status == Status.QUEUED


# Handed to the provider in time


def test_a_sent_message_is_not_expired_by_passing_its_expiry(worker, clock):
    message_id = worker.submit(f"{PHONE}#silent", expiresAt=(clock.now + seconds(60)).isoformat())
    worker.send(message_id)

    clock.now += seconds(3600)
    worker.sweep()
    worker.send(message_id)
    expired = outcomes.expired(row(message_id), now=clock.now)

    assert expired is False
    assert row(message_id).status == Status.SENT
    assert "EXPIRED" not in codes(message_id)


def test_a_delivery_receipt_after_the_expiry_still_delivers_a_sent_message(worker, clock):
    message_id = worker.submit(expiresAt=(clock.now + seconds(60)).isoformat())
    worker.send(message_id)

    clock.now += seconds(120)
    worker.receipts()

    assert row(message_id).status == Status.DELIVERED


def test_a_message_released_from_its_schedule_in_time_is_sent(worker, clock):
    send_at = clock.now + seconds(60)
    message_id = worker.submit(sendAt=send_at.isoformat(), expiresAt=(send_at + seconds(60)).isoformat())

    clock.now = send_at
    with worker.capture(execute=True):
        tasks.start_scheduled([message_id])
    worker.send(message_id)

    assert row(message_id).status == Status.SENT


def test_an_expiry_in_the_past_is_refused(worker, api, channel, clock):
    body = {"channel": channel.name, "receiver": PHONE, "content": {"text": "Hi"},
            "expiresAt": (clock.now - seconds(1)).isoformat()}

    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert "expiresAt" in response.json()["errors"]
    assert not Message.objects.exists()

