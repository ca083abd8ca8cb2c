"""Reads, scoped to the application asking."""

from django.db.models import Prefetch, QuerySet

from .models import Application, Message, MessageEvent


def messages_of(application: Application) -> QuerySet[Message]:
    return Message.objects.filter(application=application).select_related("channel")


def message_with_events(application: Application, message_id: str) -> Message | None:
    return (
        messages_of(application)
        .prefetch_related(Prefetch("events", queryset=MessageEvent.objects.order_by("sequence")))
        .filter(id=message_id)
        .first()
    )
