"""comms 0002: next_attempt_at and claimed_until carried over to due_at and leased_until.

The old column put margins on top of due times (a grace on a published row, a retry and a
look at sendAt; a grace and a lease on a claimed row); the new one holds the due time itself
(comms.due). The migration runs for real on a scratch database of the suite's backend (a file
for SQLite, a database of its own on PostgreSQL), standing in for the default connection, so
the test database and its transaction are never touched: migrated to 0001, rows written with
raw SQL as the old code left them, migrated to 0002, read back.
"""

import os
from datetime import timedelta

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from comms.due import grace, lease, lookahead
from comms.status import Status

pytestmark = pytest.mark.django_db

BEFORE = ("comms", "0001_initial")
AFTER = ("comms", "0002_due_at_and_lease")


def _server(original, sql: str) -> None:
    """CREATE or DROP DATABASE: outside any transaction, on the server's maintenance database."""
    with original._nodb_cursor() as cursor:
        cursor.execute(sql)


@pytest.fixture
def scratch(settings, tmp_path):
    """An empty database of the suite's backend, as the default connection while the test runs."""
    settings.MIGRATION_MODULES = {}  # the suite runs with --no-migrations
    original = connections[DEFAULT_DB_ALIAS]
    postgres = original.vendor == "postgresql"
    if postgres:
        name = f"{original.settings_dict['NAME']}_m0002_{os.getpid()}"
        _server(original, f'DROP DATABASE IF EXISTS "{name}"')
        _server(original, f'CREATE DATABASE "{name}"')
    else:
        name = str(tmp_path / "scratch.sqlite3")
    wrapper = original.__class__({**original.settings_dict, "NAME": name}, alias=DEFAULT_DB_ALIAS)
    # RunPython's queries go to the default alias: the scratch database stands in for it.
    connections[DEFAULT_DB_ALIAS] = wrapper
    try:
        yield wrapper
    finally:
        connections[DEFAULT_DB_ALIAS] = original
        wrapper.close()
        if postgres:
            _server(original, f'DROP DATABASE IF EXISTS "{name}"')


def migrate(db, target: tuple[str, str]) -> MigrationExecutor:
    executor = MigrationExecutor(db)
    executor.migrate([target])
    return executor


class OldRows:
    """Messages written into the 0001 schema, as the old code left them."""

    def __init__(self, db):
        self.db = db
        self.count = 0
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO comms_application (id, name, is_admin, created_at) VALUES (1, 'acme', %s, %s)",
                           [False, self._at(timezone.now())])
            cursor.execute("INSERT INTO comms_channel (id, name, type, config, max_attempts, retry_delay, enabled, "
                           "created_at, updated_at) VALUES (1, 'sim', 'simulator', '{}', 3, 10, %s, %s, %s)",
                           [True, self._at(timezone.now()), self._at(timezone.now())])

    def _at(self, moment):
        return self.db.ops.adapt_datetimefield_value(moment)

    def add(self, status: Status, next_attempt_at, claimed_until=None, send_at=None) -> str:
        self.count += 1
        message_id = f"{self.count:032d}"
        now = self._at(timezone.now())
        with self.db.cursor() as cursor:
            cursor.execute(
                "INSERT INTO comms_message (id, application_id, channel_id, sender, receiver, content, context, "
                "status, attempts, event_seq, send_at, provider_ref, next_attempt_at, claimed_until, "
                "created_at, updated_at) VALUES (%s, 1, 1, '', '+447700900123', '{}', '{}', %s, 0, 1, %s, '', "
                "%s, %s, %s, %s)",
                [message_id, status.value, self._at(send_at), self._at(next_attempt_at), self._at(claimed_until),
                 now, now])
        return message_id


def carried_over(executor: MigrationExecutor) -> dict[str, tuple]:
    """(due_at, leased_until) of every message, read with the model as of 0002."""
    executor.loader.build_graph()
    message = executor.loader.project_state(AFTER).apps.get_model("comms", "Message")
    return {m["id"]: (m["due_at"], m["leased_until"]) for m in message.objects.values("id", "due_at", "leased_until")}


AT_REST = sorted(set(Status) - {Status.QUEUED, Status.DELIVERY_RETRIED, Status.SCHEDULED, Status.SENT})


def test_each_row_is_carried_over_to_its_due_time_and_lease(scratch):
    t = timezone.now().replace(microsecond=0)
    migrate(scratch, BEFORE)
    rows = OldRows(scratch)
    soon, far = t + timedelta(seconds=60), t + timedelta(days=1)
    expected = {
        # Published at t: the old row waited a grace for its task; due at t.
        rows.add(Status.QUEUED, t + grace()): (t, None),
        # Claimed at t: a grace and a lease on top; due when claimed, leased for the lease.
        rows.add(Status.QUEUED, t + grace() + lease(), t + lease()): (t, t + lease()),
        # A retry due at t + 30 s, unclaimable until then.
        rows.add(Status.DELIVERY_RETRIED, t + timedelta(seconds=30) + grace()): (t + timedelta(seconds=30), None),
        rows.add(Status.DELIVERY_RETRIED, t + grace() + lease(), t + lease()): (t, t + lease()),
        # Within the lookahead: looked at a grace after sendAt; now due at sendAt.
        rows.add(Status.SCHEDULED, soon + grace(), send_at=soon): (soon, None),
        # Beyond it: its countdown is due a lookahead before sendAt, as before.
        rows.add(Status.SCHEDULED, far - lookahead(), send_at=far): (far - lookahead(), None),
        # Waiting for a receipt: asked again after the receipt timeout, as before.
        rows.add(Status.SENT, t + timedelta(seconds=30)): (t + timedelta(seconds=30), None),
        rows.add(Status.SENT, None): (None, None),
        # Statuses that wait for nothing have nothing due, whatever stale time they held.
        **{rows.add(status, t): (None, None) for status in AT_REST},
    }

    executor = migrate(scratch, AFTER)

    assert carried_over(executor) == expected


def test_the_due_index_follows_the_column(scratch):
    migrate(scratch, AFTER)

    with scratch.cursor() as cursor:
        constraints = scratch.introspection.get_constraints(cursor, "comms_message")
        columns = {c.name for c in scratch.introspection.get_table_description(cursor, "comms_message")}
    assert constraints["message_due_at"]["columns"] == ["due_at"]
    assert "message_due_work" not in constraints
    assert {"due_at", "leased_until"} <= columns
    assert not {"next_attempt_at", "claimed_until"} & columns


def test_a_row_the_old_sweeper_republished_after_a_lapsed_claim_is_due_from_that_sweep(scratch):
    t = timezone.now().replace(microsecond=0)  # the old sweep; the claim was made a grace and a lease before
    migrate(scratch, BEFORE)
    rows = OldRows(scratch)
    swept = rows.add(Status.QUEUED, t + grace(), claimed_until=t - grace())

    executor = migrate(scratch, AFTER)

    due_at, leased_until = carried_over(executor)[swept]
    assert (due_at, leased_until) == (t, None)
