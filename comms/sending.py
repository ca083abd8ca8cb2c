"""Attempts: hand claimed messages to their providers, and decide what a failure means."""

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import lifecycle, scheduling
from .dispatch import claim, dispatch_on_commit, grace, release
from .lifecycle import EventDetails
from .models import Message
from .providers import ConfigError, Provider, ProviderError, Sent, provider_for
from .status import SENDABLE, ErrorCode, Status

log = logging.getLogger(__name__)


def send_attempts(message_ids: Sequence[str], *, now: datetime | None = None) -> int:
    """Make one attempt for each of these messages that can be claimed; return how many."""
    now = now or timezone.now()
    messages = claim(message_ids, now)
    for message in [m for m in messages if m.expires_at and m.expires_at <= now]:
        expire(message, now=now)
        messages.remove(message)
    # Stop well inside the claim's lease; what is left goes back to the queue.
    budget_ends = time.monotonic() + settings.RELAY_CLAIM_LEASE / 2
    providers: dict[int, Provider] = {}
    sent: list[Sent] = []
    for index, message in enumerate(messages):
        if time.monotonic() > budget_ends:
            release(messages[index:], timezone.now())
            messages = messages[:index]
            break
        channel = message.channel
        attempt = message.attempts + 1
        try:
            # Inside the try: a channel no provider can serve fails its own messages only.
            provider = providers.get(channel.id) or providers.setdefault(channel.id, provider_for(channel))
            if not channel.enabled:
                raise ProviderError(ErrorCode.CHANNEL_UNAVAILABLE, "The channel is disabled")
            sent.append(Sent(message, attempt, provider.send(message, attempt=attempt)))
        except ProviderError as error:
            attempt_failed(message, error, attempt=attempt, after_sent=False)
        except ConfigError as exc:  # an operator can fix it, so it is retried
            log.error("channel %s cannot send: %s", channel.name, exc)
            attempt_failed(message, ProviderError(ErrorCode.CHANNEL_UNAVAILABLE, f"The channel is misconfigured: {exc}",
                                                  raw_code="config"), attempt=attempt, after_sent=False)
        except Exception as exc:  # a provider bug must not strand the rest of the chunk
            log.exception("provider %s crashed on message %s", channel.type, message.id)
            attempt_failed(
                message,
                ProviderError(ErrorCode.CHANNEL_UNKNOWN_ERROR, raw_code=type(exc).__name__),
                attempt=attempt,
                after_sent=False,
            )
    for provider in providers.values():
        provider.close()
    record_sent(sent, providers, timezone.now())
    return len(messages)


def record_sent(sent: list[Sent], providers: dict[int, Provider], now: datetime) -> None:
    """SENT for each attempt, in one UPDATE per attempt number, then the providers' hooks."""
    by_attempt: dict[int, list[Sent]] = defaultdict(list)
    for item in sent:
        by_attempt[item.attempt].append(item)
    moved_ids: set[str] = set()
    for attempt, items in by_attempt.items():
        per_message: dict[str, dict] = {"provider_ref": {}, "next_attempt_at": {}}
        for item in items:
            provider = providers[item.message.channel_id]
            timeout = provider.receipt_timeout(item.message)
            per_message["provider_ref"][item.message.id] = item.provider_ref
            per_message["next_attempt_at"][item.message.id] = (
                now + timedelta(seconds=timeout) if timeout is not None else None
            )
        moved = lifecycle.transition(
            [i.message.id for i in items],
            Status.SENT,
            attempts=attempt - 1,
            count_attempt=True,
            per_message=per_message,
            now=now,
        )
        moved_ids.update(m.id for m in moved)
    by_channel: dict[int, list[Sent]] = defaultdict(list)
    for item in sent:
        if item.message.id in moved_ids:
            by_channel[item.message.channel_id].append(item)
        else:
            log.warning("attempt %d of %s was sent after its claim lapsed", item.attempt, item.message.id)
    for channel_id, items in by_channel.items():
        providers[channel_id].after_sent(items)


def attempt_failed(message: Message, error: ProviderError, *, attempt: int, after_sent: bool,
                   now: datetime | None = None) -> bool:
    """Retry the message after the channel's delay, or fail it and start its fallback.

    `after_sent` says the failure came by receipt, after SENT counted the attempt; otherwise
    the provider refused the attempt outright and this counts it. Returns whether it moved.
    """
    now = now or timezone.now()
    channel = message.channel
    details = EventDetails(error_code=error.code, error_message=error.message, raw_code=error.raw_code)
    common = {
        "expected": {Status.SENT} if after_sent else SENDABLE,
        "attempts": attempt if after_sent else attempt - 1,
        "count_attempt": not after_sent,
        "details": details,
        "now": now,
    }
    with transaction.atomic():
        if not error.permanent and attempt < channel.max_attempts:
            delay = channel.retry_delay_after(attempt)
            if message.expires_at and now + timedelta(seconds=delay) >= message.expires_at:
                # The retry would fall after expiry: wake then, to find it EXPIRED.
                delay = max((message.expires_at - now).total_seconds(), 0)
            due = now + timedelta(seconds=delay)
            short = delay <= settings.RELAY_MAX_COUNTDOWN
            # Claims accept rows up to a grace ahead of their next_attempt_at (a published row
            # waits that long for its task), so the grace goes on top: nothing is claimable
            # before `due`. A long wait is the sweeper's, which takes it at most a grace plus
            # a sweep interval late: small next to a wait of minutes.
            moved = lifecycle.transition(
                [message.id], Status.DELIVERY_RETRIED, next_attempt_at=due + grace(), **common,
            )
            if moved and short:
                dispatch_on_commit([message.id], countdown=delay)
            return bool(moved)
        return end_with_fallback(message, Status.DELIVERY_FAILED, **common)


def expire(message: Message, *, now: datetime) -> bool:
    """EXPIRED: not handed to the provider before expiresAt. Starts the fallback."""
    return end_with_fallback(
        message, Status.EXPIRED, expected=SENDABLE | {Status.SCHEDULED},
        details=EventDetails(error_code=ErrorCode.EXPIRED, error_message=ErrorCode.EXPIRED.label),
        now=now,
    )


def end_with_fallback(message: Message, target: Status, *, details: EventDetails, now: datetime,
                      **conditions) -> bool:
    """DELIVERY_FAILED or EXPIRED, naming and starting the next message of the chain."""
    with transaction.atomic():
        fallback_id = _dormant_fallback(message)
        moved = lifecycle.transition(
            [message.id], target, details=replace(details, fallback_to=fallback_id or ""),
            now=now, **conditions,
        )
        if moved and fallback_id:
            start_messages([fallback_id], now=now)
        return bool(moved)


def _dormant_fallback(message: Message) -> str | None:
    if not message.fallback_to_id:
        return None
    waiting = Message.objects.filter(id=message.fallback_to_id, status=Status.PENDING).exists()
    return message.fallback_to_id if waiting else None


def start_messages(message_ids: Sequence[str], *, now: datetime) -> None:
    """Wake dormant messages (fallbacks): SCHEDULED if their sendAt is ahead, else QUEUED."""
    dormant = list(Message.objects.filter(id__in=message_ids, status=Status.PENDING))
    scheduling.schedule([m for m in dormant if m.send_at and m.send_at > now], now)
    now_ids = [m.id for m in dormant if not (m.send_at and m.send_at > now)]
    moved = lifecycle.transition(now_ids, Status.QUEUED, next_attempt_at=now + grace(), now=now)
    dispatch_on_commit([m.id for m in moved])
