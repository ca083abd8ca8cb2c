"""comms.pacing's schedule in Redis, for the whole fleet: one Lua script takes the turns
(atomic across every worker, on Redis's own clock). Keys per channel: `turns` (a sorted set
of the turns held by waiting messages), `last` (when the last attempt went), `pushed` (where
the next turn pushed back goes: after those pushed before it), `hold` (a provider's pause) and `rate` (the
interval the turns were taken at)."""

import redis

TAKE_TURNS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local interval, early, share, forget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local turns, last_key, pushed_key, hold_key, rate_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold = tonumber(redis.call('GET', hold_key) or '0')
local waits = {}
if interval <= 0 then
  -- No rate: a schedule left from one is void; only a pause applies.
  redis.call('DEL', turns, last_key, pushed_key, rate_key)
  local wait = hold - now
  if wait <= early then wait = 0 end
  for i = 5, #ARGV do waits[#waits + 1] = tostring(wait) end
  return waits
end
if redis.call('GET', rate_key) ~= ARGV[1] then
  -- A new rate: the turns handed out at the old one are void.
  redis.call('DEL', turns, pushed_key)
end
redis.call('ZREMRANGEBYSCORE', turns, '-inf', now - forget)
local spacing = interval * share
local last = tonumber(redis.call('GET', last_key) or '0')
local pushed = tonumber(redis.call('GET', pushed_key) or '0')
local top = redis.call('ZREVRANGE', turns, 0, 0, 'WITHSCORES')
local next_turn = math.max(now, last + interval)
if top[2] then next_turn = math.max(next_turn, tonumber(top[2]) + interval) end
local free = math.max(last + spacing, hold)
for i = 5, #ARGV do
  local id = ARGV[i]
  local turn = tonumber(redis.call('ZSCORE', turns, id))
  if turn == nil then
    turn, next_turn = next_turn, next_turn + interval
    redis.call('ZADD', turns, turn, id)
  end
  local at = math.max(turn, free)
  local wait = at - now
  if wait <= early then
    redis.call('ZREM', turns, id)
    wait, last, at = 0, now, now
  elseif at > turn then
    -- Pushed back: after the others pushed back before it, and it keeps that time.
    at = math.max(at, pushed)
    wait, pushed = at - now, at + spacing
    redis.call('ZADD', turns, at, id)
    next_turn = math.max(next_turn, at + interval)
  end
  free = at + spacing
  waits[#waits + 1] = tostring(wait)
end
local ttl = math.ceil(math.max(next_turn, pushed) - now + forget)
redis.call('SET', last_key, tostring(last), 'EX', ttl)
redis.call('SET', pushed_key, tostring(pushed), 'EX', ttl)
redis.call('SET', rate_key, ARGV[1], 'EX', ttl)
redis.call('EXPIRE', turns, ttl)
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

PARTS = ("turns", "last", "pushed", "hold", "rate")


class RedisSchedule:
    def __init__(self, url: str, *, early: float, spacing: float, forget_after: float):
        self.client = redis.Redis.from_url(url)
        self.rules = [early, spacing, forget_after]
        self._take_turns = self.client.register_script(TAKE_TURNS)
        self._hold = self.client.register_script(HOLD)

    def take_turns(self, channel_id: int, interval: float, ids: list[str]) -> list[float]:
        keys = [self._key(channel_id, part) for part in PARTS]
        return [float(w) for w in self._take_turns(keys=keys, args=[repr(float(interval)), *self.rules, *ids])]

    def hold(self, channel_id: int, seconds: float) -> None:
        self._hold(keys=[self._key(channel_id, "hold")], args=[seconds])

    def release(self, channel_id: int, ids: list[str]) -> None:
        self.client.zrem(self._key(channel_id, "turns"), *ids)

    def forget(self) -> None:
        keys = list(self.client.scan_iter(match="relay:pace:*", count=1000))
        if keys:
            self.client.delete(*keys)

    @staticmethod
    def _key(channel_id: int, part: str) -> str:
        return f"relay:pace:{channel_id}:{part}"
