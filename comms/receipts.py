"""Provider receipts: what a provider tells us after an attempt, applied to its message."""

import logging

from django.conf import settings
from django.db.models import Q

from . import lifecycle
from .lifecycle import EventDetails
from .models import Channel, Message, Receipt
from .providers import ReceiptEvent, provider_for
from .sending import attempt_failed
from .status import SENDABLE, Status

log = logging.getLogger(__name__)

FEEDBACK_OR_DELIVERED = {"DELIVERED", "READ", "INTERACTED", "DELETED"}


def receipt_process(*, channel: Channel, payload: dict, tries: int = 0) -> Receipt:
    """Apply a receipt's events in order and record the receipt with what became of it.

    Raises ValueError for a payload the provider cannot read. A receipt whose events do not
    fit the message's status (late, repeated, out of order) is recorded as ignored. One that
    comes before its attempt's SENT is recorded is tried again shortly (deferred).
    """
    events = provider_for(channel).parse_receipt(payload)
    if not events:
        raise ValueError("the receipt names no event")
    message = _find_message(channel, events[0])
    by_reference_only = not events[0].message_id
    if _early(message, events[0]) or (message is None and by_reference_only):
        if tries < settings.RELAY_RECEIPT_RETRIES:
            return _defer(channel, payload, message, tries)
    if message is None:
        log.warning("receipt on channel %s for an unknown message: %s", channel.name, payload)
        return Receipt.objects.create(
            channel=channel, payload=payload, outcome=Receipt.Outcome.UNKNOWN_MESSAGE)
    applied = [event.kind for event in events if _apply(message, event)]
    if not applied:
        log.info("receipt for %s ignored in status %s", message.id, message.status)
    return Receipt.objects.create(
        channel=channel, message=message, payload=payload,
        outcome=Receipt.Outcome.APPLIED if applied else Receipt.Outcome.IGNORED,
        detail=", ".join(applied),
    )


def _early(message: Message | None, event: ReceiptEvent) -> bool:
    """The provider answered faster than we recorded handing it the attempt."""
    if message is None:
        return False
    if event.attempt is not None:
        return event.attempt > message.attempts
    return message.status in SENDABLE


def _defer(channel: Channel, payload: dict, message: Message | None, tries: int) -> Receipt:
    from .tasks import process_receipt

    process_receipt.apply_async((channel.name, payload, tries + 1),
                                countdown=settings.RELAY_RECEIPT_RETRY_DELAY)
    return Receipt.objects.create(channel=channel, message=message, payload=payload,
                                  outcome=Receipt.Outcome.DEFERRED, detail=f"try {tries + 1}")


def _find_message(channel: Channel, event: ReceiptEvent) -> Message | None:
    lookup = Q(id=event.message_id) if event.message_id else Q(provider_ref=event.provider_ref)
    if not (event.message_id or event.provider_ref):
        return None
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
