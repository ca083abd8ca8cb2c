"""Claiming due messages for an attempt, and giving back claims a worker will not use."""

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, Value, When

from . import due
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
    wait_for_turns({message: 0.0 for message in messages}, now)


def wait_for_turns(waits: Mapping[Message, float], now: datetime) -> None:
    """Give back claims whose attempt must wait this many seconds (their channel's turn, or
    its pause): each due then, with a countdown to it; a turn beyond the lookahead is brought
    within it by the sweeper first, as a far sendAt is, so it still goes on time. A turn
    after the message expires wakes it when it expires instead."""
    if not waits:
        return
    due_at, by_countdown = {}, defaultdict(list)
    for message, wait in waits.items():
        turn = now + timedelta(seconds=wait)
        if message.expires_at and turn >= message.expires_at:
            turn = max(message.expires_at, now)
        due_at[message.id] = due.schedule_due(turn, now)
        if due.within_lookahead(turn, now):
            # Rounded up to 10 ms: one task for turns that close, never one before its time.
            by_countdown[math.ceil((turn - now).total_seconds() * 100) / 100].append(message.id)
    when = Case(*(When(id=i, then=Value(at)) for i, at in due_at.items()), output_field=DateTimeField())
    with transaction.atomic():
        Message.objects.filter(id__in=list(due_at), status__in=SENDABLE).update(due_at=when, leased_until=None)
        for countdown, ids in by_countdown.items():
            sends_on_commit(ids, countdown=countdown or None)
