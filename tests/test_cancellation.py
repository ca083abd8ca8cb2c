"""POST /messages/{id}/cancel: CANCELLED (with its dormant fallbacks) until the message is handed
to the provider, 409 and FAILED_CANCELLATION after; a cancel racing a send goes to whichever
claims the row first, and a message is never both CANCELLED and sent.

The race tests need real row locks, so they run on PostgreSQL only, with committed rows
(transaction=True) and one real connection per thread.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from comms import cancellation, claims, receipts, sending, sweeper, tasks
from comms.models import Channel, Message, MessageEvent
from comms.providers import Sent
from comms.providers.simulator import SimulatorProvider
from comms.status import Status
from comms.submission import message_submit
from tests.postgres import backends_waiting_for_a_lock

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"
WAIT_LIMIT = 10.0  # seconds: only a hang reaches it
on_postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")


@pytest.fixture
def handed_over(monkeypatch):
    """Ids of the messages given to the simulator's send (thread-safe: list.append)."""
    calls: list[str] = []
    real_send = SimulatorProvider.send

    def send(self, message, *, attempt):
        calls.append(message.id)
        return real_send(self, message, attempt=attempt)

    monkeypatch.setattr(SimulatorProvider, "send", send)
    return calls


@pytest.fixture
def submit(application, channel, backup_channel, published):
    """A message committed through the real service; `fallbacks` dormant links behind it."""

    def submit(receiver: str = PHONE, *, fallbacks: int = 0, **extra) -> Message:
        data = {"channel": channel, "receiver": receiver, "content": {"text": "Hi"}, **extra}
        node = data
        for _ in range(fallbacks):
            node["fallback"] = {"channel": backup_channel, "receiver": PHONE, "content": {"text": "B"}}
            node = node["fallback"]
        message, _ = message_submit(application=application, data=data)
        return message

    return submit


