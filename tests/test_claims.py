"""Getting messages to a worker: send tasks published after commit (comms.publish), and
claims with a lease (comms.claims).

Nothing is published for real (the `published` fixture records comms.publish.publish) and
time is injected: every claim takes `now`, so a lease or a retry delay passes without sleeping.
"""

import logging

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from comms import claims, outcomes, publish
from comms.accounts import channel_upsert
from comms.ids import new_id
from comms.models import Message
from comms.providers import ProviderError
from comms.status import SENDABLE, ErrorCode, Status
from comms.submission import message_submit
from config.celery import app as celery_app
from tests.timing import grace, lease, seconds

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"


def claimed_ids(message_ids: list[str], now) -> list[str]:
    return [m.id for m in claims.claim(message_ids, now)]


@pytest.fixture
def t0():
    return timezone.now()


@pytest.fixture
def submit(application, channel, published, django_capture_on_commit_callbacks, t0):
    """Submit a message at t0 through the real service; forget the task it published."""

    def submit(receiver: str = PHONE, *, on=None) -> Message:
        data = {"channel": on or channel, "receiver": receiver, "content": {"text": "Hi"}}
        with django_capture_on_commit_callbacks(execute=True):
            message, _ = message_submit(application=application, data=data, now=t0)
        published.clear()
        return message

    return submit


def fail_first_attempt(message: Message, now) -> None:
    """The provider refused attempt 1 at `now`: DELIVERY_RETRIED after the channel's delay."""
    moved = outcomes.refused(message, ProviderError(ErrorCode.CHANNEL_UNKNOWN_ERROR), attempt=1, now=now)
    assert moved, "the message should have moved to DELIVERY_RETRIED"


# Publishing after commit


def test_send_tasks_are_published_only_once_the_transaction_commits(
        published, django_capture_on_commit_callbacks):
    ids = [new_id() for _ in range(3)]

    with django_capture_on_commit_callbacks(execute=True):
        publish.sends_on_commit(ids)
        published_before_commit = list(published.of("send_messages"))

    assert published_before_commit == []
    assert published.sent_ids() == ids


def test_send_tasks_carry_at_most_relay_send_chunk_ids_each(published, django_capture_on_commit_callbacks):
    chunk = settings.RELAY_SEND_CHUNK
    ids = [new_id() for _ in range(2 * chunk + 1)]

    with django_capture_on_commit_callbacks(execute=True):
        publish.sends_on_commit(ids)

    batches = [args[0] for args, _ in published.of("send_messages")]
    assert batches == [ids[:chunk], ids[chunk:2 * chunk], ids[2 * chunk:]]


def test_a_smaller_send_chunk_setting_makes_smaller_tasks(settings, published,
                                                          django_capture_on_commit_callbacks):
    settings.RELAY_SEND_CHUNK = 2
    ids = [new_id() for _ in range(5)]

    with django_capture_on_commit_callbacks(execute=True):
        publish.sends_on_commit(ids)

    assert [len(args[0]) for args, _ in published.of("send_messages")] == [2, 2, 1]


def test_the_countdown_is_passed_to_every_chunk(settings, published, django_capture_on_commit_callbacks):
    settings.RELAY_SEND_CHUNK = 2

    with django_capture_on_commit_callbacks(execute=True):
        publish.sends_on_commit([new_id() for _ in range(3)], countdown=7.5)

    assert [options["countdown"] for _, options in published.of("send_messages")] == [7.5, 7.5]


