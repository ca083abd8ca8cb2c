"""comms.bulk: many rows in one round trip, stored exactly as the ORM would store them."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from comms import bulk
from comms.ids import new_id
from comms.models import Message, MessageEvent
from comms.status import EventCode, Status


def _message(application, channel, **fields) -> Message:
    now = timezone.now()
    fields = {"content": {"text": "hi"}, **fields}
    return Message(id=new_id(), application=application, channel=channel, receiver="+447700900123",
                   status=Status.QUEUED, created_at=now, updated_at=now, **fields)


@pytest.mark.django_db
def test_values_are_stored_as_the_orm_stores_them(application, channel):
    tricky = {"text": "100% sure, it's \"quoted\" %s and \\ backslashed", "html": "<p>ü</p>"}
    message = _message(application, channel, content=tricky, context={"a": [1, None, True]}, due_at=timezone.now())
    event = MessageEvent(id=new_id(), message_id=message.id, sequence=1, status_code=EventCode.QUEUED,
                         created_at=timezone.now())

    bulk.insert([message], [event])

    stored = Message.objects.get(id=message.id)
    assert (stored.content, stored.context, stored.due_at) == (tricky, {"a": [1, None, True]}, message.due_at)
    assert MessageEvent.objects.filter(id=event.id, env__isnull=True).exists()  # None is SQL NULL


@pytest.mark.django_db
def test_batches_of_two_tables_take_one_round_trip_on_postgresql(application, channel):
    messages = [_message(application, channel) for _ in range(3)]
    events = [MessageEvent(id=new_id(), message_id=m.id, sequence=1, status_code=EventCode.QUEUED,
                           created_at=timezone.now()) for m in messages]

    with CaptureQueriesContext(connection) as queries:
        bulk.insert(messages, events, [])

    assert Message.objects.filter(id__in=[m.id for m in messages]).count() == 3
    assert MessageEvent.objects.filter(message_id__in=[m.id for m in messages]).count() == 3
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2)
