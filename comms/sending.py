"""Attempts: hand claimed messages to their providers and record what they answered.

What a refusal means (a retry, a failure, the fallback) is decided in comms.outcomes."""

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from . import due, lifecycle, outcomes, pacing
from .claims import claim, release, wait_for_turns
from .lifecycle import Change, Only
from .models import Message
from .providers import ConfigError, Provider, ProviderError, Sent, provider_for
from .publish import receipts_on_commit
from .status import ErrorCode, Status

log = logging.getLogger(__name__)


def send_attempts(message_ids: Sequence[str], *, now: datetime | None = None) -> int:
    """Make one attempt for each of these messages that can be claimed; return how many."""
    now = now or timezone.now()
    messages = claim(message_ids, now)
    for message in [m for m in messages if m.expires_at and m.expires_at <= now]:
        outcomes.expired(message, now=now)
        pacing.release(message.channel_id, [message.id])
        messages.remove(message)
    messages = _their_turn(messages)
    # Stop well inside the claim's lease; what is left goes back to the queue.
    budget_ends = time.monotonic() + settings.RELAY_CLAIM_LEASE / 2
    providers: dict[int, Provider] = {}
    sent: list[Sent] = []
    held: dict[int, float] = {}  # channels their provider asked us to pause: id -> seconds
    paused: dict[Message, float] = {}
    for index, message in enumerate(messages):
        if time.monotonic() > budget_ends:
            release(messages[index:], timezone.now())
            messages = messages[:index]
            break
        if message.channel_id in held:
            paused[message] = held[message.channel_id]
            continue
        item = _attempt(message, providers, held)
        sent += [item] if item is not None else []
    for provider in providers.values():
        provider.close()
    record_sent(sent, providers, timezone.now())
    wait_for_turns(paused, timezone.now())
    return len(messages) - len(paused)


def _their_turn(messages: list[Message]) -> list[Message]:
    """The messages whose turn it is on their channel (comms.pacing), oldest due first; the
    others are given back to wait for theirs."""
    queues: dict[int, list[Message]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.due_at is None, m.due_at, m.created_at)):
        queues[message.channel_id].append(message)
    going, waiting = [], {}
    for queue in queues.values():
        for message, wait in zip(queue, pacing.waits(queue[0].channel, [m.id for m in queue]), strict=True):
            if wait > 0:
                waiting[message] = wait
            else:
                going.append(message)
    wait_for_turns(waiting, timezone.now())
    return going


def _attempt(message, providers: dict[int, Provider], held: dict[int, float]) -> Sent | None:
    """Hand one attempt to its provider; a refusal is decided on the spot."""
    channel = message.channel
    attempt = message.attempts + 1
    try:
        # Inside the try: a channel no provider can serve fails its own messages only.
        provider = providers.get(channel.id) or providers.setdefault(channel.id, provider_for(channel))
        if not channel.enabled:
            raise ProviderError(ErrorCode.CHANNEL_UNAVAILABLE, "The channel is disabled")
        return Sent(message, attempt, provider.send(message, attempt=attempt))
    except ProviderError as error:
        if error.code == ErrorCode.RATE_LIMITED:
            # The whole channel pauses for what the provider asked (else its first retry delay).
            asked = channel.retry_delay if error.retry_after is None else error.retry_after
            held[channel.id] = min(asked, pacing.MAX_HOLD)
            pacing.hold(channel, held[channel.id])
        outcomes.refused(message, error, attempt=attempt)
    except ConfigError as exc:  # an operator can fix it, so it is retried
        log.error("channel %s cannot send: %s", channel.name, exc)
        outcomes.refused(message, ProviderError(ErrorCode.CHANNEL_UNAVAILABLE, f"The channel is misconfigured: {exc}",
                                                raw_code="config"), attempt=attempt)
    except Exception as exc:  # a provider bug must not strand the rest of the chunk
        log.exception("provider %s crashed on message %s", channel.type, message.id)
        outcomes.refused(message, ProviderError(ErrorCode.CHANNEL_UNKNOWN_ERROR, raw_code=type(exc).__name__),
                         attempt=attempt)
    return None


def record_sent(sent: list[Sent], providers: dict[int, Provider], now: datetime) -> None:
    """SENT for each attempt, in one UPDATE per attempt number; then the receipts the
    providers give back themselves (the simulator's, an SMTP server's acceptance)."""
    by_attempt: dict[int, list[Sent]] = defaultdict(list)
    for item in sent:
        by_attempt[item.attempt].append(item)
    moved_ids: set[str] = set()
    for attempt, items in by_attempt.items():
        refs = {i.message.id: i.provider_ref for i in items}
        # When to ask the provider again if no receipt has come.
        checks = {i.message.id: due.after(now, providers[i.message.channel_id].receipt_timeout(i.message))
                  for i in items}
        change = Change(Status.SENT, count_attempt=True, per_message={"provider_ref": refs, "due_at": checks})
        moved = lifecycle.transition(list(refs), change, only=Only(attempts=attempt - 1), now=now)
        moved_ids.update(m.id for m in moved)
    by_channel: dict[int, list[Sent]] = defaultdict(list)
    for item in sent:
        if item.message.id in moved_ids:
            by_channel[item.message.channel_id].append(item)
        else:
            log.warning("attempt %d of %s was sent after its claim lapsed", item.attempt, item.message.id)
    for channel_id, items in by_channel.items():
        provider = providers[channel_id]
        local = provider.receipts_after_sent(items)
        if local is not None:
            receipts_on_commit(provider.channel.name, local.payloads, countdown=local.delay)
