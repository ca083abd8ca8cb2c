"""Attempts end to end through the real services: submit, send, and the simulator's receipts.

Tasks are never run eagerly: the `published` fixture records what would be published, and
these tests call the services a worker would, passing `now` to move time forward.
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from comms import claims, receipts, sending, sweeper
from comms.accounts import channel_upsert
from comms.due import grace
from comms.models import Channel, Message, MessageEvent, Receipt
from comms.payloads import event_payload
from comms.providers.simulator import CLICK_LINK, READ_ENV, SimulatorProvider
from comms.status import ErrorCode, Status
from comms.submission import message_submit

pytestmark = pytest.mark.django_db

CONTENT = {"text": "Hello"}
PHONE = "+447700900123"


class Relay:
    """What the workers would do, one call at a time."""

    def __init__(self, application, published, capture, *, content: dict = CONTENT):
        self.application = application
        self.published = published
        self.capture = capture
        self.content = content
        self._receipts_taken = 0

    def submit(self, channel: Channel, receiver: str, *, fallback: dict | None = None) -> Message:
        data = {"channel": channel, "receiver": receiver, "content": self.content}
        if fallback:
            data["fallback"] = fallback
        with self.capture(execute=True):
            message, _ = message_submit(application=self.application, data=data)
        return message

    def send(self, message: Message, *, now=None) -> int:
        with self.capture(execute=True):
            return sending.send_attempts([message.id], now=now)

    def send_when_due(self, message: Message) -> int:
        message.refresh_from_db()
        return self.send(message, now=message.due_at)

    def receipts(self) -> list[Receipt]:
        """Process every receipt the simulator published since the last call."""
        calls = self.published.of("process_receipts")[self._receipts_taken:]
        self._receipts_taken += len(calls)
        done = []
        for (channel_name, payloads, *_), _options in calls:
            channel = Channel.objects.get(name=channel_name)
            for payload in payloads:
                with self.capture(execute=True):
                    done.append(receipts.receipt_process(channel=channel, payload=payload))
        return done

    def attempt(self, message: Message) -> None:
        """One attempt as soon as it is due, and its receipts."""
        self.send_when_due(message)
        self.receipts()


@pytest.fixture
def relay(application, published, django_capture_on_commit_callbacks):
    return Relay(application, published, django_capture_on_commit_callbacks)


def codes(message: Message) -> list[str]:
    return list(message.events.order_by("sequence").values_list("status_code", flat=True))


def fresh(message: Message) -> Message:
    message.refresh_from_db()
    return message


def countdowns(published, message: Message) -> list:
    return [opts.get("countdown") for args, opts in published.of("send_messages") if message.id in args[0]]


# The simulator's paths


def test_plain_message_ends_delivered(relay, channel):
    message = relay.submit(channel, PHONE)

    relay.attempt(message)

    assert fresh(message).status == Status.DELIVERED
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED"]


def test_submission_publishes_a_send_task_after_commit(relay, published, channel):
    message = relay.submit(channel, PHONE)

    assert published.sent_ids() == [message.id]


def test_sent_records_the_attempt_and_the_providers_reference(relay, channel):
    message = relay.submit(channel, PHONE)

    relay.send(message)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.SENT, 1)
    assert message.provider_ref == f"sim-{message.id}-1"
    assert message.events.get(status_code="SENT").attempt == 1


def test_sent_publishes_the_simulators_receipt(relay, published, channel):
    message = relay.submit(channel, PHONE)

    relay.send(message)

    [((channel_name, payloads, tries), _)] = published.of("process_receipts")
    assert (channel_name, tries) == (channel.name, 0)
    assert payloads == [{"messageId": message.id, "attempt": 1, "ref": f"sim-{message.id}-1",
                         "events": [{"event": "delivered"}]}]


def fail_every_attempt(relay, channel, backup_channel) -> Message:
    message = relay.submit(channel, f"{PHONE}#fail",
                           fallback={"channel": backup_channel, "receiver": PHONE, "content": CONTENT})
    for _ in range(channel.max_attempts):
        relay.attempt(message)
    return fresh(message)


def test_failing_message_is_retried_until_max_attempts_then_failed(relay, channel, backup_channel):
    message = fail_every_attempt(relay, channel, backup_channel)

    assert message.status == Status.DELIVERY_FAILED
    assert codes(message) == ["QUEUED", "SENT", "DELIVERY_RETRIED", "SENT", "DELIVERY_RETRIED",
                              "SENT", "DELIVERY_FAILED"]


def test_final_failure_names_the_fallback(relay, channel, backup_channel):
    message = fail_every_attempt(relay, channel, backup_channel)

    failed = message.events.get(status_code="DELIVERY_FAILED")
    assert failed.fallback_to == message.fallback_to_id
    assert (failed.error_code, failed.attempt) == (ErrorCode.CHANNEL_UNKNOWN_ERROR, 3)


def test_retries_carry_the_channels_error(relay, channel, backup_channel):
    message = fail_every_attempt(relay, channel, backup_channel)

    retried = message.events.filter(status_code="DELIVERY_RETRIED").order_by("sequence")
    assert [(e.attempt, e.error_code, e.raw_code) for e in retried] == [
        (1, ErrorCode.CHANNEL_UNKNOWN_ERROR, "undelivered"),
        (2, ErrorCode.CHANNEL_UNKNOWN_ERROR, "undelivered"),
    ]


def test_fallback_is_queued_and_dispatched_when_its_predecessor_fails(relay, published, channel, backup_channel):
    message = fail_every_attempt(relay, channel, backup_channel)

    fallback = message.fallback_to
    assert fallback.status == Status.QUEUED
    assert codes(fallback) == ["QUEUED"]
    assert fallback.id in published.sent_ids()


def test_fallback_is_delivered_on_its_own_channel(relay, channel, backup_channel):
    fallback = fail_every_attempt(relay, channel, backup_channel).fallback_to

    relay.send(fallback)
    (receipt,) = relay.receipts()

    assert fresh(fallback).status == Status.DELIVERED
    assert codes(fallback) == ["QUEUED", "SENT", "DELIVERED"]
    assert receipt.channel == backup_channel


def test_fallback_waits_while_its_predecessor_is_retried(relay, channel, backup_channel):
    message = relay.submit(channel, f"{PHONE}#fail",
                           fallback={"channel": backup_channel, "receiver": PHONE, "content": CONTENT})

    relay.attempt(message)

    assert fresh(message).status == Status.DELIVERY_RETRIED
    assert message.fallback_to.status == Status.PENDING
    assert codes(message.fallback_to) == []


def test_fail_one_recovers_after_one_retry(relay, channel):
    message = relay.submit(channel, f"{PHONE}#fail1")

    relay.attempt(message)
    relay.attempt(message)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.DELIVERED, 2)
    assert codes(message) == ["QUEUED", "SENT", "DELIVERY_RETRIED", "SENT", "DELIVERED"]


def test_rejected_message_fails_at_once_without_sent_or_retry(relay, published, channel):
    message = relay.submit(channel, f"{PHONE}#reject")

    relay.send(message)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.DELIVERY_FAILED, 1)
    assert codes(message) == ["QUEUED", "DELIVERY_FAILED"]
    failed = message.events.get(status_code="DELIVERY_FAILED")
    assert (failed.error_code, failed.raw_code) == (ErrorCode.REJECTED_BY_CHANNEL, "reject")
    assert published.sent_ids() == [message.id]  # the submission's task, and no retry
    assert published.of("process_receipts") == []


def test_rejected_message_starts_its_fallback(relay, channel, backup_channel):
    message = relay.submit(channel, f"{PHONE}#reject",
                           fallback={"channel": backup_channel, "receiver": PHONE, "content": CONTENT})

    relay.send(message)

    assert message.fallback_to.status == Status.QUEUED
    assert fresh(message).events.get(status_code="DELIVERY_FAILED").fallback_to == message.fallback_to_id


def test_read_receiver_ends_read_with_env(relay, channel):
    message = relay.submit(channel, "ann@example.com#read")

    relay.attempt(message)

    assert fresh(message).status == Status.READ
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED", "READ"]
    assert message.events.get(status_code="READ").env == READ_ENV


def test_delete_receiver_ends_deleted(relay, channel):
    message = relay.submit(channel, "ann@example.com#delete")

    relay.attempt(message)

    assert fresh(message).status == Status.DELETED
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED", "READ", "DELETED"]


def test_click_receiver_ends_interacted_with_the_link(relay, channel):
    message = relay.submit(channel, "ann@example.com#click")

    relay.attempt(message)

    assert fresh(message).status == Status.INTERACTED
    assert codes(message) == ["QUEUED", "SENT", "DELIVERED", "READ", "INTERACTED"]
    interacted = event_payload(message.events.get(status_code="INTERACTED"), fresh(message), channel.name)
    assert interacted["link"] == CLICK_LINK


def test_silent_receiver_stays_sent(relay, published, channel):
    message = relay.submit(channel, f"{PHONE}#silent")

    relay.attempt(message)

    message = fresh(message)
    assert message.status == Status.SENT
    assert codes(message) == ["QUEUED", "SENT"]
    assert published.of("process_receipts") == []


def test_silent_message_has_nothing_due(relay, channel):
    message = relay.submit(channel, f"{PHONE}#silent")

    relay.send(message)

    assert fresh(message).due_at is None


def test_sent_message_is_due_for_a_poll_after_the_receipt_timeout(relay, channel):
    message = relay.submit(channel, PHONE)
    before = timezone.now()

    relay.send(message)

    timeout = timedelta(seconds=SimulatorProvider(channel).receipt_timeout(message))
    assert before + timeout <= fresh(message).due_at <= timezone.now() + timeout


# Retry timing


def test_retry_countdown_doubles_with_each_attempt(relay, published, channel):
    message = relay.submit(channel, f"{PHONE}#fail")

    relay.attempt(message)
    relay.attempt(message)

    assert countdowns(published, message) == [None, channel.retry_delay, 2 * channel.retry_delay]


def test_retry_is_due_exactly_after_the_delay(relay, channel):
    message = relay.submit(channel, f"{PHONE}#fail")
    relay.send(message)
    before = timezone.now()

    relay.receipts()

    wait = timedelta(seconds=channel.retry_delay)
    assert before + wait <= fresh(message).due_at <= timezone.now() + wait


def test_retry_is_not_claimed_before_its_delay(relay, channel):
    message = relay.submit(channel, f"{PHONE}#fail")
    relay.attempt(message)

    sent = relay.send(message, now=timezone.now() + timedelta(seconds=channel.retry_delay / 2))

    assert sent == 0
    assert fresh(message).status == Status.DELIVERY_RETRIED


@pytest.fixture
def slow_channel(db):
    return channel_upsert(name="slow", type="simulator", max_attempts=2,
                          retry_delay=settings.RELAY_MAX_COUNTDOWN * 2)[0]


def test_long_retry_is_not_published_as_a_countdown(relay, published, slow_channel):
    message = relay.submit(slow_channel, f"{PHONE}#fail")

    relay.attempt(message)

    assert fresh(message).status == Status.DELIVERY_RETRIED
    assert countdowns(published, message) == [None]  # the submission's, and no retry


def test_long_retry_becomes_claimable_at_its_due_time(relay, slow_channel):
    message = relay.submit(slow_channel, f"{PHONE}#fail")
    relay.send(message)
    before = timezone.now()

    relay.receipts()

    wait = timedelta(seconds=slow_channel.retry_delay)
    assert before + wait <= fresh(message).due_at <= timezone.now() + wait


def test_sweeper_leaves_a_long_retry_alone_until_a_grace_after_it_is_due(
        relay, published, slow_channel, django_capture_on_commit_callbacks):
    message = relay.submit(slow_channel, f"{PHONE}#fail")
    relay.attempt(message)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        counts = sweeper.sweep_due_work(now=fresh(message).due_at + grace() - timedelta(seconds=1))

    assert counts["dispatched"] == 0
    assert published.sent_ids() == []


def test_sweeper_dispatches_a_long_retry_a_grace_after_its_due_time(
        relay, published, slow_channel, django_capture_on_commit_callbacks):
    message = relay.submit(slow_channel, f"{PHONE}#fail")
    relay.attempt(message)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        counts = sweeper.sweep_due_work(now=fresh(message).due_at + grace())

    assert counts["dispatched"] == 1
    assert published.sent_ids() == [message.id]


def test_long_retry_is_sent_once_due(relay, slow_channel):
    message = relay.submit(slow_channel, f"{PHONE}#fail1")
    relay.attempt(message)

    relay.attempt(message)

    assert fresh(message).status == Status.DELIVERED
    assert codes(message) == ["QUEUED", "SENT", "DELIVERY_RETRIED", "SENT", "DELIVERED"]


# Attempts that never reach the provider


def test_disabled_channel_fails_the_attempt_as_unavailable(relay, channel):
    message = relay.submit(channel, PHONE)
    channel_upsert(name=channel.name, enabled=False)

    relay.send(message)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.DELIVERY_RETRIED, 1)
    assert codes(message) == ["QUEUED", "DELIVERY_RETRIED"]
    assert message.events.get(status_code="DELIVERY_RETRIED").error_code == ErrorCode.CHANNEL_UNAVAILABLE


def test_a_channel_no_provider_serves_fails_only_its_own_messages(relay, channel, backup_channel):
    broken = relay.submit(channel, PHONE)
    fine = relay.submit(backup_channel, PHONE)
    Channel.objects.filter(id=channel.id).update(type="carrier-pigeon")  # as an old row might hold

    sending.send_attempts([broken.id, fine.id])

    assert fresh(fine).status == Status.SENT
    broken = fresh(broken)
    assert broken.status == Status.DELIVERY_RETRIED
    assert broken.events.get(status_code="DELIVERY_RETRIED").error_code == ErrorCode.CHANNEL_UNAVAILABLE


def test_disabled_channel_fails_the_message_after_max_attempts(relay, channel):
    message = relay.submit(channel, PHONE)
    channel_upsert(name=channel.name, enabled=False)

    for _ in range(channel.max_attempts):
        relay.send_when_due(message)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.DELIVERY_FAILED, channel.max_attempts)
    assert codes(message) == ["QUEUED", "DELIVERY_RETRIED", "DELIVERY_RETRIED", "DELIVERY_FAILED"]


@pytest.fixture
def crashing_provider(monkeypatch):
    """The simulator's send crashes for receivers containing 'crash'."""
    real_send = SimulatorProvider.send

    def send(self, message, *, attempt):
        if "crash" in message.receiver:
            raise RuntimeError("provider bug")
        return real_send(self, message, attempt=attempt)

    monkeypatch.setattr(SimulatorProvider, "send", send)


