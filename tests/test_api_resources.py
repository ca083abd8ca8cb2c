"""The accepted-message resource, built directly, is exactly what MessageSerializer says."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from comms.api.resources import accepted_resource
from comms.api.serializers import MessageSerializer
from comms.models import Message
from comms.submission import message_submit, message_submit_batch


def _same(message: Message) -> None:
    expected = MessageSerializer(message).data
    assert json.dumps(accepted_resource(message)) == json.dumps(expected)  # values and key order


@pytest.mark.django_db
def test_a_queued_message_reads_as_the_serializer_reads_it(application, channel, published):
    message, _ = message_submit(application=application, data={
        "channel": channel, "receiver": "+447700900123", "sender": "Relay",
        "content": {"text": "hi", "subject": "s"}, "context": {"order": 7, "tags": ["a"]}})
    _same(message)


@pytest.mark.django_db
def test_a_scheduled_message_with_expiry_and_a_fallback_reads_as_the_serializer_reads_it(
        application, channel, backup_channel, published):
    send_at = timezone.now().replace(microsecond=123456) + timedelta(hours=2)
    (message,) = message_submit_batch(application=application, items=[{
        "channel": channel, "receiver": "a@example.com", "content": {"text": "hi"},
        "send_at": send_at, "expires_at": send_at + timedelta(days=1),
        "fallback": {"channel": backup_channel, "receiver": "+447700900123", "content": {"text": "hi"}}}])
    assert message.fallback_to_id
    _same(message)


@pytest.mark.django_db
def test_a_message_read_back_from_the_database_reads_as_the_serializer_reads_it(application, channel, published):
    message, _ = message_submit(application=application, data={
        "channel": channel, "receiver": "+447700900123", "content": {"text": "hi"}})
    _same(Message.objects.get(id=message.id))
