"""Row locking between real connections: the sweeper's SKIP LOCKED and concurrent claims.

SQLite has one writer and ignores FOR UPDATE, so this module runs on PostgreSQL only. Tests
commit for real (transaction=True) so a second connection sees their rows; a connection that
should never wait has a lock_timeout, so waiting fails the test instead of hanging it.
"""

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from comms import claims, sweeper
from comms.models import Message
from comms.submission import message_submit

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

TABLE = Message._meta.db_table
WAIT_LIMIT = 10.0  # seconds: far more than any of this takes; only a hang reaches it


@pytest.fixture
def t0():
    return timezone.now()


@pytest.fixture
def submit(application, channel, published, t0):
    """Commit a QUEUED message at t0 (its send task is recorded, then forgotten)."""

    def submit() -> Message:
        data = {"channel": channel, "receiver": "+447700900123", "content": {"text": "Hi"}}
        message, _ = message_submit(application=application, data=data, now=t0)
        published.clear()
        return message

    return submit


@pytest.fixture
def other_connection():
    """A second, independent connection to the test database, in a transaction of its own."""
    other = connections.create_connection("default")
    other.set_autocommit(False)
    yield other
    other.rollback()
    other.close()


def lock_rows(other, message_ids: list[str]) -> list[str]:
    """Take the row locks on these messages in `other`'s open transaction."""
    with other.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {TABLE} WHERE id = ANY(%s) FOR UPDATE", [message_ids])
        return [row[0] for row in cursor.fetchall()]


def sweep_without_waiting(now) -> dict[str, int]:
    """A sweep that raises (lock_timeout) if it ever waits for a row lock."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
        return sweeper.sweep_due_work(now=now)


def test_the_sweeper_skips_rows_another_transaction_holds_locked(submit, other_connection, published, t0):
    held, free = submit(), submit()
    assert lock_rows(other_connection, [held.id]) == [held.id]

    counts = sweep_without_waiting(t0 + timedelta(seconds=settings.RELAY_DISPATCH_GRACE))

    assert counts["dispatched"] == 1
    assert published.sent_ids() == [free.id]


def test_the_sweeper_leaves_a_locked_rows_due_time_alone(submit, other_connection):
    held = submit()
    due = Message.objects.get(id=held.id).due_at
    lock_rows(other_connection, [held.id])

    sweep_without_waiting(due + timedelta(seconds=settings.RELAY_DISPATCH_GRACE))  # it would be taken

    other_connection.rollback()
    assert Message.objects.get(id=held.id).due_at == due


def test_the_sweeper_finds_nothing_when_every_due_row_is_locked(submit, other_connection, published, t0):
    ids = [submit().id for _ in range(3)]
    lock_rows(other_connection, ids)

    counts = sweep_without_waiting(t0 + timedelta(seconds=settings.RELAY_DISPATCH_GRACE))

    assert counts == {"dispatched": 0, "released": 0, "polled": 0, "cleared": 0}
    assert published.sent_ids() == []


def race_claims(other, asked: dict[str, list[str]], now) -> dict[str, list[str]]:
    """Run one claim per entry of `asked` in its own thread and connection, released together
    by a barrier so the claims overlap. Returns the ids each claimer got. (Claims skip rows
    another transaction holds rather than wait: see the tests below for held rows.)"""
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(asked))

    def claimer(name: str) -> None:
        try:
            start.wait(WAIT_LIMIT)
            results[name] = [m.id for m in claims.claim(asked[name], now)]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(name,)) for name in asked]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_LIMIT)
    assert errors == []
    return results


def test_concurrent_claims_of_the_same_ids_give_each_message_to_exactly_one_claimer(
        submit, other_connection, t0):
    ids = [submit().id for _ in range(20)]

    got = race_claims(other_connection, {"a": ids, "b": ids}, t0)

    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(ids)


def test_concurrent_claims_filling_up_from_each_others_ids_never_share_a_message(
        submit, other_connection, t0):
    ids = [submit().id for _ in range(20)]

    got = race_claims(other_connection, {"a": ids[:10], "b": ids[10:]}, t0)

    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(ids)


def test_a_claim_skips_asked_rows_another_transaction_holds_instead_of_waiting(submit, other_connection, t0):
    held, free = submit(), submit()
    lock_rows(other_connection, [held.id])

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
        claimed = {m.id for m in claims.claim([held.id, free.id], t0)}

    assert claimed == {free.id}


def test_a_claim_skips_rows_another_claimer_holds_when_filling_up(submit, other_connection, t0):
    wanted, held, spare = submit(), submit(), submit()
    lock_rows(other_connection, [held.id])

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
        claimed = {m.id for m in claims.claim([wanted.id], t0)}

    assert claimed == {wanted.id, spare.id}
