"""Send rates that hold across the fleet: a channel's rateLimit, and the pause a provider asks for.

Each paced channel keeps a schedule of turns (GCRA): the next free turn advances 1/rate
seconds for every message that takes one. A claimed message takes the next turn; when that
turn is ahead, the message waits for it in the database (due then, its task published with
the countdown) and keeps the turn, so waiting messages go in the order they took their turns
and none is failed for the rate. No worker sleeps.

Turns that come late (a stalled worker, a task claimed by another's chunk) are not sent as a
burst: two attempts of a paced channel go at least 0.9 of an interval apart.

A provider's RATE_LIMITED holds the whole channel (paced or not) until the time it asks:
nothing of it is attempted before then.

The schedule lives in Redis when the broker is Redis (one Lua script: atomic across every
worker, on Redis's clock), else in a locked file under RELAY_VAR_DIR (the embedded default:
the processes of one machine).
"""

import fcntl
import json
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import redis
from django.conf import settings

# A turn this close is taken now: a countdown fires on time or a little late, never early
# by more than the clocks' granularity.
EARLY = 0.005
# Two attempts of a paced channel go at least this share of its interval apart, even when
# late turns meet (a stalled worker's, a task taken by another's claim): lateness is made up
# a tenth of an interval per message instead of sent as a burst.
SPACING = 0.9
# Turns not taken within this long (a message cancelled or expired while it waited) are
# forgotten; the message takes a new turn if it ever comes back.
FORGET_AFTER = 3600.0

TAKE_TURNS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local interval, early, forget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local spacing = interval * tonumber(ARGV[4])
local next_turn = tonumber(redis.call('GET', KEYS[1]) or '0')
local last_go = tonumber(redis.call('GET', KEYS[4]) or '0')
local free = math.max(last_go + spacing, tonumber(redis.call('GET', KEYS[2]) or '0'))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - forget)
local waits = {}
for i = 5, #ARGV do
  local turn = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[i]))
  if turn == nil then
    turn = math.max(next_turn, now)
    if interval > 0 then
      next_turn = turn + interval
      redis.call('ZADD', KEYS[3], turn, ARGV[i])
    end
  end
  local at = math.max(turn, free)
  local wait = at - now
  if wait <= early then
    redis.call('ZREM', KEYS[3], ARGV[i])
    wait, last_go, at = 0, now, now
  end
  free = at + spacing
  waits[#waits + 1] = tostring(wait)
end
if interval > 0 then
  local ttl = math.ceil(next_turn - now + forget)
  redis.call('SET', KEYS[1], tostring(next_turn), 'EX', ttl)
  redis.call('SET', KEYS[4], tostring(last_go), 'EX', ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return waits
"""

HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local hold = now + tonumber(ARGV[1])
if hold > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], tostring(hold), 'EX', math.ceil(tonumber(ARGV[1])) + 1)
end
"""


def waits(channel, message_ids: Sequence[str]) -> list[float]:
    """Seconds each of these messages (in the order they take their turns) must wait
    before its attempt; 0 for those that may go now."""
    if not message_ids:
        return []
    interval = 1.0 / channel.rate_limit if channel.rate_limit else 0.0
    return _schedule().take_turns(channel.id, interval, list(message_ids))


def hold(channel, seconds: float) -> None:
    """Attempt nothing of this channel for `seconds` (a provider said it is rate limiting us)."""
    _schedule().hold(channel.id, max(seconds, 0.0))


def forget() -> None:
    """Forget every channel's turns and pauses (a test's fresh start)."""
    _schedule().forget()


@cache
def _schedule():
    url = settings.RELAY_PACING_URL
    return RedisSchedule(url) if url.startswith(("redis://", "rediss://")) else FileSchedule(Path(url))


class RedisSchedule:
    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self._take_turns = self.client.register_script(TAKE_TURNS)
        self._hold = self.client.register_script(HOLD)

    def take_turns(self, channel_id: int, interval: float, ids: list[str]) -> list[float]:
        keys = [f"relay:pace:{channel_id}:{part}" for part in ("next", "hold", "turns", "last")]
        args = [interval, EARLY, FORGET_AFTER, SPACING, *ids]
        return [float(w) for w in self._take_turns(keys=keys, args=args)]

    def hold(self, channel_id: int, seconds: float) -> None:
        self._hold(keys=[f"relay:pace:{channel_id}:hold"], args=[seconds])

    def forget(self) -> None:
        keys = list(self.client.scan_iter(match="relay:pace:*", count=1000))
        if keys:
            self.client.delete(*keys)


class FileSchedule:
    """The same schedule in a JSON file per channel, under an exclusive lock."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def take_turns(self, channel_id: int, interval: float, ids: list[str]) -> list[float]:
        with self._state(channel_id) as state:
            now, spacing = time.time(), interval * SPACING
            state["turns"] = {i: t for i, t in state["turns"].items() if t > now - FORGET_AFTER}
            free = max(state["last"] + spacing, state["hold"])
            result = []
            for message_id in ids:
                turn = state["turns"].get(message_id)
                if turn is None:
                    turn = max(state["next"], now)
                    if interval > 0:
                        state["next"] = turn + interval
                        state["turns"][message_id] = turn
                at = max(turn, free)
                if at - now <= EARLY:
                    state["turns"].pop(message_id, None)
                    state["last"] = at = now
                result.append(max(at - now, 0.0))
                free = at + spacing
            return result

    def hold(self, channel_id: int, seconds: float) -> None:
        with self._state(channel_id) as state:
            state["hold"] = max(state["hold"], time.time() + seconds)

    def forget(self) -> None:
        for path in self.directory.glob("channel-*.json"):
            path.unlink(missing_ok=True)

    def _state(self, channel_id: int) -> "_LockedState":
        return _LockedState(self.directory / f"channel-{channel_id}.json")


class _LockedState:
    """A channel's schedule, read and written back under an exclusive lock of its file."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> dict:
        self.file = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.file, fcntl.LOCK_EX)
        self.file.seek(0)
        text = self.file.read()
        self.state = {"next": 0.0, "hold": 0.0, "last": 0.0, "turns": {}, **(json.loads(text) if text else {})}
        return self.state

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.file.seek(0)
                self.file.truncate()
                self.file.write(json.dumps(self.state))
                self.file.flush()
        finally:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
