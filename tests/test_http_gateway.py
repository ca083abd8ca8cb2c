"""The `http` channel type: each attempt POSTed as JSON to the operator's gateway, answers and
failures mapped onto our error codes (temporary or permanent), and signed receipts back.

The gateway is a real local HTTP server in a thread (tests/receiver.py); nothing is mocked
between the provider and the socket.
"""

import json

import pytest
from rest_framework.test import APIClient

from comms import lifecycle, receipts, sending
from comms.accounts import channel_upsert
from comms.lifecycle import Change, Only
from comms.models import Message, MessageEvent, Receipt
from comms.providers import ConfigError, ProviderError, provider_for
from comms.providers import http_gateway as gateway
from comms.providers.base import HmacReceipts
from comms.status import ErrorCode, Status
from tests.receiver import Answer, closed_port

pytestmark = pytest.mark.django_db

E = ErrorCode
PHONE = "+447700900123"


def answer(status: int = 200, body: dict | list | str | None = None, **kwargs) -> Answer:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode() if body is not None else b""
    return Answer(status, {"Content-Type": "application/json"}, raw, **kwargs)


@pytest.fixture
def http_channel(receiver):
    return channel_upsert(name="gateway", type="http", max_attempts=3, retry_delay=10,
                          config={"url": receiver.url, "headers": {"Authorization": "Bearer gw-key"}})[0]


@pytest.fixture
def make_message(application, http_channel):
    def make(status: Status = Status.QUEUED, *, attempts: int = 0, provider_ref: str = "", **fields) -> Message:
        message = Message.objects.create(
            application=application, channel=http_channel, sender="Relay", receiver=PHONE,
            content={"text": "Hi", "subject": "S"}, status=status, attempts=attempts, event_seq=1,
            provider_ref=provider_ref, **fields)
        Message.objects.filter(id=message.id).update(due_at=message.created_at)
        return message

    return make


def send(channel, message: Message, attempt: int = 1) -> str:
    return provider_for(channel).send(message, attempt=attempt)


def failure(channel, message: Message) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        send(channel, message)
    return caught.value


def run_attempts(django_capture_on_commit_callbacks, *messages: Message) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        sending.send_attempts([m.id for m in messages])


def fresh(message: Message) -> Message:
    message.refresh_from_db()
    return message


# The request


