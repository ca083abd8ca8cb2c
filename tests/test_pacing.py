"""A channel's rateLimit in sending (comms.pacing): messages over the rate wait for their
turn and are never failed for it; a turn given up is released; a provider's RATE_LIMITED
pauses the whole channel for what it asked. The schedule itself: test_pacing_schedule.py.
These run on whichever schedule the suite runs on (Redis, or the embedded default's files).
"""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from comms import pacing, sending
from comms.accounts import channel_upsert
from comms.cancellation import message_cancel
from comms.models import Message
from comms.status import ErrorCode, Status
from tests.receiver import Answer

PHONE = "+447700900123"
RATE = 5  # per second: a turn every 0.2 s


@pytest.fixture
def paced_channel(db):
    return channel_upsert(name="paced", type="simulator", max_attempts=3, retry_delay=10)[0]


def _queued(application, channel, count: int) -> list[Message]:
    messages = []
    for n in range(count):
        message = Message.objects.create(application=application, channel=channel, receiver=PHONE,
                                         content={"text": f"m{n}"}, status=Status.QUEUED, event_seq=1)
        Message.objects.filter(id=message.id).update(due_at=message.created_at)
        messages.append(message)
    return messages


def _paced(channel, rate: float):
    channel.rate_limit = rate
    channel.save(update_fields=["rate_limit"])
    return channel


@pytest.mark.django_db
def test_over_the_rate_messages_wait_their_turn_and_are_not_failed(
        application, paced_channel, published, django_capture_on_commit_callbacks):
    _paced(paced_channel, RATE)
    messages = _queued(application, paced_channel, 3)
    with django_capture_on_commit_callbacks(execute=True):
        attempted = sending.send_attempts([m.id for m in messages])
    assert attempted == 1
    rows = {m.id: m for m in Message.objects.filter(id__in=[m.id for m in messages])}
    assert rows[messages[0].id].status == Status.SENT
    for message, wait in zip(messages[1:], (0.2, 0.4), strict=True):
        row = rows[message.id]
        assert row.status == Status.QUEUED and row.attempts == 0 and row.leased_until is None
        assert abs((row.due_at - timezone.now()).total_seconds() - wait) < 0.1
    countdowns = sorted(round(options["countdown"], 1) for _args, options in published.of("send_messages"))
    assert countdowns == [0.2, 0.4]


@pytest.mark.django_db
def test_a_waiting_message_goes_at_its_turn(application, paced_channel, published,
                                            django_capture_on_commit_callbacks):
    _paced(paced_channel, RATE)
    first, second = _queued(application, paced_channel, 2)
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([first.id, second.id])
    time.sleep(0.2)
    with django_capture_on_commit_callbacks(execute=True):
        assert sending.send_attempts([second.id]) == 1
    second.refresh_from_db()
    assert second.status == Status.SENT and second.attempts == 1


