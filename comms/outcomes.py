"""What becomes of a message after an attempt, or instead of one: the decisions.

An attempt the provider refused at once, one a receipt reported failed, one that expired,
a chain that moves on to its fallback, a dormant message woken: each is a named entry
point here, below sending, receipts and scheduling, which only say what happened.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from . import due, lifecycle, metrics
from .lifecycle import Change, EventDetails, Only
from .models import Message
from .providers import ProviderError
from .publish import sends_on_commit, starts_on_commit
from .status import SENDABLE, ErrorCode, Status


def refused(message: Message, error: ProviderError, *, attempt: int, now: datetime | None = None) -> bool:
    """The provider refused attempt `attempt` outright (or could not be asked): the attempt
    counts, and the message is retried or fails. Returns whether it moved."""
    only = Only(from_statuses=SENDABLE, attempts=attempt - 1)
    return _retry_or_fail(message, error, attempt=attempt, only=only, count_attempt=True,
                          now=now or timezone.now())


def reported_failed(message: Message, error: ProviderError, *, attempt: int,
                    now: datetime | None = None) -> bool:
    """A receipt says attempt `attempt`, already counted by its SENT, failed."""
    only = Only(from_statuses={Status.SENT}, attempts=attempt)
    return _retry_or_fail(message, error, attempt=attempt, only=only, count_attempt=False,
                          now=now or timezone.now())


def expired(message: Message, *, now: datetime) -> bool:
    """EXPIRED: not handed to the provider before expiresAt. Starts the fallback."""
    details = EventDetails(error_code=ErrorCode.EXPIRED, error_message=ErrorCode.EXPIRED.label)
    return _end_with_fallback(message, Change(Status.EXPIRED, details),
                              Only(from_statuses=SENDABLE | {Status.SCHEDULED}), now)


def wake(message_ids: Sequence[str], *, now: datetime) -> None:
    """Start dormant messages (fallbacks): SCHEDULED if their sendAt is ahead, else QUEUED."""
    dormant = list(Message.objects.filter(id__in=message_ids, status=Status.PENDING))
    later = [m for m in dormant if m.send_at and m.send_at > now]
    for message in later:
        lifecycle.transition([message.id], Change(Status.SCHEDULED, due_at=due.schedule_due(message.send_at, now)),
                             only=Only(from_statuses={Status.PENDING}), now=now)
    starts_on_commit([(m.id, m.send_at) for m in later if due.within_lookahead(m.send_at, now)], now)
    queued = lifecycle.transition([m.id for m in dormant if m not in later],
                                  Change(Status.QUEUED, due_at=now), now=now)
    sends_on_commit([m.id for m in queued])


def _retry_or_fail(message: Message, error: ProviderError, *, attempt: int, only: Only,
                   count_attempt: bool, now: datetime) -> bool:
    """Retry after the channel's delay, or fail and start the fallback."""
    details = EventDetails(error_code=error.code, error_message=error.message, raw_code=error.raw_code)
    if error.permanent or attempt >= message.channel.max_attempts:
        moved = _end_with_fallback(message, Change(Status.DELIVERY_FAILED, details, count_attempt=count_attempt),
                                   only, now)
    else:
        moved = _retry(message, details, attempt=attempt, only=only, count_attempt=count_attempt, now=now)
    if moved:
        metrics.provider_error(message.channel.name, error.code)
    return moved


def _retry(message: Message, details: EventDetails, *, attempt: int, only: Only, count_attempt: bool,
           now: datetime) -> bool:
    """DELIVERY_RETRIED, due after the channel's delay."""
    retry_at = now + timedelta(seconds=message.channel.retry_delay_after(attempt))
    if message.expires_at and retry_at >= message.expires_at:
        retry_at = max(message.expires_at, now)  # wake then, to find it EXPIRED
    moved = lifecycle.transition(
        [message.id], Change(Status.DELIVERY_RETRIED, details, due_at=retry_at, count_attempt=count_attempt),
        only=only, now=now)
    if moved and due.within_countdown(retry_at, now):
        # A long wait is the sweeper's: it takes the retry at most a grace and a sweep late.
        sends_on_commit([message.id], countdown=(retry_at - now).total_seconds())
    return bool(moved)


def _end_with_fallback(message: Message, change: Change, only: Only, now: datetime) -> bool:
    """DELIVERY_FAILED or EXPIRED, naming and starting the next message of the chain."""
    with transaction.atomic():
        fallback_id = _dormant_fallback(message)
        change = replace(change, details=replace(change.details, fallback_to=fallback_id or ""))
        moved = lifecycle.transition([message.id], change, only=only, now=now)
        if moved and fallback_id:
            wake([fallback_id], now=now)
        return bool(moved)


def _dormant_fallback(message: Message) -> str | None:
    if not message.fallback_to_id:
        return None
    waiting = Message.objects.filter(id=message.fallback_to_id, status=Status.PENDING).exists()
    return message.fallback_to_id if waiting else None
