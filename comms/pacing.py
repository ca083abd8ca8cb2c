"""Send rates that hold across the fleet: a channel's rateLimit, and the pause a provider asks for.

Each paced channel keeps a schedule of turns (GCRA): a message that asks takes the turn one
interval (1/rate seconds) after the last one held, or goes now when nothing is ahead of it.
A message whose turn is ahead waits for it in the database (due then, its task published
with the countdown) and keeps the turn, so waiting messages go in the order they took their
turns and none is failed for the rate. No worker sleeps.

Turns that come late (a stalled worker's, a task taken in another's chunk) are not sent as a
burst: two attempts of a paced channel go at least SPACING of an interval apart. A late
turn that cannot go yet is pushed back to the first free time, kept, and the turns behind it
queue after it; lateness is made up a tenth of an interval per message.

A provider's RATE_LIMITED holds the whole channel (paced or not) until the time it asks:
nothing of it is attempted before then.

A turn given up (the message cancelled or expired while it waited) is released, so nothing
queues behind a turn nobody will take. A new rate voids the turns handed out at the old
one: their messages take new turns when they come back.

The schedule lives in Redis when the broker is Redis (comms.pacing_redis: one Lua script,
atomic across every worker, on Redis's clock), else in a file per channel under
RELAY_VAR_DIR (comms.pacing_files: the processes of one machine).
"""

import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from django.conf import settings

from .outages import OUTAGES
from .pacing_files import FileSchedule
from .pacing_redis import RedisSchedule

log = logging.getLogger(__name__)

# A turn this close is taken now: a countdown fires on time or a little late, never early
# by more than the clocks' granularity.
EARLY = 0.005
# Two attempts of a paced channel go at least this share of its interval apart.
SPACING = 0.9
# Turns not taken within this long after they fell due are forgotten.
FORGET_AFTER = 3600.0
# The longest pause a provider's Retry-After may impose on a channel.
MAX_HOLD = 3600.0


def waits(channel, message_ids: Sequence[str]) -> list[float]:
    """Seconds each of these messages (in the order they take their turns) must wait
    before its attempt; 0 for those that may go now."""
    if not message_ids:
        return []
    interval = 1.0 / channel.rate_limit if channel.rate_limit else 0.0
    return _schedule().take_turns(channel.id, interval, list(message_ids))


def hold(channel, seconds: float) -> None:
    """Attempt nothing of this channel for `seconds` (a provider said it is rate limiting
    us). Best effort: a schedule out of reach must not undo the attempts already made."""
    try:
        _schedule().hold(channel.id, min(max(seconds, 0.0), MAX_HOLD))
    except OUTAGES + (OSError,) as exc:
        log.warning("channel %s not paused for %.0f s: %s", channel.name, seconds, exc)


def release(channel_id: int, message_ids: Sequence[str]) -> None:
    """Give up these messages' turns (cancelled, expired): the turns behind move up."""
    if not message_ids:
        return
    try:
        _schedule().release(channel_id, list(message_ids))
    except OUTAGES + (OSError,) as exc:  # the turn is forgotten an hour after it falls due
        log.warning("turns of %d message(s) not released: %s", len(message_ids), exc)


def forget() -> None:
    """Forget every channel's turns and pauses (a test's fresh start)."""
    _schedule().forget()


@cache
def _schedule():
    rules = {"early": EARLY, "spacing": SPACING, "forget_after": FORGET_AFTER}
    url = settings.RELAY_PACING_URL
    if url.startswith(("redis://", "rediss://")):
        return RedisSchedule(url, **rules)
    return FileSchedule(Path(url), **rules)