@pytest.fixture
def in_status(submit, published, django_capture_on_commit_callbacks):
    """A message brought to `status` the way workers would bring it there."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    def make(status: Status, *, fallbacks: int = 0) -> Message:
        receiver = {Status.DELIVERY_RETRIED: f"{PHONE}#fail", Status.DELIVERY_FAILED: f"{PHONE}#reject",
                    Status.SENT: f"{PHONE}#silent"}.get(status, PHONE)
        send_at = timezone.now() + timedelta(days=1) if status == Status.SCHEDULED else None
        message = run(submit, receiver, fallbacks=fallbacks, send_at=send_at)
        if status not in (Status.SCHEDULED, Status.QUEUED):
            run(sending.send_attempts, [message.id])
            for (channel_name, payloads, *_), _ in published.of("process_receipts"):
                run(receipts.receipts_process, channel=Channel.objects.get(name=channel_name), payloads=payloads)
        published.clear()
        message.refresh_from_db()
        assert message.status == status
        return message

    return make


def cancel(api, message: Message, capture):
    with capture(execute=True):
        return api.post(f"/api/v1/messages/{message.id}/cancel")


def codes(message_id: str) -> list[str]:
    return list(MessageEvent.objects.filter(message_id=message_id).order_by("sequence")
                .values_list("status_code", flat=True))


def chain_of(message: Message) -> list[Message]:
    links, node = [], message.fallback_to
    while node is not None:
        links.append(node)
        node = node.fallback_to
    return links


CANCELLABLE = [Status.SCHEDULED, Status.QUEUED, Status.DELIVERY_RETRIED]
TOO_LATE = [Status.SENT, Status.DELIVERED, Status.DELIVERY_FAILED]


@pytest.mark.parametrize("status", CANCELLABLE)
def test_a_message_not_yet_handed_over_is_cancelled(api, in_status, django_capture_on_commit_callbacks, status):
    message = in_status(status)

    response = cancel(api, message, django_capture_on_commit_callbacks)

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (message.id, "CANCELLED")
    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    assert codes(message.id)[-1] == "CANCELLED"
    assert message.due_at is None  # nothing left for the sweeper


@pytest.mark.parametrize("status", CANCELLABLE)
def test_cancelling_cancels_every_dormant_fallback_of_the_chain(api, in_status, django_capture_on_commit_callbacks,
                                                                 status):
    message = in_status(status, fallbacks=2)

    cancel(api, message, django_capture_on_commit_callbacks)

    assert [m.status for m in chain_of(message)] == [Status.CANCELLED, Status.CANCELLED]


@pytest.mark.parametrize("status", TOO_LATE)
def test_a_message_already_handed_over_cannot_be_cancelled(api, in_status, django_capture_on_commit_callbacks,
                                                           status):
    message = in_status(status)
    before = codes(message.id)

    response = cancel(api, message, django_capture_on_commit_callbacks)

    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["id"], body["status"]) == ("cancel_too_late", message.id, status)
    message.refresh_from_db()
    assert message.status == status
    assert codes(message.id) == [*before, "FAILED_CANCELLATION"]


def test_failed_cancellation_is_listed_among_the_message_events(api, in_status, django_capture_on_commit_callbacks):
    message = in_status(Status.SENT)
    cancel(api, message, django_capture_on_commit_callbacks)

    events = api.get(f"/api/v1/messages/{message.id}").json()["events"]

    assert events[-1]["statusCode"] == "FAILED_CANCELLATION"
    assert "errorCode" not in events[-1]


def test_a_refused_cancel_leaves_the_dormant_fallback_alone(api, in_status, django_capture_on_commit_callbacks):
    message = in_status(Status.SENT, fallbacks=1)

    cancel(api, message, django_capture_on_commit_callbacks)

    assert chain_of(message)[0].status == Status.PENDING


def test_cancelling_twice_changes_nothing_the_second_time(api, in_status, django_capture_on_commit_callbacks):
    message = in_status(Status.QUEUED)
    cancel(api, message, django_capture_on_commit_callbacks)

    again = cancel(api, message, django_capture_on_commit_callbacks)

    assert again.status_code == 409
    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    assert codes(message.id).count("CANCELLED") == 1


def test_another_applications_message_is_not_found(other_api, in_status, django_capture_on_commit_callbacks):
    message = in_status(Status.QUEUED)

    response = cancel(other_api, message, django_capture_on_commit_callbacks)

    assert response.status_code == 404
    message.refresh_from_db()
    assert message.status == Status.QUEUED
    assert codes(message.id) == ["QUEUED"]


def test_an_unknown_message_is_not_found(api, db):
    assert api.post(f"/api/v1/messages/{'0' * 32}/cancel").status_code == 404


# After the cancel, the queued work finds nothing to do


def test_a_cancelled_message_is_never_handed_to_the_provider_when_its_send_task_runs(
        api, in_status, handed_over, django_capture_on_commit_callbacks):
    message = in_status(Status.QUEUED)
    cancel(api, message, django_capture_on_commit_callbacks)

    sent = sending.send_attempts([message.id])

    assert sent == 0
    assert handed_over == []
    assert "SENT" not in codes(message.id)


def test_a_cancelled_retry_is_never_handed_to_the_provider_when_its_countdown_fires(
        api, in_status, handed_over, django_capture_on_commit_callbacks):
    message = in_status(Status.DELIVERY_RETRIED)
    handed_over.clear()
    cancel(api, message, django_capture_on_commit_callbacks)

    sending.send_attempts([message.id], now=timezone.now() + timedelta(hours=1))

    assert handed_over == []


def test_a_cancelled_scheduled_message_is_not_released_when_its_time_comes(
        api, in_status, published, django_capture_on_commit_callbacks):
    message = in_status(Status.SCHEDULED)
    cancel(api, message, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.start_scheduled([message.id])
        sweeper.sweep_due_work(now=message.send_at + timedelta(hours=1))

    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    assert published.sent_ids() == []


def test_a_message_claimed_by_a_worker_cannot_be_cancelled_and_is_then_sent(
        api, in_status, handed_over, django_capture_on_commit_callbacks):
    message = in_status(Status.QUEUED)
    now = timezone.now()
    claims.claim([message.id], now)  # the worker is about to call the provider

    response = cancel(api, message, django_capture_on_commit_callbacks)
    sending.record_sent([Sent(Message.objects.get(id=message.id), 1, "ref")],
                        {message.channel_id: SimulatorProvider(message.channel)}, now)

    assert response.status_code == 409
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert codes(message.id) == ["QUEUED", "FAILED_CANCELLATION", "SENT"]


# Races on PostgreSQL


def wait_until_waiting(count: int) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while backends_waiting_for_a_lock() < count:
        assert time.monotonic() < deadline, "the contenders never reached the locked row"
        time.sleep(0.005)


class Contender(threading.Thread):
    """Runs `fn` on its own connection; keeps its result or its error for the test thread."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            connections.close_all()

    def outcome(self):
        self.join(WAIT_LIMIT)
        assert not self.is_alive(), "a contender hung"
        assert self.error is None, self.error
        return self.result


