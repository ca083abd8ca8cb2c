"""Provider receipts: what a provider tells us after an attempt, applied to its message."""

import logging

from django.db.models import Q

from . import lifecycle
from .lifecycle import EventDetails
from .models import Channel, Message, Receipt
from .providers import ReceiptEvent, provider_for
from .sending import attempt_failed
from .status import Status

log = logging.getLogger(__name__)

FEEDBACK_OR_DELIVERED = {"DELIVERED", "READ", "INTERACTED", "DELETED"}


def receipt_process(*, channel: Channel, payload: dict) -> Receipt:
    """Apply a receipt's events in order and record the receipt with what became of it.

    Raises ValueError for a payload the provider cannot read. A receipt whose events do not
    fit the message's status (late, repeated, out of order) is recorded as ignored.
    """
    events = provider_for(channel).parse_receipt(payload)
    message = _find_message(channel, events)
    if message is None:
        log.warning("receipt on channel %s for an unknown message: %s", channel.name, payload)
        return Receipt.objects.create(
            channel=channel, payload=payload, outcome=Receipt.Outcome.UNKNOWN_MESSAGE
        )
    applied = [event.kind for event in events if _apply(message, event)]
    outcome = Receipt.Outcome.APPLIED if applied else Receipt.Outcome.IGNORED
    if not applied:
        log.info("receipt for %s ignored in status %s", message.id, message.status)
    return Receipt.objects.create(
        channel=channel, message=message, payload=payload, outcome=outcome,
        detail=", ".join(applied),
    )


def _find_message(channel: Channel, events: list[ReceiptEvent]) -> Message | None:
    if not events:
        return None
    first = events[0]
    lookup = Q(id=first.message_id) if first.message_id else Q(provider_ref=first.provider_ref)
    return Message.objects.select_related("channel").filter(lookup, channel=channel).first()


def _apply(message: Message, event: ReceiptEvent) -> bool:
    if event.kind == "FAILED":
        return attempt_failed(
            message, event.error, attempt=event.attempt or message.attempts, after_sent=True
        )
    if event.kind not in FEEDBACK_OR_DELIVERED:
        raise ValueError(f"unknown receipt kind {event.kind!r}")
    moved = lifecycle.transition(
        [message.id],
        Status(event.kind),
        # Delivery is of one attempt: a late receipt of an earlier one must not count.
        attempts=event.attempt if event.kind == "DELIVERED" else None,
        details=EventDetails(env=event.env, link=event.link, raw_code=event.kind.lower()),
    )
    return bool(moved)
