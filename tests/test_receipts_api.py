"""POST /api/v1/receipts/{channelName}: no API key; the channel's provider authenticates the
body (`X-Relay-Signature: sha256=<hex HMAC-SHA256>` keyed by config.receiptSecret), and the
answer says what became of the receipt. These go through HTTP; tests/test_receipts.py covers
the service underneath.
"""

import json

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from comms import sending, tasks
from comms.models import Message, MessageEvent, Receipt
from comms.providers.base import HmacReceipts
from comms.status import Status

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"


@pytest.fixture
def client():
    # Answer 500s as responses, so a crash is an assertion failure rather than an exception.
    return APIClient(raise_request_exception=False)


@pytest.fixture
def post(client, channel, django_capture_on_commit_callbacks):
    """POST raw bytes to a channel's receipt URL, signed with `secret` (the channel's by default)."""

    def post(body: bytes | dict, *, to=None, secret: str | None = None, signature: str | None = None):
        to = to or channel
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        if signature is None:
            signature = HmacReceipts.sign(secret or to.config["receiptSecret"], raw)
        headers = {"X-Relay-Signature": signature} if signature else {}
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(f"/api/v1/receipts/{to.name}", data=raw, content_type="application/json",
                               headers=headers)

    return post


@pytest.fixture
def make_message(application, channel):
    def make(status: Status, *, attempts: int = 1, on=None) -> Message:
        return Message.objects.create(application=application, channel=on or channel, receiver=PHONE,
                                      content={"text": "Hi"}, status=status, attempts=attempts, event_seq=2)

    return make


def said(message: Message, *words: str, attempt: int = 1) -> dict:
    """A simulator receipt."""
    return {"messageId": message.id, "attempt": attempt, "events": [{"event": w} for w in words]}


def status_of(message: Message) -> str:
    return Message.objects.values_list("status", flat=True).get(id=message.id)


def codes(message: Message) -> list[str]:
    return list(MessageEvent.objects.filter(message=message).order_by("sequence")
                .values_list("status_code", flat=True))


# Authentication


def test_a_correctly_signed_receipt_is_applied(post, make_message):
    message = make_message(Status.SENT)

    response = post(said(message, "delivered"))

    assert response.status_code == 200
    assert response.json()["outcome"] == "applied"
    assert status_of(message) == Status.DELIVERED
    assert Receipt.objects.get().outcome == Receipt.Outcome.APPLIED


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=" + "0" * 64, "not-even-the-format"],
    ids=["missing", "wrong-digest", "garbage"],
)
def test_a_receipt_without_a_valid_signature_is_refused_and_changes_nothing(post, make_message, signature):
    message = make_message(Status.SENT)

    response = post(said(message, "delivered"), signature=signature)

    assert response.status_code == 401
    assert response.json()["code"] == "bad_signature"
    assert status_of(message) == Status.SENT
    assert not Receipt.objects.exists()


def test_a_receipt_signed_with_another_secret_is_refused(post, make_message, backup_channel):
    message = make_message(Status.SENT)

    response = post(said(message, "delivered"), secret=backup_channel.config["receiptSecret"])

    assert response.status_code == 401
    assert status_of(message) == Status.SENT


def test_a_body_changed_after_signing_is_refused(client, channel, make_message):
    message = make_message(Status.SENT)
    signed = json.dumps(said(message, "undelivered")).encode()

    response = client.post(f"/api/v1/receipts/{channel.name}", data=json.dumps(said(message, "delivered")),
                           content_type="application/json",
                           headers={"X-Relay-Signature": HmacReceipts.sign(channel.config["receiptSecret"], signed)})

    assert response.status_code == 401
    assert status_of(message) == Status.SENT


def test_a_receipt_for_an_unknown_channel_is_not_found(client, db):
    response = client.post("/api/v1/receipts/nope", data=b"{}", content_type="application/json")

    assert response.status_code == 404
    assert response.json()["code"] == "unknown_channel"
    assert not Receipt.objects.exists()


def test_an_api_key_is_not_a_receipts_credential(api, channel, make_message):
    message = make_message(Status.SENT)

    response = api.post(f"/api/v1/receipts/{channel.name}", said(message, "delivered"), format="json")

    assert response.status_code == 401
    assert status_of(message) == Status.SENT


