"""comms.pacing's schedule on one machine (the embedded default, no Redis): the same turns as
comms.pacing_redis, in a JSON file per channel, read and replaced under an exclusive lock
that every process of the machine shares."""

import fcntl
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

FRESH = {"turns": {}, "last": 0.0, "pushed": 0.0, "hold": 0.0, "rate": None}


class FileSchedule:
    def __init__(self, directory: Path, *, early: float, spacing: float, forget_after: float):
        self.directory = directory
        self.early, self.spacing, self.forget_after = early, spacing, forget_after
        directory.mkdir(parents=True, exist_ok=True)

    def take_turns(self, channel_id: int, interval: float, ids: list[str]) -> list[float]:
        with _Locked(self.directory, channel_id) as state:
            now = time.time()
            if interval <= 0:  # no rate: a schedule left from one is void; only a pause applies
                state.update({**FRESH, "turns": {}, "hold": state["hold"]})
                wait = state["hold"] - now
                return [0.0 if wait <= self.early else wait for _ in ids]
            if state["rate"] != interval:  # a new rate: the turns handed out at the old one are void
                state.update(turns={}, pushed=0.0, rate=interval)
            state["turns"] = {i: t for i, t in state["turns"].items() if t > now - self.forget_after}
            return [self._take(state, message_id, interval, now) for message_id in ids]

    def _take(self, state: dict, message_id: str, interval: float, now: float) -> float:
        """One message's turn, as the Lua script takes it."""
        turns, spacing = state["turns"], interval * self.spacing
        free = state.get("free", max(state["last"] + spacing, state["hold"]))
        turn = turns.get(message_id)
        if turn is None:
            turn = max([now, state["last"] + interval, *(t + interval for t in turns.values())])
            turns[message_id] = turn
        at = max(turn, free)
        if at - now <= self.early:
            del turns[message_id]
            state["last"] = at = now
        elif at > turn:  # pushed back: after the others pushed back before it, and it keeps that time
            at = max(at, state["pushed"])
            turns[message_id], state["pushed"] = at, at + spacing
        state["free"] = at + spacing  # for the next message of this call only
        return 0.0 if at == now else at - now

    def hold(self, channel_id: int, seconds: float) -> None:
        with _Locked(self.directory, channel_id) as state:
            state["hold"] = max(state["hold"], time.time() + seconds)

    def release(self, channel_id: int, ids: list[str]) -> None:
        with _Locked(self.directory, channel_id) as state:
            for message_id in ids:
                state["turns"].pop(message_id, None)

    def forget(self) -> None:
        for path in self.directory.glob("channel-*.json"):
            path.unlink(missing_ok=True)


class _Locked:
    """A channel's schedule under an exclusive lock of its own lock file; written back by
    replacing the file whole, so a process killed mid-write leaves the old state, never half
    of one (and a file that cannot be read is logged and started afresh)."""

    def __init__(self, directory: Path, channel_id: int):
        self.path = directory / f"channel-{channel_id}.json"
        self.lock_path = directory / f"channel-{channel_id}.lock"

    def __enter__(self) -> dict:
        self.lock = open(self.lock_path, "a")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.state = {**FRESH, "turns": {}}
        try:
            self.state.update(json.loads(self.path.read_text()))
        except FileNotFoundError:
            pass
        except ValueError as exc:
            log.warning("pacing schedule %s unreadable (%s): starting it afresh", self.path, exc)
        return self.state

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.state.pop("free", None)
                temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps(self.state))
                os.replace(temporary, self.path)
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.lock.close()
