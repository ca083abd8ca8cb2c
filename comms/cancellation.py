"""Cancelling a message that has not been handed to a provider, with its dormant fallbacks."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from . import lifecycle, pacing
from .lifecycle import Change, Only
from .models import Message
from .status import EventCode, Status

CANCELLABLE = {Status.PENDING, Status.SCHEDULED, Status.QUEUED, Status.DELIVERY_RETRIED}


def message_cancel(*, message: Message, now: datetime | None = None) -> bool:
    """CANCELLED, unless the message was handed to the provider or is being handed now.

    Decided by one conditional UPDATE that skips claimed messages, so a cancel racing a send
    goes to whichever claims the row first: a CANCELLED message is never also sent. When
    the cancel is too late, a FAILED_CANCELLATION event is recorded and False returned.
    """
    now = now or timezone.now()
    with transaction.atomic():
        moved = lifecycle.transition([message.id], Change(Status.CANCELLED),
                                     only=Only(from_statuses=CANCELLABLE, unleased=True), now=now)
        if not moved:
            lifecycle.record_event(message.id, EventCode.FAILED_CANCELLATION, now=now)
            return False
        lifecycle.transition(_dormant_chain(message), Change(Status.CANCELLED),
                             only=Only(from_statuses={Status.PENDING}), now=now)
    pacing.release(message.channel_id, [message.id])  # a turn it held, waiting, moves up
    return True


def _dormant_chain(message: Message) -> list[str]:
    ids, next_id = [], message.fallback_to_id
    while next_id:
        row = Message.objects.filter(id=next_id, status=Status.PENDING).values_list(
            "id", "fallback_to_id").first()
        if row is None:
            break
        ids.append(row[0])
        next_id = row[1]
    return ids
