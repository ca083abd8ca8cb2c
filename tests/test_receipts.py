"""comms.receipts: late, repeated, backwards or unknown receipts are recorded, never a crash."""

import pytest
from django.conf import settings

from comms import receipts
from comms.models import Message, MessageEvent, Receipt
from comms.providers import Sent
from comms.providers.simulator import Behaviour, SimulatorProvider
from comms.status import Status

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"


@pytest.fixture
def make_message(application, channel):
    def make(status: Status, *, attempts: int = 1, receiver: str = PHONE) -> Message:
        return Message.objects.create(
            application=application, channel=channel, receiver=receiver, content={"text": "Hello"},
            status=status, attempts=attempts, event_seq=2,
        )

    return make


def simulated(channel, message: Message, attempt: int, behaviour: Behaviour | None = None) -> dict:
    """The receipt the simulator would send for this attempt."""
    sent = Sent(message, attempt, f"sim-{message.id}-{attempt}")
    return SimulatorProvider(channel).receipt_for(sent, behaviour or Behaviour.of(message.receiver))


def said(message: Message, attempt: int, *words: str) -> dict:
    return {"messageId": message.id, "attempt": attempt, "events": [{"event": w} for w in words]}


def codes(message: Message) -> list[str]:
    return list(message.events.order_by("sequence").values_list("status_code", flat=True))


def fresh(message: Message) -> Message:
    message.refresh_from_db()
    return message


def test_delivery_receipt_is_applied(channel, make_message):
    message = make_message(Status.SENT)

    receipt = receipts.receipt_process(channel=channel, payload=simulated(channel, message, 1))

    assert receipt.outcome == Receipt.Outcome.APPLIED
    assert receipt.message == message
    assert fresh(message).status == Status.DELIVERED


def test_duplicate_receipt_is_recorded_as_ignored(channel, make_message):
    message = make_message(Status.SENT)
    payload = simulated(channel, message, 1)
    receipts.receipt_process(channel=channel, payload=payload)

    duplicate = receipts.receipt_process(channel=channel, payload=payload)

    assert duplicate.outcome == Receipt.Outcome.IGNORED
    assert Receipt.objects.filter(message=message).count() == 2


def test_duplicate_receipt_changes_nothing(channel, make_message):
    message = make_message(Status.SENT)
    payload = simulated(channel, message, 1)
    receipts.receipt_process(channel=channel, payload=payload)

    receipts.receipt_process(channel=channel, payload=payload)

    message = fresh(message)
    assert (message.status, message.event_seq) == (Status.DELIVERED, 3)
    assert codes(message) == ["DELIVERED"]


def test_duplicate_failure_receipt_does_not_use_another_attempt(channel, make_message, published,
                                                                django_capture_on_commit_callbacks):
    message = make_message(Status.SENT, receiver=f"{PHONE}#fail")
    payload = simulated(channel, message, 1)
    with django_capture_on_commit_callbacks(execute=True):
        receipts.receipt_process(channel=channel, payload=payload)

    with django_capture_on_commit_callbacks(execute=True):
        duplicate = receipts.receipt_process(channel=channel, payload=payload)

    assert duplicate.outcome == Receipt.Outcome.IGNORED
    assert codes(message) == ["DELIVERY_RETRIED"]
    assert len(published.of("send_messages")) == 1


def test_duplicate_within_one_batch_is_recorded_as_ignored(channel, make_message):
    message = make_message(Status.SENT)
    payload = simulated(channel, message, 1)

    first, second = receipts.receipts_process(channel=channel, payloads=[payload, payload])

    assert [first.outcome, second.outcome] == [Receipt.Outcome.APPLIED, Receipt.Outcome.IGNORED]


def test_delivery_receipt_of_an_earlier_attempt_does_not_deliver_a_later_one(channel, make_message):
    message = make_message(Status.SENT, attempts=2)

    receipt = receipts.receipt_process(channel=channel, payload=simulated(channel, message, 1, Behaviour()))

    assert receipt.outcome == Receipt.Outcome.IGNORED
    assert fresh(message).status == Status.SENT
    assert codes(message) == []


def test_failure_receipt_of_an_earlier_attempt_does_not_fail_a_later_one(channel, make_message):
    message = make_message(Status.SENT, attempts=2)

    receipt = receipts.receipt_process(
        channel=channel, payload=simulated(channel, message, 1, Behaviour(fail_first=1)))

    assert receipt.outcome == Receipt.Outcome.IGNORED
    assert fresh(message).status == Status.SENT


