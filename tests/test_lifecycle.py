"""comms.lifecycle: the one function that changes a status, checked against the one table.

What a move writes is a Change, what it requires an Only."""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from comms import lifecycle
from comms.lifecycle import Change, EventDetails, Only
from comms.models import Message, MessageEvent
from comms.status import WAITING, EventCode, Status, can_transition

pytestmark = pytest.mark.django_db

ALL_PAIRS = list(itertools.product(Status, Status))


def _pair_id(source: Status, target: Status) -> str:
    return f"{source.value}->{target.value}"


ALLOWED_PAIRS = [
    pytest.param(source, target, id=_pair_id(source, target))
    for source, target in ALL_PAIRS
    if can_transition(source, target)
]
FORBIDDEN_PAIRS = [
    pytest.param(source, target, id=_pair_id(source, target))
    for source, target in ALL_PAIRS
    if not can_transition(source, target)
]


@pytest.fixture
def make_message(application, channel):
    def make(status: Status, **fields) -> Message:
        fields.setdefault("event_seq", 2)
        return Message.objects.create(
            application=application, channel=channel, receiver="+447700900123",
            content={"text": "Hello"}, status=status, **fields,
        )

    return make


def events_of(message: Message) -> list[tuple[int, str]]:
    return list(MessageEvent.objects.filter(message=message).values_list("sequence", "status_code"))


def test_every_pair_of_statuses_is_covered():
    assert len(ALLOWED_PAIRS) + len(FORBIDDEN_PAIRS) == len(Status) ** 2


@pytest.mark.parametrize(("source", "target"), ALLOWED_PAIRS)
def test_allowed_transition_moves_the_message_and_records_one_event(make_message, source, target):
    message = make_message(source)

    moved = lifecycle.transition([message.id], Change(target))

    message.refresh_from_db()
    assert [m.id for m in moved] == [message.id]
    assert message.status == target
    assert message.event_seq == 3
    assert events_of(message) == [(3, target.value)]


@pytest.mark.parametrize(("source", "target"), FORBIDDEN_PAIRS)
def test_forbidden_transition_changes_nothing_and_raises_nothing(make_message, source, target):
    message = make_message(source)

    moved = lifecycle.transition([message.id], Change(target))

    message.refresh_from_db()
    assert moved == []
    assert message.status == source
    assert message.event_seq == 2
    assert events_of(message) == []


def test_from_statuses_narrows_the_allowed_sources(make_message):
    message = make_message(Status.QUEUED)

    moved = lifecycle.transition([message.id], Change(Status.SENT), only=Only(from_statuses={Status.DELIVERY_RETRIED}))

    message.refresh_from_db()
    assert moved == []
    assert message.status == Status.QUEUED


def test_from_statuses_never_widens_the_allowed_sources(make_message):
    message = make_message(Status.DELIVERED)

    moved = lifecycle.transition([message.id], Change(Status.SENT), only=Only(from_statuses={Status.DELIVERED}))

    message.refresh_from_db()
    assert moved == []
    assert message.status == Status.DELIVERED


def test_from_statuses_still_moves_a_message_in_an_expected_status(make_message):
    message = make_message(Status.QUEUED)

    moved = lifecycle.transition([message.id], Change(Status.SENT), only=Only(from_statuses={Status.QUEUED}))

    assert [m.id for m in moved] == [message.id]


def test_attempts_guard_skips_a_message_with_another_attempt_count(make_message):
    message = make_message(Status.SENT, attempts=2)

    moved = lifecycle.transition([message.id], Change(Status.DELIVERED), only=Only(attempts=1))

    message.refresh_from_db()
    assert moved == []
    assert message.status == Status.SENT


def test_attempts_guard_moves_a_message_with_that_attempt_count(make_message):
    message = make_message(Status.SENT, attempts=2)

    moved = lifecycle.transition([message.id], Change(Status.DELIVERED), only=Only(attempts=2))

    message.refresh_from_db()
    assert [m.id for m in moved] == [message.id]
    assert message.status == Status.DELIVERED