@pytest.mark.usefixtures("crashing_provider")
def test_provider_crash_becomes_an_unknown_channel_error(relay, channel):
    message = relay.submit(channel, "crash@example.com")

    relay.send(message)

    message = fresh(message)
    assert message.status == Status.DELIVERY_RETRIED
    retried = message.events.get(status_code="DELIVERY_RETRIED")
    assert (retried.error_code, retried.raw_code) == (ErrorCode.CHANNEL_UNKNOWN_ERROR, "RuntimeError")


@pytest.mark.usefixtures("crashing_provider")
def test_provider_crash_does_not_stop_the_rest_of_the_chunk(relay, channel, django_capture_on_commit_callbacks):
    crashing = relay.submit(channel, "crash@example.com")
    healthy = relay.submit(channel, PHONE)

    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([crashing.id, healthy.id])

    assert fresh(crashing).status == Status.DELIVERY_RETRIED
    assert fresh(healthy).status == Status.SENT


# Claims


def test_sending_the_same_message_twice_sends_it_once(relay, published, channel):
    message = relay.submit(channel, PHONE)
    relay.send(message)

    again = relay.send(message)

    assert again == 0
    assert codes(message) == ["QUEUED", "SENT"]
    assert len(published.of("process_receipts")) == 1


def test_a_claimed_message_cannot_be_claimed_again(relay, channel):
    message = relay.submit(channel, PHONE)
    now = timezone.now()
    claims.claim([message.id], now)

    sent = relay.send(message, now=now)

    assert sent == 0
    assert fresh(message).status == Status.QUEUED


def test_a_claim_lapses_after_its_lease(relay, channel):
    message = relay.submit(channel, PHONE)
    now = timezone.now()
    claims.claim([message.id], now)

    sent = relay.send(message, now=now + timedelta(seconds=settings.RELAY_CLAIM_LEASE + 1))

    assert sent == 1
    assert fresh(message).status == Status.SENT


def test_a_message_named_twice_in_one_task_is_sent_once(relay, published, channel,
                                                         django_capture_on_commit_callbacks):
    message = relay.submit(channel, PHONE)

    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([message.id, message.id])

    payloads = [p for (_, ps, _), _ in published.of("process_receipts") for p in ps]
    assert len(payloads) == 1


# Expiry at send time


def test_message_past_its_expiry_is_expired_instead_of_sent(relay, channel):
    message = relay.submit(channel, PHONE)
    Message.objects.filter(id=message.id).update(expires_at=timezone.now())

    relay.send(message, now=timezone.now() + timedelta(seconds=1))

    message = fresh(message)
    assert message.status == Status.EXPIRED
    assert codes(message) == ["QUEUED", "EXPIRED"]
    assert not MessageEvent.objects.filter(message=message, status_code="SENT").exists()