def test_failure_receipt_naming_attempt_zero_is_unreadable_and_fails_nothing(channel, make_message):
    message = make_message(Status.SENT, attempts=1)

    with pytest.raises(ValueError, match="attempt 0"):
        receipts.receipt_process(channel=channel, payload=said(message, 0, "undelivered"))

    assert fresh(message).status == Status.SENT


def test_receipt_for_an_unknown_message_is_recorded_as_such(channel):
    payload = {"messageId": "0" * 32, "attempt": 1, "events": [{"event": "delivered"}]}

    receipt = receipts.receipt_process(channel=channel, payload=payload)

    assert receipt.outcome == Receipt.Outcome.UNKNOWN_MESSAGE
    assert receipt.message is None
    assert Receipt.objects.get().payload == payload


def test_receipt_for_a_message_of_another_channel_is_unknown(channel, backup_channel, make_message):
    message = make_message(Status.SENT)

    receipt = receipts.receipt_process(channel=backup_channel, payload=simulated(channel, message, 1))

    assert receipt.outcome == Receipt.Outcome.UNKNOWN_MESSAGE
    assert fresh(message).status == Status.SENT


@pytest.mark.parametrize(
    "payload",
    [
        {"attempt": 1, "events": [{"event": "delivered"}]},
        {"messageId": "0" * 32, "attempt": 1, "events": [{"event": "bounced"}]},
        {"messageId": "0" * 32, "attempt": 1, "events": []},
    ],
    ids=["no-message-id", "unknown-word", "no-events"],
)
def test_malformed_receipt_raises_value_error_and_records_nothing(channel, payload):
    with pytest.raises(ValueError):
        receipts.receipt_process(channel=channel, payload=payload)

    assert not Receipt.objects.exists()


def test_read_before_delivered_moves_to_read(channel, make_message):
    message = make_message(Status.SENT)

    receipt = receipts.receipt_process(channel=channel, payload=said(message, 1, "read"))

    assert receipt.outcome == Receipt.Outcome.APPLIED
    assert fresh(message).status == Status.READ


def test_late_delivered_after_read_is_ignored(channel, make_message):
    message = make_message(Status.SENT)
    receipts.receipt_process(channel=channel, payload=said(message, 1, "read"))

    late = receipts.receipt_process(channel=channel, payload=said(message, 1, "delivered"))

    assert late.outcome == Receipt.Outcome.IGNORED
    assert fresh(message).status == Status.READ
    assert codes(message) == ["READ"]


def test_receipt_records_which_events_applied(channel, make_message):
    message = make_message(Status.SENT, receiver=f"{PHONE}#delete")

    receipt = receipts.receipt_process(channel=channel, payload=simulated(channel, message, 1))

    assert receipt.detail == "DELIVERED, READ, DELETED"


def test_receipt_that_beats_its_sent_record_is_deferred(channel, make_message, published,
                                                        django_capture_on_commit_callbacks):
    message = make_message(Status.QUEUED, attempts=0)
    payload = said(message, 1, "delivered")

    with django_capture_on_commit_callbacks(execute=True):
        receipt = receipts.receipt_process(channel=channel, payload=payload)

    assert receipt.outcome == Receipt.Outcome.DEFERRED
    assert published.of("process_receipts") == [
        ((channel.name, [payload], 1), {"countdown": settings.RELAY_RECEIPT_RETRY_DELAY})]
    assert fresh(message).status == Status.QUEUED


def test_early_receipt_is_deferred_no_more_than_the_retry_limit(channel, make_message, published,
                                                                django_capture_on_commit_callbacks):
    message = make_message(Status.QUEUED, attempts=0)

    with django_capture_on_commit_callbacks(execute=True):
        receipt = receipts.receipt_process(channel=channel, payload=said(message, 1, "delivered"),
                                           tries=settings.RELAY_RECEIPT_RETRIES)

    assert receipt.outcome == Receipt.Outcome.IGNORED
    assert published.of("process_receipts") == []


def test_batch_skips_an_unreadable_receipt_and_applies_the_rest(channel, make_message):
    message = make_message(Status.SENT)

    done = receipts.receipts_process(
        channel=channel, payloads=[{"messageId": message.id}, simulated(channel, message, 1)])

    assert [r.outcome for r in done] == [Receipt.Outcome.APPLIED]
    assert fresh(message).status == Status.DELIVERED


def test_batch_applies_each_receipt_to_its_own_message(channel, make_message):
    first, second = make_message(Status.SENT), make_message(Status.SENT, receiver=f"{PHONE}#read")

    receipts.receipts_process(
        channel=channel, payloads=[simulated(channel, first, 1), simulated(channel, second, 1)])

    assert (fresh(first).status, fresh(second).status) == (Status.DELIVERED, Status.READ)
    assert MessageEvent.objects.filter(status_code="DELIVERED").count() == 2
