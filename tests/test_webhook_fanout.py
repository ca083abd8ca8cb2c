"""Fan-out on PostgreSQL matches subscriptions inside the statement that writes the events;
it must pick exactly the subscriptions Subscription.wants picks."""

import pytest
from django.db import connection

from comms.models import MessageEvent
from comms.status import Status
from deliveries.fanout import matches
from deliveries.models import Delivery
from tests.webhooks import move, submit, subscribe

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL matching is PostgreSQL's")


@pytest.mark.django_db
def test_the_statement_picks_the_subscriptions_that_want_each_event(
        application, other_app_and_key, channel, backup_channel, published):
    wanted = [
        subscribe(application),
        subscribe(application, events=["DELIVERED"]),
        subscribe(application, events=["QUEUED", "SENT"]),
        subscribe(application, channels=[channel.name]),
        subscribe(application, channels=[backup_channel.name]),
        subscribe(application, events=["SENT"], channels=[channel.name, backup_channel.name]),
    ]
    unwanted = [subscribe(application, active=False), subscribe(other_app_and_key[0])]
    messages = [submit(application, channel), submit(application, backup_channel)]
    for message in messages:
        move(message, Status.SENT, Status.DELIVERED)

    events = list(MessageEvent.objects.filter(message__in=messages))
    owners = {m.id: (m.application_id, m.channel_id) for m in messages}
    written = set(Delivery.objects.values_list("event_id", "subscription_id"))
    assert written == {(event.id, sub.id) for event, sub in matches(events, owners)}
    assert len(written) == 20  # QUEUED, SENT, DELIVERED of 2 messages, as the six filters pick them
    assert not {sub.id for sub in unwanted} & {sub for _, sub in written}
    assert {sub for _, sub in written} == {sub.id for sub in wanted}