@pytest.mark.django_db
def test_an_unpaced_channel_sends_everything_at_once(application, channel, published,
                                                     django_capture_on_commit_callbacks):
    messages = _queued(application, channel, 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert sending.send_attempts([m.id for m in messages]) == 5
    assert set(Message.objects.filter(id__in=[m.id for m in messages]).values_list("status", flat=True)) == {
        Status.SENT}


@pytest.fixture
def rate_limited_gateway(receiver):
    receiver.answer(Answer(429, {"Content-Type": "application/json", "Retry-After": "7"},
                           json.dumps({"error": {"code": "rate_limited"}}).encode()))
    return channel_upsert(name="gateway", type="http", max_attempts=3, retry_delay=10,
                          config={"url": receiver.url})[0]


@pytest.mark.django_db
def test_a_providers_rate_limited_pauses_the_whole_channel_for_what_it_asked(
        application, rate_limited_gateway, receiver, published, django_capture_on_commit_callbacks,
        local_receivers_allowed):
    messages = _queued(application, rate_limited_gateway, 3)
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([m.id for m in messages])
    assert len(receiver.requests) == 1  # the rest were not attempted into the pause
    rows = {m.id: m for m in Message.objects.filter(id__in=[m.id for m in messages])}
    refused = rows[messages[0].id]
    assert refused.status == Status.DELIVERY_RETRIED
    assert refused.events.last().error_code == ErrorCode.RATE_LIMITED
    for message in messages[1:]:
        row = rows[message.id]
        assert row.status == Status.QUEUED and row.attempts == 0
        assert 6.5 < (row.due_at - timezone.now()).total_seconds() <= 7.0
    # Whoever asks next waits out the pause too.
    assert 6.5 < pacing.waits(rate_limited_gateway, ["another"])[0] <= 7.0


@pytest.mark.django_db
def test_without_a_retry_after_the_pause_is_the_channels_first_retry_delay(
        application, receiver, published, django_capture_on_commit_callbacks, local_receivers_allowed):
    receiver.answer(Answer(429, {"Content-Type": "application/json"}, b"{}"))
    gateway = channel_upsert(name="gateway", type="http", max_attempts=3, retry_delay=4,
                             config={"url": receiver.url})[0]
    _queued(application, gateway, 1)
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([Message.objects.get().id])
    assert 3.5 < pacing.waits(gateway, ["another"])[0] <= 4.0



@pytest.mark.django_db
def test_a_turn_beyond_the_lookahead_is_brought_within_it_by_the_sweeper(
        settings, application, paced_channel, published, django_capture_on_commit_callbacks):
    """A far turn is not left to the sweeper's grace (it would go late, and late turns push
    the ones behind them): due a lookahead before it, like a far sendAt, with no countdown."""
    _paced(paced_channel, 0.01)  # a turn every 100 s
    first, second, third = _queued(application, paced_channel, 3)  # turns at 0, 100 and 200 s
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([first.id, second.id, third.id])
    second.refresh_from_db()
    third.refresh_from_db()
    assert abs((second.due_at - timezone.now()).total_seconds() - 100) < 1  # within the lookahead (120 s)
    lookahead = settings.RELAY_SCHEDULE_LOOKAHEAD
    assert abs((third.due_at - timezone.now()).total_seconds() - (200 - lookahead)) < 1
    assert [round(o["countdown"]) for _a, o in published.of("send_messages")] == [100]


@pytest.mark.django_db
def test_a_message_that_expires_before_its_turn_wakes_when_it_expires(
        application, paced_channel, published, django_capture_on_commit_callbacks):
    _paced(paced_channel, 0.01)
    first, second = _queued(application, paced_channel, 2)
    expires = timezone.now() + timedelta(seconds=30)
    Message.objects.filter(id=second.id).update(expires_at=expires)
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([first.id, second.id])
    second.refresh_from_db()
    assert second.due_at == expires and second.status == Status.QUEUED
    # Expired when it comes back: its turn is released, and the next message takes it.
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([second.id], now=expires)
    second.refresh_from_db()
    assert second.status == Status.EXPIRED
    assert 99 < pacing.waits(paced_channel, ["another"])[0] <= 100


@pytest.mark.django_db
def test_cancelling_a_waiting_message_releases_its_turn(
        application, paced_channel, published, django_capture_on_commit_callbacks):
    _paced(paced_channel, RATE)
    messages = _queued(application, paced_channel, 3)  # turns at 0, 0.2 and 0.4 s
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([m.id for m in messages])
    assert message_cancel(message=Message.objects.get(id=messages[2].id))
    assert round(pacing.waits(paced_channel, ["another"])[0], 1) == 0.4  # the cancelled one's turn


@pytest.mark.django_db
def test_a_pause_is_at_most_an_hour_and_never_fails_the_attempts(paced_channel, monkeypatch, caplog):
    pacing.hold(paced_channel, 10 ** 9)
    assert pacing.waits(paced_channel, ["a"])[0] <= pacing.MAX_HOLD

    class Unreachable:
        def hold(self, *args):
            raise ConnectionError("the schedule is away")

    monkeypatch.setattr(pacing, "_schedule", lambda: Unreachable())
    pacing.hold(paced_channel, 5)  # logged, not raised: the attempts already made are recorded
    assert "not paused" in caplog.text
