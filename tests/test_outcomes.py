"""comms.outcomes: what becomes of a message after an attempt, or instead of one.

Each entry point is called the way sending, receipts and scheduling call it, with `now`
given; the `published` fixture records what would be published once the transaction commits.
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from comms import claims, due, outcomes
from comms.accounts import channel_upsert
from comms.models import Message, MessageEvent
from comms.providers import ProviderError
from comms.status import ErrorCode, Status
from comms.submission import message_submit
from tests.timing import seconds

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"
TEMPORARY = ProviderError(ErrorCode.CHANNEL_UNKNOWN_ERROR, "boom", raw_code="e42")
PERMANENT = ProviderError(ErrorCode.INVALID_RECEIVER, permanent=True, raw_code="bad-number")


@pytest.fixture
def t0():
    return timezone.now()



@pytest.fixture
def submit(application, channel, backup_channel, published, run, t0):
    """A message accepted at t0, with a dormant fallback on the backup channel unless
    `fallback=False`; `status` and `attempts` then set as an attempt would have left them."""

    def submit(*, on=None, fallback: bool = True, fallback_send_at=None, status: Status = Status.QUEUED,
               attempts: int = 0, **extra) -> Message:
        data = {"channel": on or channel, "receiver": PHONE, "content": {"text": "Hi"}, **extra}
        if fallback:
            data["fallback"] = {"channel": backup_channel, "receiver": PHONE, "content": {"text": "B"},
                                "send_at": fallback_send_at}
        message, _ = run(message_submit, application=application, data=data, now=t0)
        Message.objects.filter(id=message.id).update(status=status, attempts=attempts)
        published.clear()
        return fresh(message)

    return submit


def fresh(message: Message) -> Message:
    message.refresh_from_db()
    return message


def codes(message_id: str) -> list[str]:
    return list(MessageEvent.objects.filter(message_id=message_id).order_by("sequence")
                .values_list("status_code", flat=True))


def last_event(message: Message) -> MessageEvent:
    return MessageEvent.objects.filter(message=message).order_by("-sequence").first()


def send_countdowns(published, message_id: str) -> list:
    return [options["countdown"] for args, options in published.of("send_messages") if message_id in args[0]]


# refused: the provider refused the attempt outright; it counts


def test_a_refused_attempt_is_counted_and_retried_after_the_channels_delay(submit, channel, published, run, t0):
    message = submit()

    moved = run(outcomes.refused, message, TEMPORARY, attempt=1, now=t0)

    message = fresh(message)
    assert moved is True
    assert (message.status, message.attempts) == (Status.DELIVERY_RETRIED, 1)
    assert message.due_at == t0 + seconds(channel.retry_delay_after(1))
    assert message.leased_until is None
    assert send_countdowns(published, message.id) == [channel.retry_delay_after(1)]
    event = last_event(message)
    assert (event.status_code, event.attempt, event.error_code, event.error_message, event.raw_code) == (
        "DELIVERY_RETRIED", 1, ErrorCode.CHANNEL_UNKNOWN_ERROR, "boom", "e42")


def test_a_refused_retry_waits_twice_as_long_as_the_one_before(submit, channel, published, run, t0):
    message = submit(status=Status.DELIVERY_RETRIED, attempts=1)

    run(outcomes.refused, message, TEMPORARY, attempt=2, now=t0)

    assert fresh(message).due_at == t0 + seconds(2 * channel.retry_delay)
    assert send_countdowns(published, message.id) == [2 * channel.retry_delay]


def test_a_refused_retry_is_claimable_when_due_and_not_before(submit, channel, run, t0):
    message = submit()
    run(outcomes.refused, message, TEMPORARY, attempt=1, now=t0)
    retry_at = t0 + seconds(channel.retry_delay)

    assert claims.claim([message.id], retry_at - seconds(1)) == []
    assert [m.id for m in claims.claim([message.id], retry_at)] == [message.id]


def test_a_refused_last_attempt_fails_the_message_and_wakes_its_fallback(submit, channel, published, run, t0):
    message = submit(status=Status.DELIVERY_RETRIED, attempts=channel.max_attempts - 1)

    moved = run(outcomes.refused, message, TEMPORARY, attempt=channel.max_attempts, now=t0)

    message = fresh(message)
    assert moved is True
    assert (message.status, message.attempts) == (Status.DELIVERY_FAILED, channel.max_attempts)
    assert message.due_at is None
    failed = last_event(message)
    assert (failed.status_code, failed.fallback_to, failed.error_code) == (
        "DELIVERY_FAILED", message.fallback_to_id, ErrorCode.CHANNEL_UNKNOWN_ERROR)
    fallback = fresh(message.fallback_to)
    assert (fallback.status, fallback.due_at) == (Status.QUEUED, t0)
    assert codes(fallback.id) == ["QUEUED"]
    assert published.sent_ids() == [fallback.id]


def test_a_permanent_refusal_fails_the_message_at_the_first_attempt(submit, published, run, t0):
    message = submit()

    run(outcomes.refused, message, PERMANENT, attempt=1, now=t0)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.DELIVERY_FAILED, 1)
    assert last_event(message).fallback_to == message.fallback_to_id
    assert published.sent_ids() == [message.fallback_to_id]


def test_a_failure_without_a_fallback_names_none(submit, published, run, t0):
    message = submit(fallback=False)

    run(outcomes.refused, message, PERMANENT, attempt=1, now=t0)

    assert fresh(message).status == Status.DELIVERY_FAILED
    assert last_event(message).fallback_to == ""
    assert published.calls == {}


def test_a_refusal_repeated_for_the_same_attempt_changes_nothing(submit, published, run, t0):
    message = submit()
    run(outcomes.refused, message, TEMPORARY, attempt=1, now=t0)
    published.clear()

    again = run(outcomes.refused, message, TEMPORARY, attempt=1, now=t0 + seconds(1))

    assert again is False
    assert fresh(message).attempts == 1
    assert codes(message.id) == ["QUEUED", "DELIVERY_RETRIED"]
    assert published.calls == {}


def test_a_refusal_of_a_message_already_sent_changes_nothing(submit, published, run, t0):
    message = submit(status=Status.SENT, attempts=1)

    moved = run(outcomes.refused, message, TEMPORARY, attempt=2, now=t0)

    assert moved is False
    assert fresh(message).status == Status.SENT
    assert published.calls == {}


def test_a_retry_that_would_fall_after_the_expiry_is_due_at_the_expiry(submit, published, run, t0):
    expires_at = t0 + seconds(5)  # sooner than the channel's 10 s
    message = submit(expires_at=expires_at)

    run(outcomes.refused, message, TEMPORARY, attempt=1, now=t0)

    assert fresh(message).due_at == expires_at
    assert send_countdowns(published, message.id) == [5.0]


# reported_failed: a receipt says an attempt already counted by its SENT failed


def test_a_reported_failure_of_the_sent_attempt_retries_without_counting_it_again(
        submit, channel, published, run, t0):
    message = submit(status=Status.SENT, attempts=1)

    moved = run(outcomes.reported_failed, message, TEMPORARY, attempt=1, now=t0)

    message = fresh(message)
    assert moved is True
    assert (message.status, message.attempts) == (Status.DELIVERY_RETRIED, 1)
    assert message.due_at == t0 + seconds(channel.retry_delay)
    assert send_countdowns(published, message.id) == [channel.retry_delay]
    assert last_event(message).attempt == 1


def test_a_reported_failure_of_the_last_attempt_fails_the_message_and_wakes_its_fallback(
        submit, channel, published, run, t0):
    message = submit(status=Status.SENT, attempts=channel.max_attempts)

    run(outcomes.reported_failed, message, TEMPORARY, attempt=channel.max_attempts, now=t0)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.DELIVERY_FAILED, channel.max_attempts)
    assert last_event(message).fallback_to == message.fallback_to_id
    assert fresh(message.fallback_to).status == Status.QUEUED
    assert published.sent_ids() == [message.fallback_to_id]


def test_a_reported_failure_of_an_earlier_attempt_changes_nothing(submit, published, run, t0):
    message = submit(status=Status.SENT, attempts=2)  # attempt 2 is out; attempt 1's receipt comes late

    moved = run(outcomes.reported_failed, message, TEMPORARY, attempt=1, now=t0)

    assert moved is False
    assert (fresh(message).status, fresh(message).attempts) == (Status.SENT, 2)
    assert published.calls == {}


@pytest.mark.parametrize("status", [Status.QUEUED, Status.DELIVERY_RETRIED, Status.DELIVERED])
def test_a_reported_failure_moves_only_a_sent_message(submit, published, run, t0, status):
    message = submit(status=status, attempts=1)

    moved = run(outcomes.reported_failed, message, TEMPORARY, attempt=1, now=t0)

    assert moved is False
    assert fresh(message).status == status
    assert published.calls == {}


# expired: not handed to the provider before expiresAt


@pytest.mark.parametrize("status", [Status.QUEUED, Status.DELIVERY_RETRIED, Status.SCHEDULED])
def test_an_expired_message_names_and_starts_its_fallback(submit, published, run, t0, status):
    message = submit(status=status, attempts=0 if status != Status.DELIVERY_RETRIED else 1)

    moved = run(outcomes.expired, message, now=t0)

    message = fresh(message)
    assert moved is True
    assert (message.status, message.due_at) == (Status.EXPIRED, None)
    event = last_event(message)
    assert (event.status_code, event.error_code, event.error_message, event.fallback_to) == (
        "EXPIRED", ErrorCode.EXPIRED, ErrorCode.EXPIRED.label, message.fallback_to_id)
    assert fresh(message.fallback_to).status == Status.QUEUED
    assert published.sent_ids() == [message.fallback_to_id]


@pytest.mark.parametrize("status", [Status.SENT, Status.DELIVERED, Status.CANCELLED])
def test_a_message_handed_over_or_ended_does_not_expire(submit, published, run, t0, status):
    message = submit(status=status, attempts=1)

    moved = run(outcomes.expired, message, now=t0)

    assert moved is False
    assert fresh(message).status == status
    assert fresh(message.fallback_to).status == Status.PENDING
    assert published.calls == {}


# wake: a dormant message (a fallback) starts


def test_a_woken_message_without_a_send_at_is_queued_and_sent(submit, published, run, t0):
    dormant = submit().fallback_to

    run(outcomes.wake, [dormant.id], now=t0)

    dormant = fresh(dormant)
    assert (dormant.status, dormant.due_at) == (Status.QUEUED, t0)
    assert codes(dormant.id) == ["QUEUED"]
    assert published.sent_ids() == [dormant.id]


def test_a_woken_message_whose_send_at_has_passed_is_queued(submit, published, run, t0):
    dormant = submit(fallback_send_at=t0 + seconds(30)).fallback_to

    run(outcomes.wake, [dormant.id], now=t0 + seconds(30))

    assert fresh(dormant).status == Status.QUEUED
    assert published.sent_ids() == [dormant.id]


def test_a_woken_message_due_within_the_lookahead_is_scheduled_with_a_countdown(submit, published, run, t0):
    send_at = t0 + seconds(60)
    dormant = submit(fallback_send_at=send_at).fallback_to

    run(outcomes.wake, [dormant.id], now=t0)

    dormant = fresh(dormant)
    assert (dormant.status, dormant.due_at) == (Status.SCHEDULED, send_at)
    assert codes(dormant.id) == ["SCHEDULED"]
    assert published.of("start_scheduled") == [(([dormant.id],), {"countdown": 60.0})]
    assert published.sent_ids() == []


def test_a_woken_message_due_beyond_the_lookahead_waits_in_the_database(submit, published, run, t0):
    send_at = t0 + timedelta(days=3)
    dormant = submit(fallback_send_at=send_at).fallback_to

    run(outcomes.wake, [dormant.id], now=t0)

    dormant = fresh(dormant)
    assert (dormant.status, dormant.due_at) == (Status.SCHEDULED, send_at - due.lookahead())
    assert published.calls == {}


def test_waking_a_message_that_is_not_dormant_changes_nothing(submit, published, run, t0):
    message = submit()

    run(outcomes.wake, [message.id], now=t0 + seconds(5))

    assert fresh(message).due_at == t0
    assert codes(message.id) == ["QUEUED"]
    assert published.calls == {}


# A retry due later than RELAY_MAX_COUNTDOWN is the sweeper's


@pytest.fixture
def slow_channel(db):
    return channel_upsert(name="slow", type="simulator", max_attempts=3,
                          retry_delay=settings.RELAY_MAX_COUNTDOWN + 1)[0]


def test_a_retry_due_later_than_the_longest_countdown_publishes_no_countdown(
        submit, slow_channel, published, run, t0):
    message = submit(on=slow_channel)

    run(outcomes.refused, message, TEMPORARY, attempt=1, now=t0)

    message = fresh(message)
    assert message.status == Status.DELIVERY_RETRIED
    assert message.due_at == t0 + seconds(slow_channel.retry_delay)
    assert published.calls == {}


def test_a_retry_due_exactly_at_the_longest_countdown_still_gets_one(submit, published, run, t0):
    channel = channel_upsert(name="edge", type="simulator", max_attempts=3,
                             retry_delay=settings.RELAY_MAX_COUNTDOWN)[0]
    message = submit(on=channel)

    run(outcomes.refused, message, TEMPORARY, attempt=1, now=t0)

    assert send_countdowns(published, message.id) == [settings.RELAY_MAX_COUNTDOWN]