def test_count_attempt_adds_one_to_the_attempts_and_stamps_the_event(make_message):
    message = make_message(Status.QUEUED, attempts=0)

    (moved,) = lifecycle.transition([message.id], Change(Status.SENT, count_attempt=True))

    message.refresh_from_db()
    assert message.attempts == 1
    assert moved.attempts == 1
    assert MessageEvent.objects.get(message=message).attempt == 1


def test_without_count_attempt_the_attempts_stay(make_message):
    message = make_message(Status.SENT, attempts=1)

    lifecycle.transition([message.id], Change(Status.DELIVERED))

    message.refresh_from_db()
    assert message.attempts == 1


def test_per_message_sets_each_messages_own_column_values(make_message):
    first, second = make_message(Status.QUEUED), make_message(Status.QUEUED)
    now = timezone.now()
    due = {first.id: now + timedelta(seconds=30), second.id: now + timedelta(seconds=60)}

    lifecycle.transition(
        [first.id, second.id],
        Change(Status.SENT, per_message={"provider_ref": {first.id: "ref-1", second.id: "ref-2"}, "due_at": due}),
        now=now,
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.provider_ref, first.due_at) == ("ref-1", due[first.id])
    assert (second.provider_ref, second.due_at) == ("ref-2", due[second.id])


def test_transition_sets_the_due_time_and_ends_the_claim(make_message):
    now = timezone.now()
    message = make_message(Status.QUEUED, leased_until=now + timedelta(seconds=45))
    due = now + timedelta(seconds=10)

    lifecycle.transition([message.id], Change(Status.DELIVERY_RETRIED, due_at=due), now=now)

    message.refresh_from_db()
    assert message.due_at == due
    assert message.leased_until is None


def test_transition_to_a_waiting_status_without_a_due_time_keeps_it(make_message):
    due = timezone.now() + timedelta(seconds=30)
    message = make_message(Status.QUEUED, due_at=due)

    lifecycle.transition([message.id], Change(Status.SENT))

    message.refresh_from_db()
    assert message.due_at == due


def test_transition_to_a_waiting_status_may_clear_the_due_time(make_message):
    message = make_message(Status.QUEUED, due_at=timezone.now())

    lifecycle.transition([message.id], Change(Status.SENT, due_at=None))

    message.refresh_from_db()
    assert message.due_at is None


def test_transition_to_a_status_that_waits_for_nothing_clears_the_due_time(make_message):
    message = make_message(Status.SENT, due_at=timezone.now())

    lifecycle.transition([message.id], Change(Status.DELIVERED))

    message.refresh_from_db()
    assert message.due_at is None


def test_a_due_time_given_to_a_status_that_waits_for_nothing_is_not_written(make_message):
    now = timezone.now()
    message = make_message(Status.QUEUED, due_at=now)

    lifecycle.transition([message.id], Change(Status.CANCELLED, due_at=now + timedelta(seconds=30)), now=now)

    message.refresh_from_db()
    assert message.due_at is None


@pytest.mark.parametrize(("source", "target"), ALLOWED_PAIRS)
def test_every_transition_ends_the_claim_and_only_waiting_statuses_keep_a_due_time(make_message, source, target):
    now = timezone.now()
    message = make_message(source, due_at=now, leased_until=now + timedelta(seconds=45))

    lifecycle.transition([message.id], Change(target), now=now)

    message.refresh_from_db()
    assert message.leased_until is None
    assert message.due_at == (now if target in WAITING else None)


def test_unleased_skips_a_message_a_worker_holds(make_message):
    now = timezone.now()
    message = make_message(Status.QUEUED, leased_until=now + timedelta(seconds=45))

    moved = lifecycle.transition([message.id], Change(Status.CANCELLED), only=Only(unleased=True), now=now)

    message.refresh_from_db()
    assert moved == []
    assert message.status == Status.QUEUED


