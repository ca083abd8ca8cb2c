"""Helpers shared by the webhook delivery tests: subscribe, submit, move a message, find
its deliveries and send them again at their due time."""

import json

from comms import lifecycle
from comms.lifecycle import Change, EventDetails
from comms.models import MessageEvent
from comms.status import Status
from comms.submission import message_submit
from deliveries.models import Delivery, Subscription
from deliveries.sending import send_deliveries
from deliveries.services import subscription_create
from tests.receiver import Answer


def subscribe(application, url="http://127.0.0.1:9/hook", **fields) -> Subscription:
    return subscription_create(application=application, url=url, **fields)


def submit(application, channel, *, context=None, now=None, **extra):
    data = {"channel": channel, "receiver": "+447700900123", "content": {"text": "hi"},
            "context": context or {}, **extra}
    return message_submit(application=application, data=data, now=now)[0]


def move(message, *statuses: Status, details: EventDetails | None = None) -> MessageEvent:
    """Take the message through these statuses; return the last event."""
    for status in statuses:
        (moved,) = lifecycle.transition([message.id], Change(status, details or EventDetails()))
    return moved.event


def queued_event(message) -> MessageEvent:
    return message.events.get(status_code="QUEUED")


def delivery_of(event, subscription) -> Delivery:
    return Delivery.objects.get(event=event, subscription=subscription)


def send_pending() -> int:
    return send_deliveries(list(Delivery.objects.filter(status="pending").values_list("id", flat=True)))


def posted(receiver, event):
    (request,) = [r for r in receiver.requests if r.headers["webhook-id"] == event.id]
    return request


def body_of(receiver, event) -> dict:
    return json.loads(posted(receiver, event).body)


def send_again(delivery: Delivery) -> Delivery:
    """The next attempt, at the time the row says it is due."""
    delivery.refresh_from_db()
    send_deliveries([delivery.id], now=delivery.due_at)
    delivery.refresh_from_db()
    return delivery


def one_failed_attempt(receiver, application, channel, answer: Answer, **sub_fields) -> Delivery:
    receiver.answer(answer)
    sub = subscribe(application, receiver.url, **sub_fields)
    delivery = delivery_of(queued_event(submit(application, channel)), sub)
    send_deliveries([delivery.id])
    delivery.refresh_from_db()
    return delivery


def countdowns(published) -> list[float]:
    return [options["countdown"] for _, options in published.of("send_deliveries")]