def test_nothing_is_published_when_the_transaction_rolls_back(published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            publish.sends_on_commit([new_id()])
            raise RuntimeError("the caller's transaction fails")

    assert callbacks == []
    assert published.of("send_messages") == []


def test_nothing_is_published_for_no_ids(published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        publish.sends_on_commit([])

    assert callbacks == []
    assert published.of("send_messages") == []


@pytest.mark.django_db(transaction=True)
def test_a_broker_error_while_publishing_is_one_warning_not_raised(monkeypatch, caplog):
    """A real commit (transaction=True): the error would surface in the caller's commit."""

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "send_task", broker_down)

    with caplog.at_level(logging.WARNING), transaction.atomic():
        publish.sends_on_commit([new_id()])

    ours = [r for r in caplog.records if r.name.startswith(("comms", "django"))]
    assert [(r.levelname, r.exc_info) for r in ours] == [("WARNING", None)]
    assert "the sweeper picks the work up" in ours[0].getMessage()


# Claims


def test_a_freshly_submitted_message_can_be_claimed(submit, t0):
    message = submit()

    assert claimed_ids([message.id], t0) == [message.id]


def test_a_claim_holds_the_message_for_the_lease(submit, t0):
    message = submit()

    claims.claim([message.id], t0)

    message.refresh_from_db()
    assert message.leased_until == t0 + lease()
    assert message.due_at == t0  # a claim leaves the due time alone


def test_a_claimed_message_cannot_be_claimed_again_before_its_lease_ends(submit, t0):
    message = submit()
    claims.claim([message.id], t0)

    assert claimed_ids([message.id], t0 + lease() - seconds(1)) == []


def test_a_claimed_message_can_be_claimed_again_once_its_lease_ends(submit, t0):
    message = submit()
    claims.claim([message.id], t0)

    assert claimed_ids([message.id], t0 + lease()) == [message.id]


def test_a_claim_does_not_change_the_status(submit, t0):
    message = submit()

    claims.claim([message.id], t0)

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.QUEUED, 0)


def test_a_released_claim_is_published_again_after_commit(submit, published,
                                                         django_capture_on_commit_callbacks, t0):
    message = submit()
    claimed = claims.claim([message.id], t0)

    with django_capture_on_commit_callbacks(execute=True):
        claims.release(claimed, t0)

    assert published.sent_ids() == [message.id]


def test_a_released_claim_can_be_claimed_at_once(submit, published, django_capture_on_commit_callbacks, t0):
    message = submit()
    claimed = claims.claim([message.id], t0)
    with django_capture_on_commit_callbacks(execute=True):
        claims.release(claimed, t0)

    assert claimed_ids([message.id], t0) == [message.id]


def test_a_released_claim_is_due_now_and_unleased(submit, published, django_capture_on_commit_callbacks, t0):
    message = submit()
    claimed = claims.claim([message.id], t0)
    released_at = t0 + seconds(5)

    with django_capture_on_commit_callbacks(execute=True):
        claims.release(claimed, released_at)

    message.refresh_from_db()
    assert (message.due_at, message.leased_until) == (released_at, None)


def test_a_retry_that_is_not_yet_due_cannot_be_claimed(submit, channel, t0):
    message = submit()
    fail_first_attempt(message, t0)

    assert claimed_ids([message.id], t0 + seconds(channel.retry_delay) - seconds(1)) == []


def test_a_retry_can_be_claimed_once_its_delay_has_passed(submit, channel, t0):
    message = submit()
    fail_first_attempt(message, t0)

    assert claimed_ids([message.id], t0 + seconds(channel.retry_delay)) == [message.id]


@pytest.fixture
def slow_channel(db):
    """Retries wait longer than RELAY_MAX_COUNTDOWN: in the database, for the sweeper."""
    return channel_upsert(name="slow", type="simulator", max_attempts=3,
                          retry_delay=settings.RELAY_MAX_COUNTDOWN * 2)[0]


def test_a_long_retry_that_is_not_yet_due_cannot_be_claimed(submit, slow_channel, t0):
    message = submit(on=slow_channel)
    fail_first_attempt(message, t0)
    due = t0 + seconds(slow_channel.retry_delay)

    assert claimed_ids([message.id], due - seconds(1)) == []


def test_claiming_another_message_does_not_take_a_long_retry_before_it_is_due(submit, slow_channel, t0):
    retrying = submit(on=slow_channel)
    fail_first_attempt(retrying, t0)
    due = t0 + seconds(slow_channel.retry_delay)
    fresh = submit()

    claimed = claimed_ids([fresh.id], due - seconds(1))

    assert retrying.id not in claimed


OTHER_STATUSES = sorted(set(Status) - SENDABLE)


@pytest.mark.parametrize("status", OTHER_STATUSES)
def test_a_message_in_another_status_is_never_claimed(submit, t0, status):
    message = submit()
    Message.objects.filter(id=message.id).update(status=status, due_at=t0)

    assert claimed_ids([message.id], t0 + grace() + lease()) == []


@pytest.mark.parametrize("status", OTHER_STATUSES)
def test_a_due_message_in_another_status_is_not_taken_to_fill_up_a_claim(submit, t0, status):
    other = submit()
    Message.objects.filter(id=other.id).update(status=status, due_at=t0)
    wanted = submit()

    assert claimed_ids([wanted.id], t0) == [wanted.id]
