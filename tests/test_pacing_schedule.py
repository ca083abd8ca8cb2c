"""comms.pacing's schedule of turns, on both of its homes (Redis's Lua script, and the locked
files of the embedded default) with the same expectations: spacing and order, turns kept
while waiting, late turns pushed back rather than sent as a burst, turns released, a new
rate, a pause, and two processes never taking the same turn."""

import time
from multiprocessing import get_context
from pathlib import Path

import pytest
from django.conf import settings

from comms import pacing
from comms.pacing_files import FileSchedule
from comms.pacing_redis import RedisSchedule

RATE = 5  # per second: a turn every 0.2 s
INTERVAL = 1 / RATE
SPACED = round(INTERVAL * pacing.SPACING, 2)  # 0.18 s: late turns go at least this far apart
RULES = {"early": pacing.EARLY, "spacing": pacing.SPACING, "forget_after": pacing.FORGET_AFTER}


def _redis_url() -> str | None:
    url = settings.CELERY_BROKER_URL
    return url if url.startswith("redis://") else None


def _made(kind: str, where: str):
    return FileSchedule(Path(where), **RULES) if kind == "file" else RedisSchedule(where, **RULES)


@pytest.fixture(params=["file", "redis"])
def schedule(request, tmp_path):
    where = str(tmp_path / "pacing") if request.param == "file" else _redis_url()
    if where is None:
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...)")
    made = _made(request.param, where)
    made.forget()
    yield made
    made.forget()


def rounded(waits: list[float]) -> list[float]:
    return [round(w, 2) for w in waits]


def test_an_unpaced_channel_never_waits(schedule):
    assert schedule.take_turns(1, 0.0, ["a", "b", "c"]) == [0, 0, 0]


def test_turns_are_spaced_by_the_rate_in_the_order_taken(schedule):
    assert rounded(schedule.take_turns(1, INTERVAL, ["a", "b", "c", "d"])) == [0, 0.2, 0.4, 0.6]


def test_a_waiting_message_keeps_its_turn_and_later_ones_queue_behind_it(schedule):
    schedule.take_turns(1, INTERVAL, ["a", "b", "c"])
    assert rounded(schedule.take_turns(1, INTERVAL, ["c", "d"])) == [0.4, 0.6]  # c's own turn, d after it


def test_a_message_whose_turn_has_come_goes(schedule):
    schedule.take_turns(1, INTERVAL, ["a", "b"])
    time.sleep(0.21)
    assert schedule.take_turns(1, INTERVAL, ["b"]) == [0]


def test_channels_keep_their_own_turns(schedule):
    schedule.take_turns(1, INTERVAL, ["a", "b"])
    assert schedule.take_turns(2, INTERVAL, ["x"]) == [0]


def test_late_turns_are_not_sent_as_a_burst(schedule):
    """Turns that come due together (their tasks were late) go most of an interval apart."""
    schedule.take_turns(1, INTERVAL, ["a", "b", "c", "d"])  # a goes; b, c, d wait
    time.sleep(0.65)  # b, c and d are all due now
    assert rounded(schedule.take_turns(1, INTERVAL, ["b", "c", "d"])) == [0, SPACED, 2 * SPACED]


def test_late_turns_asking_one_by_one_are_pushed_back_to_distinct_times(schedule):
    """Each late message keeps the time it was pushed back to, so late ones asking in
    separate tasks do not all come back together (and again, and again)."""
    schedule.take_turns(1, INTERVAL, ["a", "b", "c", "d"])
    time.sleep(0.65)
    waits = [schedule.take_turns(1, INTERVAL, [m])[0] for m in ("b", "c", "d")]
    assert waits[0] == 0
    assert 0.15 < waits[1] < 0.19 and 0.33 < waits[2] < 0.37
    # And each goes when it comes back at the time it was given.
    time.sleep(waits[1])
    assert schedule.take_turns(1, INTERVAL, ["c"]) == [0]