def test_unleased_moves_a_message_whose_lease_has_run_out(make_message):
    now = timezone.now()
    message = make_message(Status.QUEUED, leased_until=now)

    moved = lifecycle.transition([message.id], Change(Status.CANCELLED), only=Only(unleased=True), now=now)

    assert [m.id for m in moved] == [message.id]


def test_event_carries_the_details(make_message):
    message = make_message(Status.SENT, attempts=1)
    details = EventDetails(error_code="CHANNEL_UNKNOWN_ERROR", error_message="boom", raw_code="e42",
                           fallback_to="f" * 32)

    lifecycle.transition([message.id], Change(Status.DELIVERY_FAILED, details))

    event = MessageEvent.objects.get(message=message)
    assert (event.error_code, event.error_message, event.raw_code, event.fallback_to) == (
        "CHANNEL_UNKNOWN_ERROR", "boom", "e42", "f" * 32)


def test_only_the_messages_that_fit_are_moved(make_message):
    queued, delivered = make_message(Status.QUEUED), make_message(Status.DELIVERED)

    moved = lifecycle.transition([queued.id, delivered.id], Change(Status.SENT))

    assert [m.id for m in moved] == [queued.id]
    assert events_of(delivered) == []


def test_a_second_identical_transition_is_a_no_op(make_message):
    message = make_message(Status.QUEUED)
    lifecycle.transition([message.id], Change(Status.SENT))

    moved = lifecycle.transition([message.id], Change(Status.SENT))

    message.refresh_from_db()
    assert moved == []
    assert message.status == Status.SENT
    assert events_of(message) == [(3, "SENT")]


def test_a_repeated_counted_retry_is_a_no_op(make_message):
    # DELIVERY_RETRIED may follow DELIVERY_RETRIED, so the attempts guard is what makes a
    # repeated task harmless.
    message = make_message(Status.DELIVERY_RETRIED, attempts=1)
    retry = Change(Status.DELIVERY_RETRIED, count_attempt=True)
    only = Only(from_statuses={Status.DELIVERY_RETRIED}, attempts=1)
    lifecycle.transition([message.id], retry, only=only)

    moved = lifecycle.transition([message.id], retry, only=only)

    message.refresh_from_db()
    assert moved == []
    assert message.attempts == 2
    assert events_of(message) == [(3, "DELIVERY_RETRIED")]


def test_transition_of_no_messages_moves_nothing():
    assert lifecycle.transition([], Change(Status.SENT)) == []


def test_record_event_adds_an_event_without_changing_the_status(make_message):
    message = make_message(Status.SENT)

    event = lifecycle.record_event(message.id, EventCode.FAILED_CANCELLATION)

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.event_seq == 3
    assert event.sequence == 3
    assert events_of(message) == [(3, "FAILED_CANCELLATION")]


def test_record_event_for_an_unknown_message_records_nothing():
    event = lifecycle.record_event("0" * 32, EventCode.FAILED_CANCELLATION)

    assert event is None
    assert not MessageEvent.objects.exists()


def test_delivered_after_read_is_ignored(make_message):
    message = make_message(Status.READ)

    moved = lifecycle.transition([message.id], Change(Status.DELIVERED))

    message.refresh_from_db()
    assert moved == []
    assert message.status == Status.READ
    assert events_of(message) == []


@pytest.mark.parametrize("target", [Status.READ, Status.INTERACTED, Status.DELETED])
def test_feedback_may_follow_delivered(make_message, target):
    message = make_message(Status.DELIVERED)

    moved = lifecycle.transition([message.id], Change(target))

    assert [m.id for m in moved] == [message.id]


@pytest.mark.parametrize("source", [Status.INTERACTED, Status.DELETED])
def test_read_after_later_feedback_is_ignored(make_message, source):
    message = make_message(source)

    moved = lifecycle.transition([message.id], Change(Status.READ))

    assert moved == []


@pytest.mark.parametrize("final", [Status.DELIVERY_FAILED, Status.CANCELLED, Status.EXPIRED, Status.DELETED])
def test_a_final_status_is_never_left(final):
    assert [t for t in Status if can_transition(final, t)] == []