def test_each_attempt_is_posted_as_the_documented_json(receiver, http_channel, make_message):
    message = make_message()

    send(http_channel, message, attempt=2)

    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert json.loads(request.body) == {
        "id": message.id, "attempt": 2, "idempotencyKey": f"{message.id}-2", "sender": "Relay",
        "receiver": PHONE, "content": {"text": "Hi", "subject": "S"},
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer gw-key"  # the channel's configured headers


# Success


def test_a_2xx_answer_with_an_id_gives_the_providers_reference(receiver, http_channel, make_message):
    receiver.answer(answer(202, {"id": "gw-123"}))

    assert send(http_channel, make_message()) == "gw-123"


@pytest.mark.parametrize("body", [None, "not json", [1, 2], {"status": "ok"}],
                         ids=["empty", "not-json", "a-list", "no-id"])
def test_a_2xx_answer_without_an_id_falls_back_to_our_message_id(receiver, http_channel, make_message, body):
    message = make_message()
    receiver.answer(answer(200, body))

    assert send(http_channel, message) == message.id


def test_a_successful_attempt_is_recorded_sent_with_the_gateways_reference(
        receiver, http_channel, make_message, django_capture_on_commit_callbacks):
    message = make_message()
    receiver.answer(answer(200, {"id": "gw-9"}))

    run_attempts(django_capture_on_commit_callbacks, message)

    message = fresh(message)
    assert (message.status, message.attempts, message.provider_ref) == (Status.SENT, 1, "gw-9")


# Failures


@pytest.mark.parametrize(
    ("code", "expected", "permanent"),
    [
        ("invalid_receiver", E.INVALID_RECEIVER, True),
        ("unreachable", E.RECEIVER_UNREACHABLE, False),
        ("rejected", E.REJECTED_BY_CHANNEL, True),
        ("content_rejected", E.CONTENT_REJECTED, True),
        ("rate_limited", E.RATE_LIMITED, False),
        ("timeout", E.CHANNEL_TIMEOUT, False),
        ("unavailable", E.CHANNEL_UNAVAILABLE, False),
    ],
)
def test_the_gateways_error_code_is_mapped_by_its_table(receiver, http_channel, make_message, code, expected,
                                                        permanent):
    # A 500 status says "temporary": the body's code must win over it.
    receiver.answer(answer(500, {"error": {"code": code, "message": "said the gateway"}}))

    error = failure(http_channel, make_message())

    assert (error.code, error.permanent, error.raw_code) == (expected, permanent, code)
    assert error.message == "said the gateway"


@pytest.mark.parametrize(
    ("status", "expected", "permanent"),
    [
        (400, E.REJECTED_BY_CHANNEL, True),
        (401, E.CHANNEL_UNAVAILABLE, False),
        (403, E.CHANNEL_UNAVAILABLE, False),
        (404, E.INVALID_RECEIVER, True),
        (408, E.CHANNEL_TIMEOUT, False),
        (413, E.CONTENT_REJECTED, True),
        (422, E.INVALID_RECEIVER, True),
        (429, E.RATE_LIMITED, False),
        (500, E.CHANNEL_UNKNOWN_ERROR, False),
        (502, E.CHANNEL_UNAVAILABLE, False),
        (503, E.CHANNEL_UNAVAILABLE, False),
        (504, E.CHANNEL_TIMEOUT, False),
    ],
)
def test_without_a_code_the_http_status_is_mapped(receiver, http_channel, make_message, status, expected,
                                                  permanent):
    receiver.answer(answer(status, None))

    error = failure(http_channel, make_message())

    assert (error.code, error.permanent, error.raw_code) == (expected, permanent, str(status))


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_gateway_server_error_is_temporary(receiver, http_channel, make_message, status):
    receiver.answer(answer(status, "<html>Bad gateway</html>"))

    assert failure(http_channel, make_message()).permanent is False


def test_an_unknown_gateway_code_falls_back_to_the_status_but_keeps_the_raw_code(receiver, http_channel,
                                                                                make_message):
    receiver.answer(answer(404, {"error": {"code": "no_such_number"}}))

    error = failure(http_channel, make_message())

    assert (error.code, error.permanent, error.raw_code) == (E.INVALID_RECEIVER, True, "no_such_number")


def test_a_redirect_is_not_followed_and_is_a_temporary_failure(receiver, http_channel, make_message):
    receiver.answer(Answer(302, {"Location": "/elsewhere"}))

    error = failure(http_channel, make_message())

    assert error.permanent is False
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_a_gateway_that_does_not_answer_in_time_is_a_temporary_timeout(receiver, http_channel, make_message,
                                                                       monkeypatch):
    monkeypatch.setattr(gateway, "TIMEOUT", (2, 0.2))
    receiver.answer(Answer(200, hold=30))  # the hold ends when the receiver stops

    error = failure(http_channel, make_message())

    assert (error.code, error.permanent, error.raw_code) == (E.CHANNEL_TIMEOUT, False, "timeout")


def test_a_refused_connection_is_a_temporary_unavailability(http_channel, make_message):
    channel_upsert(name=http_channel.name, config={**http_channel.config,
                                                   "url": f"http://127.0.0.1:{closed_port()}/hook"})
    http_channel.refresh_from_db()

    error = failure(http_channel, make_message())

    assert (error.code, error.permanent) == (E.CHANNEL_UNAVAILABLE, False)


def test_a_permanent_failure_fails_the_message_at_once(receiver, http_channel, make_message,
                                                       django_capture_on_commit_callbacks):
    message = make_message()
    receiver.answer(answer(422, {"error": {"code": "invalid_receiver"}}))

    run_attempts(django_capture_on_commit_callbacks, message)

    assert fresh(message).status == Status.DELIVERY_FAILED
    event = MessageEvent.objects.get(message=message, status_code="DELIVERY_FAILED")
    assert (event.error_code, event.raw_code) == (E.INVALID_RECEIVER, "invalid_receiver")


def test_a_temporary_failure_is_retried(receiver, http_channel, make_message, django_capture_on_commit_callbacks):
    message = make_message()
    receiver.answer(answer(429, None))

    run_attempts(django_capture_on_commit_callbacks, message)

    message = fresh(message)
    assert (message.status, message.attempts) == (Status.DELIVERY_RETRIED, 1)


def test_an_overlong_gateway_error_code_neither_crashes_the_chunk_nor_loses_its_sent_attempts(
        receiver, http_channel, make_message, django_capture_on_commit_callbacks):
    fine, refused = make_message(), make_message()
    receiver.answer(answer(200, {"id": "ok"}), answer(400, {"error": {"code": "x" * 150}}))

    run_attempts(django_capture_on_commit_callbacks, fine, refused)

    assert fresh(fine).status == Status.SENT
    assert fresh(refused).status == Status.DELIVERY_FAILED


def test_an_overlong_gateway_reference_does_not_lose_the_chunks_sent_attempts(
        receiver, http_channel, make_message, django_capture_on_commit_callbacks):
    first, second = make_message(), make_message()
    receiver.answer(answer(200, {"id": "short"}), answer(200, {"id": "r" * 300}))

    run_attempts(django_capture_on_commit_callbacks, first, second)

    assert [fresh(first).status, fresh(second).status] == [Status.SENT, Status.SENT]


# Configuration


@pytest.mark.parametrize(
    "config",
    [{}, {"url": "ftp://example.com"}, {"url": "https://example.com", "headers": {"X": 1}},
     {"url": "https://example.com", "retries": 3}],
    ids=["no-url", "not-http", "header-not-a-string", "unknown-setting"],
)
def test_an_invalid_config_is_refused(config):
    with pytest.raises(ConfigError):
        gateway.HttpGatewayProvider.clean_config(config)


# Receipts


@pytest.fixture
def post_receipt(http_channel, django_capture_on_commit_callbacks):
    client = APIClient(raise_request_exception=False)

    def post(body: dict, *, secret: str | None = None):
        raw = json.dumps(body).encode()
        signature = HmacReceipts.sign(secret or http_channel.config["receiptSecret"], raw)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(f"/api/v1/receipts/{http_channel.name}", data=raw,
                               content_type="application/json", headers={"X-Relay-Signature": signature})

    return post


@pytest.mark.parametrize(("word", "kind"), sorted(gateway.RECEIPT_KINDS.items()))
def test_each_receipt_status_is_mapped_to_our_kind(http_channel, word, kind):
    [event] = provider_for(http_channel).parse_receipt({"messageId": "m1", "status": word})

    assert (event.kind, event.message_id) == (kind, "m1")


def test_a_bulk_receipt_gives_one_event_per_item(http_channel):
    events = provider_for(http_channel).parse_receipt({"events": [
        {"ref": "gw-1", "attempt": 2, "status": "read", "env": {"os.name": "ios"}},
        {"messageId": "m2", "status": "clicked", "link": "https://example.com/x"},
    ]})

    assert [(e.kind, e.provider_ref, e.message_id, e.attempt) for e in events] == [
        ("READ", "gw-1", "", 2), ("INTERACTED", "", "m2", None)]
    assert (events[0].env, events[1].link) == ({"os.name": "ios"}, "https://example.com/x")


@pytest.mark.parametrize(
    ("error", "expected", "permanent"),
    [(None, E.CHANNEL_UNKNOWN_ERROR, False), ({"code": "rate_limited"}, E.RATE_LIMITED, False),
     ({"code": "invalid_receiver"}, E.INVALID_RECEIVER, True)],
    ids=["no-error", "temporary", "permanent"],
)
def test_a_failed_receipt_maps_its_error(http_channel, error, expected, permanent):
    [event] = provider_for(http_channel).parse_receipt({"messageId": "m1", "status": "failed", "error": error})

    assert (event.error.code, event.error.permanent) == (expected, permanent)


def test_a_signed_receipt_naming_the_gateways_reference_delivers_the_message(post_receipt, make_message):
    message = make_message(Status.SENT, attempts=1, provider_ref="gw-7")

    response = post_receipt({"ref": "gw-7", "status": "delivered"})

    assert response.status_code == 200
    assert fresh(message).status == Status.DELIVERED


def test_a_permanent_failure_receipt_fails_the_message_without_a_retry(post_receipt, make_message, published):
    message = make_message(Status.SENT, attempts=1)

    post_receipt({"messageId": message.id, "status": "failed", "error": {"code": "invalid_receiver"}})

    assert fresh(message).status == Status.DELIVERY_FAILED
    assert published.sent_ids() == []


def test_a_receipt_without_an_attempt_for_a_queued_message_is_deferred(post_receipt, make_message, published):
    message = make_message(Status.QUEUED)

    response = post_receipt({"messageId": message.id, "status": "delivered"})

    assert (response.status_code, response.json()["outcome"]) == (202, "deferred")
    assert len(published.of("process_receipts")) == 1


@pytest.mark.parametrize(
    "body",
    [{"messageId": "m1"}, {"messageId": "m1", "status": "bounced"}, {"status": "delivered"},
     {"messageId": "m1", "status": "delivered", "attempt": 0}, {"events": []}, {"events": ["delivered"]},
     {"messageId": "m1", "status": ["delivered"]}],
    ids=["no-status", "unknown-status", "no-message", "attempt-zero", "no-events", "event-not-an-object",
         "status-not-a-string"],
)
def test_a_malformed_gateway_receipt_is_a_400(post_receipt, body):
    response = post_receipt(body)

    assert response.status_code == 400
    assert not Receipt.objects.exists()


def test_an_overlong_link_in_a_receipt_is_not_a_500(post_receipt, make_message):
    message = make_message(Status.DELIVERED, attempts=1)

    response = post_receipt({"messageId": message.id, "status": "clicked",
                             "link": "https://example.com/" + "a" * 3000})

    assert response.status_code in (200, 400)


def test_an_overlong_error_code_in_a_receipt_is_not_a_500(post_receipt, make_message):
    message = make_message(Status.SENT, attempts=1)

    response = post_receipt({"messageId": message.id, "status": "failed", "error": {"code": "x" * 150}})

    assert response.status_code in (200, 400)
    assert fresh(message).status in (Status.SENT, Status.DELIVERY_RETRIED)


def test_a_bulk_receipt_applies_each_event_to_the_message_it_names(post_receipt, make_message):
    first, second = make_message(Status.SENT, attempts=1), make_message(Status.SENT, attempts=1)

    post_receipt({"events": [{"messageId": first.id, "status": "delivered"},
                             {"messageId": second.id, "status": "clicked", "link": "https://example.com/x"}]})

    assert fresh(first).status == Status.DELIVERED
    assert fresh(second).status == Status.INTERACTED


def test_only_the_early_part_of_a_bulk_receipt_is_retried(post_receipt, make_message, published, http_channel):
    # X's failure applies now; Y's delivery beats Y's SENT record and comes back later. Were
    # the whole payload retried, X's attempt-less failure would fail X's next attempt too.
    x, y = make_message(Status.SENT, attempts=1), make_message(Status.QUEUED)

    response = post_receipt({"events": [{"messageId": x.id, "status": "failed", "error": {"code": "unreachable"}},
                                        {"messageId": y.id, "status": "delivered"}]})

    assert (response.status_code, fresh(x).status) == (202, Status.DELIVERY_RETRIED)
    (channel_name, payloads, tries), _ = published.of("process_receipts")[0]
    assert payloads == [{"messageId": y.id, "status": "delivered"}]
    sent = Change(Status.SENT, count_attempt=True)
    lifecycle.transition([x.id], sent, only=Only(attempts=1))  # X's retry goes out
    lifecycle.transition([y.id], sent, only=Only(attempts=0))
    receipts.receipts_process(channel=http_channel, payloads=payloads, tries=tries)
    assert (fresh(x).status, fresh(x).attempts) == (Status.SENT, 2)
    assert fresh(y).status == Status.DELIVERED
