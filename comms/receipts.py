"""Provider receipts: what a provider tells us after an attempt, applied to its messages.

Receipts come one by one (the API) or many at once (the simulator's batches, a provider's
bulk callback); either way the events of the same kind are applied with one transition.
"""

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from . import bulk, lifecycle, outcomes
from .lifecycle import Change, EventDetails, Only
from .models import Channel, Message, Receipt
from .providers import ReceiptEvent, provider_for
from .publish import receipts_on_commit
from .status import SENDABLE, Status

log = logging.getLogger(__name__)

FEEDBACK_OR_DELIVERED = {"DELIVERED", "READ", "INTERACTED", "DELETED"}
# A status a provider reports that changes nothing here (Twilio's "sent" after our SENT, an
# ESP's "deferred"): recorded on the receipt, applied to nothing.
NOTED = "NOTED"


@dataclass
class _Pending:
    payload: dict
    events: list[ReceiptEvent]
    message: Message | None = None
    applied: list[str] = field(default_factory=list)


# Which answer a payload naming several messages gets: the one that asks the most of the caller.
ANSWER_ORDER = [Receipt.Outcome.DEFERRED, Receipt.Outcome.APPLIED, Receipt.Outcome.IGNORED,
                Receipt.Outcome.UNKNOWN_MESSAGE]


def receipt_process(*, channel: Channel, payload: dict, tries: int = 0) -> Receipt:
    """One request's payload; raises ValueError, applying nothing, if the provider cannot read
    any part of it. A bulk payload is recorded per receipt and per message; the answer is
    the weightiest outcome."""
    provider = provider_for(channel)
    pending = []
    for part in provider.split_receipt(payload):
        events = provider.parse_receipt(part)
        if not events:
            raise ValueError("the receipt names no event")
        pending += _per_message(part, events)
    receipts = _process(channel, pending, tries)
    return min(receipts, key=lambda r: ANSWER_ORDER.index(r.outcome))


def receipts_process(*, channel: Channel, payloads: list[dict], tries: int = 0) -> list[Receipt]:
    """Many receipts; one the provider cannot read is logged and skipped."""
    provider = provider_for(channel)
    pending = []
    for part in (part for payload in payloads for part in provider.split_receipt(payload)):
        try:
            events = provider.parse_receipt(part)
        except ValueError as exc:
            log.warning("unreadable receipt on channel %s: %s (%s)", channel.name, exc, part)
            continue
        pending += _per_message(part, events)
    return _process(channel, pending, tries)


def _per_message(payload: dict, events: list[ReceiptEvent]) -> list[_Pending]:
    """A bulk callback may name many messages: each gets its own events, in order."""
    by_message: dict[tuple[str, str], list[ReceiptEvent]] = {}
    for event in events:
        key = (event.message_id, "") if event.message_id else ("", event.provider_ref)
        by_message.setdefault(key, []).append(event)
    return [_Pending(payload, message_events) for message_events in by_message.values()]


def _process(channel: Channel, pending: list[_Pending], tries: int) -> list[Receipt]:
    """Apply, record, and answer each receipt with what became of it.

    Late, repeated or backwards receipts are recorded as ignored; one that beats its
    attempt's SENT record is tried again shortly (deferred); one for no known message is
    recorded as such.
    """
    _attach_messages(channel, pending)
    outcomes: dict[int, str] = {}
    deferred = []
    ready = []
    for index, item in enumerate(pending):
        first = item.events[0]
        too_early = _early(item.message, first) or (item.message is None and not first.message_id)
        if too_early and tries < settings.RELAY_RECEIPT_RETRIES:
            outcomes[index] = Receipt.Outcome.DEFERRED
            if not any(p is item.payload for p in deferred):  # once, though it names several messages
                deferred.append(item.payload)
        elif item.message is None:
            log.warning("receipt on channel %s for an unknown message: %s", channel.name, item.payload)
            outcomes[index] = Receipt.Outcome.UNKNOWN_MESSAGE
        else:
            ready.append(item)
    with transaction.atomic():
        _apply_in_steps(ready)
        for index, item in enumerate(pending):
            if index not in outcomes:
                outcomes[index] = Receipt.Outcome.APPLIED if item.applied else Receipt.Outcome.IGNORED
        receipts = [
            Receipt(channel=channel, message=item.message, payload=item.payload, outcome=outcomes[i],
                    detail=", ".join(item.applied) or (f"try {tries + 1}" if outcomes[i] == "deferred" else ""))
            for i, item in enumerate(pending)
        ]
        bulk.insert(receipts)
        if deferred:
            receipts_on_commit(channel.name, deferred, tries=tries + 1,
                               countdown=settings.RELAY_RECEIPT_RETRY_DELAY)
    return receipts


def _apply_in_steps(items: list[_Pending]) -> None:
    """Event k of every receipt before event k+1 of any; same-kind events in one transition."""
    for step in range(max((len(i.events) for i in items), default=0)):
        groups: dict[tuple, list[_Pending]] = defaultdict(list)
        for item in items:
            if step >= len(item.events):
                continue
            event = item.events[step]
            if event.kind == NOTED:
                continue
            if event.kind == "FAILED":
                if outcomes.reported_failed(item.message, event.error,
                                            attempt=item.message.attempts if event.attempt is None else event.attempt):
                    item.applied.append(event.kind)
                continue
            if event.kind not in FEEDBACK_OR_DELIVERED:
                raise ValueError(f"unknown receipt kind {event.kind!r}")
            # Delivery is of one attempt: a late receipt of an earlier one must not count.
            attempt = event.attempt if event.kind == "DELIVERED" else None
            key = (event.kind, attempt, json.dumps(event.env, sort_keys=True), event.link)
            groups[key].append(item)
        for (kind, attempt, _, link), group in groups.items():
            env = group[0].events[step].env
            change = Change(Status(kind), EventDetails(env=env, link=link, raw_code=kind.lower()))
            moved = {m.id for m in lifecycle.transition([i.message.id for i in group], change,
                                                        only=Only(attempts=attempt))}
            for item in group:
                if item.message.id in moved:
                    item.applied.append(kind)
                    moved.discard(item.message.id)  # a duplicate in the batch moved nothing


def _attach_messages(channel: Channel, pending: list[_Pending]) -> None:
    ids = {p.events[0].message_id for p in pending if p.events[0].message_id}
    refs = {p.events[0].provider_ref for p in pending if not p.events[0].message_id and p.events[0].provider_ref}
    found = Message.objects.select_related("channel").filter(channel=channel)
    by_id = {m.id: m for m in found.filter(id__in=ids)} if ids else {}
    by_ref = {m.provider_ref: m for m in found.filter(provider_ref__in=refs)} if refs else {}
    for item in pending:
        first = item.events[0]
        item.message = by_id.get(first.message_id) if first.message_id else by_ref.get(first.provider_ref)


def _early(message: Message | None, event: ReceiptEvent) -> bool:
    """The provider answered faster than we recorded handing it the attempt."""
    if message is None:
        return False
    if event.attempt is not None:
        return event.attempt > message.attempts
    return message.status in SENDABLE
