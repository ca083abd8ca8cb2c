"""Accepting a message writes its row, its first event and its webhook deliveries in one
statement: on PostgreSQL one round trip, all or nothing, with no BEGIN and COMMIT."""

from unittest import mock

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from comms.models import Message, MessageEvent
from deliveries.models import Delivery
from tests.webhooks import submit, subscribe

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement path is PostgreSQL's")


@pytest.mark.django_db
def test_the_message_its_event_and_its_deliveries_go_out_in_one_statement(application, channel, published):
    subscribe(application)

    with CaptureQueriesContext(connection) as queries:
        message = submit(application, channel)

    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1
    assert all(f'INSERT INTO "{table}"' in writes[0]
               for table in ("comms_message", "comms_messageevent", "deliveries_delivery"))
    assert Delivery.objects.filter(event__message=message).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_statement_that_fails_part_way_writes_nothing_and_publishes_nothing(application, channel, published):
    subscribe(application)
    taken = submit(application, channel)
    published.clear()
    event_id = MessageEvent.objects.get(message=taken).id

    # The message's INSERT comes first and succeeds; its event's, second, collides.
    with mock.patch("comms.lifecycle.new_id", return_value=event_id), pytest.raises(IntegrityError):
        submit(application, channel)

    assert (Message.objects.count(), MessageEvent.objects.count(), Delivery.objects.count()) == (1, 1, 1)
    assert published.calls == {}
