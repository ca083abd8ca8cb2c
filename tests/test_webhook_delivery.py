"""Webhook fan-out and delivery, against a real local HTTP receiver.

Delivery attempts are made by calling deliveries.sending.send_deliveries with delivery ids,
as the task does; later attempts are driven by passing `now` = the row's due_at.
"""

import json
import re
import time
from datetime import UTC, datetime

import pytest
from django.db import transaction
from standardwebhooks import Webhook

from comms import outcomes
from comms.lifecycle import EventDetails
from comms.providers import ProviderError
from comms.status import ErrorCode, Status
from deliveries.models import Delivery
from tests.webhooks import (
    body_of,
    move,
    queued_event,
    send_pending,
    submit,
    subscribe,
)

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# These tests post to a receiver on 127.0.0.1; the SSRF guard has its own tests.
pytestmark = pytest.mark.usefixtures("local_receivers_allowed", "published")


# --- fan-out -----------------------------------------------------------------------------


def test_an_event_becomes_one_delivery_per_active_subscription_of_its_application(application, channel):
    first, second = subscribe(application), subscribe(application)

    event = queued_event(submit(application, channel))

    assert sorted(Delivery.objects.filter(event=event).values_list("subscription_id", flat=True)) == \
        sorted([first.id, second.id])


def test_a_subscription_filtered_to_delivered_gets_only_delivered_events(application, channel):
    sub = subscribe(application, events=["DELIVERED"])
    message = submit(application, channel)

    move(message, Status.SENT, Status.DELIVERED)

    assert list(Delivery.objects.filter(subscription=sub).values_list("event__status_code", flat=True)) == \
        ["DELIVERED"]


def test_a_subscription_filtered_by_channel_gets_only_that_channels_events(application, channel, backup_channel):
    sub = subscribe(application, channels=["backup"])

    submit(application, channel)
    on_backup = submit(application, backup_channel)

    assert list(Delivery.objects.filter(subscription=sub).values_list("event__message_id", flat=True)) == \
        [on_backup.id]


def test_an_inactive_subscription_gets_no_deliveries(application, channel):
    sub = subscribe(application, active=False)

    submit(application, channel)

    assert not Delivery.objects.filter(subscription=sub).exists()


def test_another_applications_subscription_never_gets_a_delivery(application, other_app_and_key, channel):
    theirs = subscribe(other_app_and_key[0])

    message = submit(application, channel)
    move(message, Status.SENT, Status.DELIVERED)

    assert not Delivery.objects.filter(subscription=theirs).exists()


def test_deliveries_roll_back_with_the_events_that_made_them(application, channel):
    subscribe(application)

    with pytest.raises(RuntimeError), transaction.atomic():
        submit(application, channel)
        assert Delivery.objects.count() == 1  # written with the event, in its transaction
        raise RuntimeError("the transaction fails")

    assert not Delivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_delivery_tasks_are_published_only_after_commit(application, channel, published):
    subscribe(application)

    with transaction.atomic():
        event = queued_event(submit(application, channel))
        published_before_commit = list(published.of("send_deliveries"))

    assert published_before_commit == []
    assert [args[0] for args, _ in published.of("send_deliveries")] == [
        [delivery.id for delivery in Delivery.objects.filter(event=event)]
    ]


# --- the request -------------------------------------------------------------------------


def test_a_queued_event_is_posted_in_exactly_the_designed_shape(receiver, application, channel):
    subscribe(application, receiver.url)
    message = submit(application, channel, context={"prop1": "value1", "prop2": 33})
    event = queued_event(message)

    send_pending()

    assert body_of(receiver, event) == {
        "id": event.id, "statusCode": "QUEUED", "messageId": message.id, "channelName": "sim",
        "context": {"prop1": "value1", "prop2": 33},
        "timeStamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "sequence": 1,
    }


def test_a_sent_event_is_posted_in_exactly_the_designed_shape(receiver, application, channel):
    subscribe(application, receiver.url, events=["SENT"])
    message = submit(application, channel, context={"k": [1, 2]})
    event = move(message, Status.SENT)

    send_pending()

    assert body_of(receiver, event) == {
        "id": event.id, "statusCode": "SENT", "messageId": message.id, "channelName": "sim",
        "context": {"k": [1, 2]}, "timeStamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "sequence": 2,
    }


def test_a_delivered_event_is_posted_in_exactly_the_designed_shape(receiver, application, channel):
    subscribe(application, receiver.url, events=["DELIVERED"])
    message = submit(application, channel)
    event = move(message, Status.SENT, Status.DELIVERED)

    send_pending()

    assert body_of(receiver, event) == {
        "id": event.id, "statusCode": "DELIVERED", "messageId": message.id, "channelName": "sim",
        "context": {}, "timeStamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "sequence": 3,
    }


def test_a_delivery_retried_event_carries_the_error_code_and_message_but_not_the_raw_code(
        receiver, application, channel):
    subscribe(application, receiver.url, events=["DELIVERY_RETRIED"])
    message = submit(application, channel)
    error = EventDetails(error_code=ErrorCode.CHANNEL_UNKNOWN_ERROR,
                         error_message="The channel suffered an internal error", raw_code="E42")
    event = move(message, Status.SENT, Status.DELIVERY_RETRIED, details=error)

    send_pending()

    assert body_of(receiver, event) == {
        "id": event.id, "statusCode": "DELIVERY_RETRIED", "messageId": message.id, "channelName": "sim",
        "errorCode": "CHANNEL_UNKNOWN_ERROR", "errorMessage": "The channel suffered an internal error",
        "context": {}, "timeStamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "sequence": 3,
    }


