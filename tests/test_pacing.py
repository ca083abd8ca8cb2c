"""A channel's rateLimit, held across workers (comms.pacing): messages over the rate wait for
their turn, in order, and are never failed for it; a provider's RATE_LIMITED pauses the
whole channel for what it asked.

The schedule is tested on both of its homes (Redis, and the locked files of the embedded
default) with the same expectations; the sending tests run on whichever the suite runs on.
"""

import json
import time
from multiprocessing import get_context
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from comms import pacing, sending
from comms.accounts import channel_upsert
from comms.models import Message
from comms.pacing import FileSchedule, RedisSchedule
from comms.status import ErrorCode, Status
from tests.receiver import Answer

PHONE = "+447700900123"
RATE = 5  # per second: a turn every 0.2 s


def _redis_url() -> str | None:
    url = settings.CELERY_BROKER_URL
    return url if url.startswith("redis://") else None


@pytest.fixture(params=["file", "redis"])
def schedule(request, tmp_path):
    if request.param == "file":
        yield FileSchedule(tmp_path / "pacing")
        return
    if _redis_url() is None:
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...)")
    made = RedisSchedule(_redis_url())
    made.forget()
    yield made
    made.forget()


def test_an_unpaced_channel_never_waits(schedule):
    assert schedule.take_turns(1, 0.0, ["a", "b", "c"]) == [0, 0, 0]


def test_turns_are_spaced_by_the_rate_in_the_order_taken(schedule):
    waits = schedule.take_turns(1, 1 / RATE, ["a", "b", "c", "d"])
    assert waits[0] == 0
    assert [round(w, 1) for w in waits[1:]] == [0.2, 0.4, 0.6]


def test_a_waiting_message_keeps_its_turn_and_later_ones_queue_behind_it(schedule):
    schedule.take_turns(1, 1 / RATE, ["a", "b", "c"])
    again = schedule.take_turns(1, 1 / RATE, ["c", "d"])
    assert round(again[0], 1) == 0.4  # c's own turn, not a new one
    assert round(again[1], 1) == 0.6  # d after c


def test_a_message_whose_turn_has_come_goes(schedule):
    schedule.take_turns(1, 1 / RATE, ["a", "b"])
    time.sleep(0.21)
    assert schedule.take_turns(1, 1 / RATE, ["b"]) == [0]


def test_late_turns_are_not_sent_as_a_burst(schedule):
    """Turns that come due together (their tasks were late) go most of an interval apart."""
    schedule.take_turns(1, 1 / RATE, ["a", "b", "c", "d"])  # a goes; b, c, d wait
    time.sleep(0.65)  # b, c and d are all due now
    waits = schedule.take_turns(1, 1 / RATE, ["b", "c", "d"])
    assert waits[0] == 0
    assert [round(w, 2) for w in waits[1:]] == [0.18, 0.36]
    # And one that comes back at the wait it was given goes then.
    time.sleep(0.18)
    assert schedule.take_turns(1, 1 / RATE, ["c"]) == [0]


def test_channels_keep_their_own_turns(schedule):
    schedule.take_turns(1, 1 / RATE, ["a", "b"])
    assert schedule.take_turns(2, 1 / RATE, ["x"]) == [0]


def test_a_hold_pauses_paced_and_unpaced_channels_alike(schedule):
    schedule.hold(1, 3.0)
    schedule.hold(2, 3.0)
    assert all(2.9 < w <= 3.0 for w in schedule.take_turns(1, 0.0, ["a", "b"]))
    paced = schedule.take_turns(2, 1 / RATE, ["x", "y"])
    assert 2.9 < paced[0] <= 3.0  # x's turn (now) falls in the hold: it goes when the hold ends
    assert round(paced[1] - paced[0], 2) == 0.18  # and y (its turn 0.2 s) not in a burst with it


def test_a_shorter_hold_does_not_cut_a_longer_one(schedule):
    schedule.hold(1, 5.0)
    schedule.hold(1, 1.0)
    assert schedule.take_turns(1, 0.0, ["a"])[0] > 4.9


def test_forget_clears_every_channel(schedule):
    schedule.take_turns(1, 1 / RATE, ["a", "b"])
    schedule.hold(2, 60)
    schedule.forget()
    assert schedule.take_turns(1, 1 / RATE, ["c"]) == [0]
    assert schedule.take_turns(2, 0.0, ["d"]) == [0]


def _take_many(kind: str, where: str, prefix: str, count: int, out) -> None:
    """In a process of its own: take `count` turns one by one; put when each falls."""
    made = FileSchedule(Path(where)) if kind == "file" else RedisSchedule(where)
    out.put([made.take_turns(1, 0.05, [f"{prefix}{i}"])[0] + time.time() for i in range(count)])


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_two_processes_never_take_the_same_turn(kind, tmp_path):
    """What makes the rate hold across workers: turns taken at once by two processes are
    all distinct, one interval apart."""
    where = str(tmp_path / "pacing") if kind == "file" else _redis_url()
    if where is None:
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...)")
    if kind == "redis":
        RedisSchedule(where).forget()
    spawn = get_context("fork")  # the children need no Django, only the schedule
    out = spawn.Queue()
    workers = [spawn.Process(target=_take_many, args=(kind, where, p, 40, out)) for p in ("a", "b")]
    for worker in workers:
        worker.start()
    turns = sorted(out.get(timeout=60) + out.get(timeout=60))
    for worker in workers:
        worker.join()
    # A turn is when it was asked plus its wait, read on this machine's clock: two taken
    # alike would fall together; all 80 are one interval (50 ms) apart, give or take the
    # few milliseconds between Redis answering and the clock being read.
    assert min(b - a for a, b in zip(turns, turns[1:], strict=False)) > 0.03
    if kind == "redis":
        RedisSchedule(where).forget()


# --- sending ---------------------------------------------------------------------------------


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