# Malformed bodies


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'"delivered"',
        b"null",
        b"{}",
        b'{"messageId": "x", "attempt": 1}',
        b'{"messageId": "x", "attempt": "one", "events": [{"event": "delivered"}]}',
        b'{"messageId": "x", "attempt": 1, "events": "delivered"}',
        b'{"messageId": "x", "attempt": 1, "events": [{"event": "bounced"}]}',
        b'{"messageId": "x", "attempt": 1, "events": []}',
    ],
    ids=["not-json", "not-utf8", "list", "string", "null", "empty", "no-events", "bad-attempt",
         "events-not-a-list", "unknown-word", "no-event"],
)
def test_a_malformed_receipt_is_a_400_and_records_nothing(post, make_message, body):
    make_message(Status.SENT)

    response = post(body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_receipt"
    assert not Receipt.objects.exists()


def test_a_deeply_nested_receipt_is_a_400_not_a_500(post, db):
    response = post(b"[" * 100_000 + b"]" * 100_000)

    assert response.status_code == 400


# What becomes of a receipt


def test_a_repeated_receipt_is_answered_ignored_and_changes_nothing(post, make_message):
    message = make_message(Status.SENT)
    post(said(message, "delivered"))

    again = post(said(message, "delivered"))

    assert again.status_code == 200
    assert again.json()["outcome"] == "ignored"
    assert codes(message) == ["DELIVERED"]
    assert [r.outcome for r in Receipt.objects.order_by("id")] == ["applied", "ignored"]


@pytest.mark.parametrize(
    ("first", "late", "kept"),
    [
        (["delivered", "read"], ["delivered"], Status.READ),
        (["delivered", "read", "deleted"], ["read"], Status.DELETED),
        (["delivered", "read", "deleted"], ["delivered"], Status.DELETED),
        (["delivered", "clicked"], ["read"], Status.INTERACTED),
    ],
    ids=["delivered-after-read", "read-after-deleted", "delivered-after-deleted", "read-after-clicked"],
)
def test_feedback_never_moves_a_message_backwards(post, make_message, first, late, kept):
    message = make_message(Status.SENT)
    post(said(message, *first))
    before = codes(message)

    response = post(said(message, *late))

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert status_of(message) == kept
    assert codes(message) == before


def test_a_receipt_for_an_unknown_message_is_answered_clearly_and_recorded(post, db):
    response = post({"messageId": "0" * 32, "attempt": 1, "events": [{"event": "delivered"}]})

    assert response.status_code == 404
    assert response.json()["code"] == "unknown_message"
    assert Receipt.objects.get().outcome == Receipt.Outcome.UNKNOWN_MESSAGE


def test_a_receipt_naming_another_channels_message_is_unknown_there(post, make_message, backup_channel):
    message = make_message(Status.SENT, on=backup_channel)

    response = post(said(message, "delivered"))

    assert response.status_code == 404
    assert status_of(message) == Status.SENT


# A receipt that beats the SENT record


def test_an_early_receipt_is_accepted_and_retried_shortly(post, make_message, published, channel):
    message = make_message(Status.QUEUED, attempts=0)
    payload = said(message, "delivered")

    response = post(payload)

    assert response.status_code == 202
    assert response.json()["outcome"] == "deferred"
    assert status_of(message) == Status.QUEUED
    assert published.of("process_receipts") == [
        ((channel.name, [payload], 1), {"countdown": settings.RELAY_RECEIPT_RETRY_DELAY})]


def test_an_early_receipt_is_applied_once_its_attempt_is_recorded(post, make_message, published,
                                                                  django_capture_on_commit_callbacks):
    message = make_message(Status.QUEUED, attempts=0)
    Message.objects.filter(id=message.id).update(due_at=message.created_at)
    post(said(message, "read"))
    [(retry_args, _)] = published.of("process_receipts")
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([message.id])

    with django_capture_on_commit_callbacks(execute=True):
        tasks.process_receipts(*retry_args)

    assert status_of(message) == Status.READ
    assert [r.outcome for r in Receipt.objects.order_by("id")] == ["deferred", "applied"]