def holding(fn, held: threading.Event, release: threading.Event):
    """`fn` inside a transaction that stays open (its row locks held) until `release`."""

    def run():
        with transaction.atomic():
            result = fn()
            held.set()
            release.wait(WAIT_LIMIT)
        return result

    return run


@pytest.fixture
def committed(submit):
    def committed() -> Message:
        return submit(fallbacks=1)

    return committed


@on_postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_cancel_waiting_on_a_claim_in_progress_is_refused_and_the_send_goes_ahead(
        committed, handed_over, monkeypatch):
    message = committed()
    held, release = threading.Event(), threading.Event()
    real_claim = sending.claim
    # The worker's claim UPDATE is made but not yet committed when the cancel arrives.
    monkeypatch.setattr(sending, "claim", lambda ids, now: holding(lambda: real_claim(ids, now), held, release)())

    sender = Contender(lambda: sending.send_attempts([message.id]))
    sender.start()
    assert held.wait(WAIT_LIMIT)
    canceller = Contender(lambda: cancellation.message_cancel(message=message))
    canceller.start()
    wait_until_waiting(1)
    release.set()

    assert canceller.outcome() is False
    assert sender.outcome() == 1
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert handed_over == [message.id]
    assert "FAILED_CANCELLATION" in codes(message.id)
    assert chain_of(message)[0].status == Status.PENDING


@on_postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_send_during_a_cancel_in_progress_claims_nothing_without_waiting(committed, handed_over):
    message = committed()
    held, release = threading.Event(), threading.Event()

    canceller = Contender(holding(lambda: cancellation.message_cancel(message=message), held, release))
    canceller.start()
    assert held.wait(WAIT_LIMIT)
    sender = Contender(lambda: sending.send_attempts([message.id]))
    sender.start()
    sent = sender.outcome()  # claims skip rows another transaction holds
    release.set()

    assert canceller.outcome() is True
    assert sent == 0
    assert handed_over == []
    message.refresh_from_db()
    assert message.status == Status.CANCELLED
    assert chain_of(message)[0].status == Status.CANCELLED


@on_postgres_only
@pytest.mark.django_db(transaction=True)
def test_cancels_racing_a_send_never_leave_a_message_both_cancelled_and_sent(committed, handed_over):
    messages = [committed() for _ in range(6)]
    ids = [m.id for m in messages]
    start = threading.Barrier(1 + len(messages))

    def at_once(fn):
        def run():
            start.wait(WAIT_LIMIT)
            return fn()
        return run

    sender = Contender(at_once(lambda: sending.send_attempts(ids)))
    cancellers = {m.id: Contender(at_once(lambda m=m: cancellation.message_cancel(message=m))) for m in messages}
    for contender in [sender, *cancellers.values()]:
        contender.start()

    sender.outcome()
    for message in messages:
        cancelled = cancellers[message.id].outcome()
        message.refresh_from_db()
        was_sent = message.id in handed_over
        assert cancelled != was_sent, message.id  # exactly one of them won
        assert message.status == (Status.CANCELLED if cancelled else Status.SENT)
        assert codes(message.id).count("SENT") == (0 if cancelled else 1)
        assert ("FAILED_CANCELLATION" in codes(message.id)) == was_sent
    assert len(handed_over) == len(set(handed_over))