def test_turns_behind_a_pushed_one_queue_after_it(schedule):
    schedule.take_turns(1, INTERVAL, ["a", "b", "c"])
    time.sleep(0.45)  # b (0.2) and c (0.4) are late
    schedule.take_turns(1, INTERVAL, ["b", "c"])  # b goes, c is pushed back to +0.18
    assert round(schedule.take_turns(1, INTERVAL, ["new"])[0], 2) == 2 * SPACED + 0.02  # after c, an interval on


def test_a_released_turn_moves_the_ones_behind_up(schedule):
    schedule.take_turns(1, INTERVAL, ["a", "b", "c"])
    schedule.release(1, ["c"])  # cancelled while it waited
    assert rounded(schedule.take_turns(1, INTERVAL, ["d"])) == [0.4]  # c's turn, not one after it


def test_a_new_rate_voids_the_turns_taken_at_the_old_one(schedule):
    schedule.take_turns(1, INTERVAL, ["a", "b", "c", "d", "e"])  # e's turn: 0.8 s
    assert rounded(schedule.take_turns(1, 1 / 20, ["e", "f"])) == [0.05, 0.1]


def test_removing_the_rate_leaves_no_queue_behind(schedule):
    schedule.take_turns(1, INTERVAL, [f"m{i}" for i in range(50)])  # ten seconds of turns
    assert schedule.take_turns(1, 0.0, ["m49", "new"]) == [0, 0]


def test_a_pause_holds_paced_and_unpaced_channels_alike(schedule):
    schedule.hold(1, 3.0)
    schedule.hold(2, 3.0)
    assert all(2.9 < w <= 3.0 for w in schedule.take_turns(1, 0.0, ["a", "b"]))
    paced = schedule.take_turns(2, INTERVAL, ["x", "y"])
    assert 2.9 < paced[0] <= 3.0  # x's turn (now) falls in the pause: it goes when it ends
    assert round(paced[1] - paced[0], 2) == INTERVAL  # and y one interval after it, not in a burst


def test_a_shorter_pause_does_not_cut_a_longer_one(schedule):
    schedule.hold(1, 5.0)
    schedule.hold(1, 1.0)
    assert schedule.take_turns(1, 0.0, ["a"])[0] > 4.9


def test_forget_clears_every_channel(schedule):
    schedule.take_turns(1, INTERVAL, ["a", "b"])
    schedule.hold(2, 60)
    schedule.forget()
    assert schedule.take_turns(1, INTERVAL, ["c"]) == [0]
    assert schedule.take_turns(2, 0.0, ["d"]) == [0]


def test_an_unreadable_schedule_file_starts_afresh(tmp_path, caplog):
    made = FileSchedule(tmp_path, **RULES)
    made.take_turns(1, INTERVAL, ["a", "b"])
    (tmp_path / "channel-1.json").write_text('{"turns": {"b": 1')  # a write cut short
    assert made.take_turns(1, INTERVAL, ["c"]) == [0]
    assert "unreadable" in caplog.text


def _take_many(kind: str, where: str, prefix: str, count: int, out) -> None:
    """In a process of its own: take `count` turns one by one; put when each falls."""
    made = _made(kind, where)
    out.put([made.take_turns(1, 0.05, [f"{prefix}{i}"])[0] + time.time() for i in range(count)])


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_two_processes_never_take_the_same_turn(kind, tmp_path):
    """What makes the rate hold across workers: turns taken at once by two processes are
    all distinct, one interval apart."""
    where = str(tmp_path / "pacing") if kind == "file" else _redis_url()
    if where is None:
        pytest.skip("needs Redis (CELERY_BROKER_URL=redis://...)")
    _made(kind, where).forget()
    forked = get_context("fork")  # the children need no Django, only the schedule
    out = forked.Queue()
    workers = [forked.Process(target=_take_many, args=(kind, where, p, 40, out)) for p in ("a", "b")]
    for worker in workers:
        worker.start()
    turns = sorted(out.get(timeout=60) + out.get(timeout=60))
    for worker in workers:
        worker.join()
    _made(kind, where).forget()
    # A turn is when it was asked plus its wait, read on this machine's clock: two taken
    # alike would fall together; all 80 are one interval (50 ms) apart, give or take the
    # few milliseconds between the schedule answering and the clock being read.
    assert min(b - a for a, b in zip(turns, turns[1:], strict=False)) > 0.03
