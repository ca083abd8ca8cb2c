"""Claiming due messages for an attempt, and giving back claims a worker will not use."""

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction

from .leases import ClaimSpec, claim_due
from .models import Message
from .publish import sends_on_commit
from .status import SENDABLE

SENDABLE_MESSAGES = ClaimSpec(Message, SENDABLE)


def claim(message_ids: Sequence[str], now: datetime) -> list[Message]:
    """Claim the due sendable messages among these (topped up with other due ones) for one
    attempt each; returns them, asked ones first, in the order asked."""
    message_ids = list(dict.fromkeys(message_ids))  # a repeated id is still one attempt
    if not message_ids:
        return []
    claimed = claim_due(SENDABLE_MESSAGES, message_ids, now, fill_to=settings.RELAY_SEND_CHUNK)
    if not claimed:
        return []
    by_id = Message.objects.select_related("channel").in_bulk(claimed)
    asked = set(message_ids)
    return [by_id[i] for i in message_ids if i in by_id] + [m for i, m in by_id.items() if i not in asked]


def release(messages: Sequence[Message], now: datetime) -> None:
    """Give back claims this worker will not use: due now, published again."""
    with transaction.atomic():
        Message.objects.filter(id__in=[m.id for m in messages], status__in=SENDABLE).update(
            due_at=now, leased_until=None)
        sends_on_commit([m.id for m in messages])