def test_a_delivery_failed_event_names_the_fallback_it_starts(receiver, application, channel, backup_channel):
    subscribe(application, receiver.url, events=["DELIVERY_FAILED"])
    message = submit(application, channel, fallback={
        "channel": backup_channel, "receiver": "ann@example.com", "content": {"text": "hi"}})
    move(message, Status.SENT)
    message.refresh_from_db()
    outcomes.reported_failed(message, ProviderError(
        ErrorCode.REJECTED_BY_CHANNEL, "The channel rejected the message", permanent=True), attempt=message.attempts)
    event = message.events.get(status_code="DELIVERY_FAILED")

    send_pending()

    assert body_of(receiver, event) == {
        "id": event.id, "statusCode": "DELIVERY_FAILED", "messageId": message.id, "channelName": "sim",
        "errorCode": "REJECTED_BY_CHANNEL", "errorMessage": "The channel rejected the message",
        "fallbackTo": message.fallback_to_id, "context": {},
        "timeStamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "sequence": 3,
    }


def test_a_read_event_carries_the_env_the_channel_reported(receiver, application, channel):
    subscribe(application, receiver.url, events=["READ"])
    message = submit(application, channel)
    move(message, Status.SENT, Status.DELIVERED)
    event = move(message, Status.READ, details=EventDetails(env={"os.name": "ios"}))

    send_pending()

    assert body_of(receiver, event) == {
        "id": event.id, "statusCode": "READ", "messageId": message.id, "channelName": "sim",
        "env": {"os.name": "ios"}, "context": {},
        "timeStamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "sequence": 4,
    }


def test_an_interacted_event_carries_the_link(receiver, application, channel):
    subscribe(application, receiver.url, events=["INTERACTED"])
    message = submit(application, channel)
    move(message, Status.SENT, Status.DELIVERED)
    event = move(message, Status.INTERACTED, details=EventDetails(link="https://example.com/x"))

    send_pending()

    assert body_of(receiver, event) == {
        "id": event.id, "statusCode": "INTERACTED", "messageId": message.id, "channelName": "sim",
        "link": "https://example.com/x", "context": {},
        "timeStamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "sequence": 4,
    }


def test_no_field_of_a_posted_event_is_null(receiver, application, channel):
    subscribe(application, receiver.url)
    message = submit(application, channel)
    move(message, Status.SENT, Status.DELIVERED)

    send_pending()

    bodies = [json.loads(r.body) for r in receiver.requests]
    assert len(bodies) == 3
    assert [k for body in bodies for k, v in body.items() if v is None] == []


def test_the_timestamp_is_the_event_time_in_the_seed_format(receiver, application, channel):
    subscribe(application, receiver.url)
    event = queued_event(submit(application, channel, now=datetime(2021, 7, 13, 20, 17, 56, tzinfo=UTC)))

    send_pending()

    stamp = body_of(receiver, event)["timeStamp"]
    assert TIMESTAMP.match(stamp)
    assert stamp == "2021-07-13T20:17:56+0000"


def test_every_request_verifies_with_the_official_standardwebhooks_library(receiver, application, channel):
    sub = subscribe(application, receiver.url)
    message = submit(application, channel)
    move(message, Status.SENT, Status.DELIVERED)

    send_pending()

    assert len(receiver.requests) == 3
    for request in receiver.requests:
        assert Webhook(sub.secret).verify(request.body, request.headers)["id"] == request.headers["webhook-id"]


def test_the_webhook_id_header_is_the_event_id(receiver, application, channel):
    subscribe(application, receiver.url)
    event = queued_event(submit(application, channel))

    send_pending()

    (request,) = receiver.requests
    assert request.headers["webhook-id"] == event.id
    assert HEX32.match(event.id)


def test_the_webhook_timestamp_header_is_the_unix_time_of_the_attempt(receiver, application, channel):
    subscribe(application, receiver.url)
    submit(application, channel)
    before = int(time.time())

    send_pending()

    (request,) = receiver.requests
    assert before <= int(request.headers["webhook-timestamp"]) <= int(time.time())


def test_a_request_is_json_with_a_user_agent(receiver, application, channel):
    subscribe(application, receiver.url)
    submit(application, channel)

    send_pending()

    (request,) = receiver.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"]


def test_the_subscriptions_extra_headers_are_sent(receiver, application, channel):
    subscribe(application, receiver.url, headers={"X-Tenant": "acme", "Authorization": "Basic abc"})
    submit(application, channel)

    send_pending()

    (request,) = receiver.requests
    assert (request.headers["x-tenant"], request.headers["authorization"]) == ("acme", "Basic abc")


def test_extra_headers_cannot_override_the_webhook_or_content_type_headers(receiver, application, channel):
    sub = subscribe(application, receiver.url, headers={
        "webhook-id": "forged", "Webhook-Signature": "v1,forged", "WEBHOOK-TIMESTAMP": "1",
        "content-type": "text/plain"})
    event = queued_event(submit(application, channel))

    send_pending()

    (request,) = receiver.requests
    assert request.values("webhook-id") == [event.id]
    assert request.values("content-type") == ["application/json"]
    assert len(request.values("webhook-timestamp")) == 1
    assert Webhook(sub.secret).verify(request.body, request.headers)["id"] == event.id
