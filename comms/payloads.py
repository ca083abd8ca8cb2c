"""The event object, exactly as webhooks and the API carry it (DESIGN.md)."""

from typing import Any

from .models import Message, MessageEvent

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def event_payload(event: MessageEvent, message: Message, channel_name: str) -> dict[str, Any]:
    """Fields that do not apply are absent, never null. `sequence` is our documented extra:
    a per-message counter receivers may order events by."""
    payload: dict[str, Any] = {
        "id": event.id,
        "statusCode": event.status_code,
        "messageId": message.id,
        "channelName": channel_name,
    }
    if event.error_code:
        payload["errorCode"] = event.error_code
        payload["errorMessage"] = event.error_message
    if event.fallback_to:
        payload["fallbackTo"] = event.fallback_to
    if event.env is not None:
        payload["env"] = event.env
    if event.link:
        payload["link"] = event.link
    payload["context"] = message.context
    payload["timeStamp"] = event.created_at.strftime(TIMESTAMP_FORMAT)
    payload["sequence"] = event.sequence
    return payload
