"""The sweeper: the safety net for lost tasks, killed workers, schedules and lost receipts.

Every sweep is given its `now`, so a grace, a lease or a receipt timeout passes without
sleeping; the `published` fixture records what a sweep would publish once it commits. A sweep
takes what fell due a grace ago and holds no live lease (comms.due).
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from comms import claims, publish, sending, sweeper
from comms.models import Message, MessageEvent
from comms.providers import provider_for
from comms.providers.base import Sent
from comms.status import SENDABLE, Status
from comms.submission import message_submit
from tests.timing import grace, lease, seconds

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"


def fresh(message: Message) -> Message:
    message.refresh_from_db()
    return message


@pytest.fixture
def t0():
    return timezone.now()


@pytest.fixture
def submit(application, channel, published, django_capture_on_commit_callbacks, t0):
    """Submit at t0 through the real service; the task it published is then lost."""

    def submit(receiver: str = PHONE, **extra) -> Message:
        data = {"channel": channel, "receiver": receiver, "content": {"text": "Hi"}, **extra}
        with django_capture_on_commit_callbacks(execute=True):
            message, _ = message_submit(application=application, data=data, now=t0)
        published.clear()
        return message

    return submit


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    """One sweep at `now`, committed: what it publishes is in `published`."""

    def sweep(now, **kwargs) -> dict[str, int]:
        with django_capture_on_commit_callbacks(execute=True):
            return sweeper.sweep_due_work(now=now, **kwargs)

    return sweep


@pytest.fixture
def send(published, django_capture_on_commit_callbacks):
    """What a worker does with a send task: one attempt per message it can claim."""

    def send(message: Message, now) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return sending.send_attempts([message.id], now=now)

    return send


@pytest.fixture
def sent_message(submit, send, published, t0):
    """A message handed to the simulator at t0 whose receipt never came back."""
    message = submit()
    send(message, t0)
    published.clear()
    return fresh(message)


def receipt_ids(published) -> list[str]:
    return [p["messageId"] for (_, payloads, *_), _ in published.of("process_receipts") for p in payloads]


# Lost send tasks


def test_a_queued_message_whose_task_was_lost_is_republished_once_its_grace_has_passed(
        submit, sweep, published, t0):
    message = submit()

    counts = sweep(t0 + grace())

    assert counts["dispatched"] == 1
    assert published.sent_ids() == [message.id]


def test_a_queued_message_is_not_republished_before_its_grace_has_passed(submit, sweep, published, t0):
    submit()

    counts = sweep(t0 + grace() - seconds(1))

    assert counts["dispatched"] == 0
    assert published.sent_ids() == []


def test_a_republished_message_is_given_a_fresh_grace(submit, sweep, t0):
    message = submit()
    swept_at = t0 + grace()

    sweep(swept_at)

    # Due from the sweep: not taken again before another grace has passed.
    assert fresh(message).due_at == swept_at


def test_a_republished_message_is_not_republished_again_within_the_grace(submit, sweep, published, t0):
    submit()
    swept_at = t0 + grace()
    sweep(swept_at)
    published.clear()

    counts = sweep(swept_at + grace() - seconds(1))

    assert counts["dispatched"] == 0
    assert published.sent_ids() == []


def test_the_republished_task_can_claim_its_message(submit, sweep, t0):
    message = submit()
    swept_at = t0 + grace()
    sweep(swept_at)

    assert [m.id for m in claims.claim([message.id], swept_at)] == [message.id]


def test_a_message_whose_publish_failed_is_picked_up_by_the_sweeper(
        application, channel, published, monkeypatch, sweep, django_capture_on_commit_callbacks, t0):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    with monkeypatch.context() as broken:
        broken.setattr(publish, "publish", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            message, _ = message_submit(
                application=application, data={"channel": channel, "receiver": PHONE, "content": {"text": "Hi"}},
                now=t0)

    sweep(t0 + grace())

    assert published.sent_ids() == [message.id]


# Killed workers


def test_a_claimed_message_is_not_swept_while_its_lease_runs(submit, sweep, published, t0):
    message = submit()
    claims.claim([message.id], t0)  # and the worker is killed

    counts = sweep(t0 + lease() - seconds(1))

    assert counts["dispatched"] == 0
    assert published.sent_ids() == []


def test_a_claimed_message_is_swept_once_its_lease_has_expired(submit, sweep, published, t0):
    message = submit()
    claims.claim([message.id], t0)  # and the worker is killed

    counts = sweep(t0 + lease())

    assert counts["dispatched"] == 1
    assert published.sent_ids() == [message.id]


def test_after_a_killed_worker_the_message_is_sent_exactly_once(submit, sweep, send, published, t0):
    message = submit()
    claims.claim([message.id], t0)  # and the worker is killed
    expired = t0 + lease()
    sweep(expired)

    # The sweeper's task and the killed worker's task, redelivered by the broker.
    sent = [send(message, expired), send(message, expired)]

    assert sent == [1, 0]
    assert MessageEvent.objects.filter(message=message, status_code=Status.SENT).count() == 1
    assert (fresh(message).status, fresh(message).attempts) == (Status.SENT, 1)
    assert receipt_ids(published) == [message.id]


def test_a_stalled_worker_finishing_after_its_lease_records_no_second_sent(
        submit, sweep, send, published, channel, t0):
    message = submit()
    (stalled,) = claims.claim([message.id], t0)
    expired = t0 + lease()
    sweep(expired)
    send(message, expired)
    published.clear()

    # The first worker wakes up and records the attempt it made before its lease ran out.
    sending.record_sent([Sent(stalled, 1, f"sim-{message.id}-1")], {channel.id: provider_for(channel)},
                        expired + seconds(1))

    assert MessageEvent.objects.filter(message=message, status_code=Status.SENT).count() == 1
    assert published.of("process_receipts") == []


# Scheduled messages


def test_a_scheduled_message_whose_countdown_was_lost_becomes_queued_a_grace_after_its_send_at(
        submit, sweep, published, t0):
    message = submit(send_at=t0 + seconds(60))
    assert message.status == Status.SCHEDULED
    assert fresh(message).due_at == t0 + seconds(60)

    counts = sweep(t0 + seconds(60) + grace())

    assert counts["released"] == 1
    assert fresh(message).status == Status.QUEUED
    assert published.sent_ids() == [message.id]


def test_a_scheduled_message_is_not_released_before_its_send_at(submit, sweep, published, t0):
    message = submit(send_at=t0 + seconds(60))

    counts = sweep(t0 + seconds(59))

    assert counts["released"] == 0
    assert fresh(message).status == Status.SCHEDULED
    assert published.sent_ids() == []


def test_a_scheduled_message_is_left_to_its_countdown_until_a_grace_after_its_send_at(
        submit, sweep, published, t0):
    message = submit(send_at=t0 + seconds(60))

    counts = sweep(t0 + seconds(60) + grace() - seconds(1))

    assert counts["released"] == 0
    assert fresh(message).status == Status.SCHEDULED
    assert published.calls == {}


def test_a_far_scheduled_message_gets_its_countdown_once_within_the_lookahead(submit, sweep, published, t0):
    lookahead = seconds(settings.RELAY_SCHEDULE_LOOKAHEAD)
    send_at = t0 + 3 * lookahead
    message = submit(send_at=send_at)
    look_at = fresh(message).due_at
    swept_at = look_at + grace()

    sweep(swept_at)

    assert look_at == send_at - lookahead
    assert fresh(message).status == Status.SCHEDULED
    countdown = (send_at - swept_at).total_seconds()
    assert published.of("start_scheduled") == [(([message.id],), {"countdown": countdown})]
    assert fresh(message).due_at == send_at


# Overdue receipts


def test_a_sent_message_with_an_overdue_receipt_is_polled_a_grace_after_it_fell_due(
        sent_message, sweep, published):
    counts = sweep(sent_message.due_at + grace())

    assert counts["polled"] == 1
    assert receipt_ids(published) == [sent_message.id]


def test_the_polled_receipt_names_the_attempt_that_was_sent(sent_message, sweep, published):
    sweep(sent_message.due_at + grace())

    ((_, payloads, *_), _), = published.of("process_receipts")
    assert [(p["attempt"], p["ref"]) for p in payloads] == [(1, sent_message.provider_ref)]


def test_polling_moves_the_next_look_forward_by_the_receipt_timeout(sent_message, sweep):
    swept_at = sent_message.due_at + grace()
    timeout = provider_for(sent_message.channel).receipt_timeout(sent_message)

    sweep(swept_at)

    assert fresh(sent_message).due_at == swept_at + seconds(timeout)


def test_a_sent_message_is_not_polled_before_its_receipt_is_overdue(sent_message, sweep, published):
    counts = sweep(sent_message.due_at + grace() - seconds(1))

    assert counts["polled"] == 0
    assert published.of("process_receipts") == []


def test_a_silent_sent_message_is_never_polled(submit, send, sweep, published, t0):
    message = submit(f"{PHONE}#silent")
    send(message, t0)

    counts = sweep(t0 + timedelta(days=30))

    assert fresh(message).status == Status.SENT
    assert counts["polled"] == 0
    assert published.of("process_receipts") == []


def test_a_silent_sent_message_with_a_stale_due_time_is_cleared_without_a_receipt(
        submit, send, sweep, published, t0):
    message = submit(f"{PHONE}#silent")
    send(message, t0)
    Message.objects.filter(id=message.id).update(due_at=t0)

    sweep(t0 + grace())

    assert published.of("process_receipts") == []
    assert fresh(message).due_at is None


# Rows with nothing due


# Statuses with nothing for the sweeper to do: neither sendable, scheduled, nor awaiting a receipt.
AT_REST = sorted(set(Status) - SENDABLE - {Status.SCHEDULED, Status.SENT})


@pytest.mark.parametrize("status", AT_REST)
def test_a_message_at_rest_with_a_stale_due_time_is_cleared(submit, sweep, published, t0, status):
    message = submit()
    Message.objects.filter(id=message.id).update(status=status, due_at=t0)

    counts = sweep(t0 + grace())

    assert counts["cleared"] == 1
    assert fresh(message).due_at is None
    assert published.calls == {}


def test_a_message_with_no_due_time_is_left_alone(submit, sweep, t0):
    message = submit()
    Message.objects.filter(id=message.id).update(due_at=None)

    counts = sweep(t0 + timedelta(days=30))

    assert counts == {"dispatched": 0, "released": 0, "polled": 0, "cleared": 0}
    assert fresh(message).status == Status.QUEUED


# Limit


def test_a_sweep_takes_at_most_limit_rows_the_longest_overdue_first(submit, sweep, published, t0):
    messages = [submit() for _ in range(3)]
    for age, message in zip([3, 1, 2], messages, strict=True):
        Message.objects.filter(id=message.id).update(due_at=t0 - grace() - seconds(age))

    counts = sweep(t0, limit=2)

    assert counts["dispatched"] == 2
    assert sorted(published.sent_ids()) == sorted([messages[0].id, messages[2].id])
    assert fresh(messages[1]).due_at == t0 - grace() - seconds(1)


def test_the_rows_left_over_by_the_limit_are_taken_by_the_next_sweep(submit, sweep, published, t0):
    messages = [submit() for _ in range(3)]
    sweep(t0 + grace(), limit=2)
    published.clear()

    counts = sweep(t0 + grace(), limit=2)

    assert counts["dispatched"] == 1
    assert len(published.sent_ids()) == 1
    assert published.sent_ids()[0] in {m.id for m in messages}
