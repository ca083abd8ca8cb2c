"""A delivery's status changes in one place (deliveries.lifecycle), on a guard; the round
that records attempts writes the subscription's health in the same transaction; migration
0004 carries existing rows over to due_at."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import OperationalError, connection, connections
from django.utils import timezone

from comms.due import lease
from deliveries import health, http, lifecycle, recording, services
from deliveries.claims import Claim, claim
from deliveries.health import State, state_of
from deliveries.lifecycle import Change, Only, change_deliveries
from deliveries.models import Delivery, Subscription
from deliveries.recording import record_round
from tests.timing import seconds
from tests.webhooks import submit, subscribe

pytestmark = pytest.mark.usefixtures("published")

Status = Delivery.Status


@pytest.fixture
def claimed(application, channel) -> Claim:
    """One delivery, claimed for an attempt."""
    sub = subscribe(application)
    submit(application, channel)
    return claim(sub.id, [], timezone.now())


def held_by(claimed: Claim) -> Only:
    return Only(from_statuses={Status.PENDING}, lease=claimed.lease)


def change_one(claimed: Claim, change: Change, only: Only | None = None) -> tuple[dict[str, str], Delivery]:
    (delivery,) = claimed.deliveries
    moved = change_deliveries(changes={delivery.id: change}, only=only or held_by(claimed), now=timezone.now())
    return moved, Delivery.objects.get(id=delivery.id)


# --- the change and its guard ------------------------------------------------------------


def test_a_change_under_its_claim_moves_the_delivery_and_ends_the_lease(claimed):
    moved, delivery = change_one(claimed, Change(Status.SUCCEEDED, attempts=1, last_status_code=200))

    assert moved == {delivery.id: delivery.subscription_id}
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert (delivery.due_at, delivery.leased_until) == (None, None)


def test_a_retry_keeps_the_delivery_pending_and_due_at_its_time_exactly(claimed):
    due = timezone.now() + seconds(30)

    _, delivery = change_one(claimed, Change(Status.PENDING, due_at=due, attempts=1))

    assert (delivery.status, delivery.due_at, delivery.leased_until) == ("pending", due, None)


def test_a_finished_delivery_has_nothing_due_whatever_the_change_says(claimed):
    _, delivery = change_one(claimed, Change(Status.FAILED, due_at=timezone.now()))

    assert (delivery.status, delivery.due_at) == ("failed", None)


def test_a_field_left_out_of_a_change_keeps_its_value(claimed):
    (held,) = claimed.deliveries
    Delivery.objects.filter(id=held.id).update(attempts=2, last_status_code=503, last_error="HTTP 503")

    _, delivery = change_one(claimed, Change(Status.FAILED, last_error="subscription disabled"))

    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (2, 503, "subscription disabled")


def test_a_delivery_no_longer_pending_is_not_changed(claimed):
    (held,) = claimed.deliveries
    Delivery.objects.filter(id=held.id).update(status=Status.FAILED)

    moved, delivery = change_one(claimed, Change(Status.SUCCEEDED))

    assert (moved, delivery.status) == ({}, "failed")


def test_a_delivery_claimed_again_by_another_is_not_changed_under_the_first_claim(claimed):
    (held,) = claimed.deliveries
    second = claim(held.subscription_id, [], timezone.now() + lease() + seconds(1))  # the first lapsed

    moved, delivery = change_one(claimed, Change(Status.SUCCEEDED))

    assert moved == {}
    assert (delivery.status, delivery.leased_until) == ("pending", second.lease)


def test_a_move_the_table_does_not_allow_changes_nothing(claimed):
    (held,) = claimed.deliveries
    Delivery.objects.filter(id=held.id).update(status=Status.SUCCEEDED, due_at=None, leased_until=None)

    moved, delivery = change_one(claimed, Change(Status.FAILED), Only(from_statuses=set(Status)))

    assert (moved, delivery.status) == ({}, "succeeded")


def test_deliveries_changed_differently_in_one_call_all_move(settings, application, channel):
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 2
    sub = subscribe(application)
    submit(application, channel)
    submit(application, channel)
    claimed = claim(sub.id, [], timezone.now())
    landed, retried = claimed.deliveries
    changes = {landed.id: Change(Status.SUCCEEDED),
               retried.id: Change(Status.PENDING, due_at=timezone.now() + seconds(5))}

    moved = change_deliveries(changes=changes, only=held_by(claimed), now=timezone.now())

    assert moved == {landed.id: sub.id, retried.id: sub.id}
    assert dict(Delivery.objects.values_list("id", "status")) == {landed.id: "succeeded", retried.id: "pending"}


def test_more_deliveries_than_one_update_takes_all_move(monkeypatch, application, channel):
    monkeypatch.setattr(lifecycle, "CHUNK", 2)
    sub = subscribe(application)
    for _ in range(3):
        submit(application, channel)
    ids = list(Delivery.objects.values_list("id", flat=True))
    Delivery.objects.update(status=Status.FAILED, due_at=None)

    moved = change_deliveries(changes=dict.fromkeys(ids, Change(Status.PENDING, due_at=timezone.now())),
                              only=Only(from_statuses=set(Status)), now=timezone.now())

    assert moved == dict.fromkeys(ids, sub.id)


# --- the retry endpoint ------------------------------------------------------------------


def test_the_retry_endpoint_changes_the_status_through_the_lifecycle(api, claimed, monkeypatch):
    (delivery,) = claimed.deliveries
    calls = []
    through = lifecycle.change_deliveries
    monkeypatch.setattr(lifecycle, "change_deliveries", lambda **kwargs: calls.append(kwargs) or through(**kwargs))

    response = api.post(f"/api/v1/deliveries/{delivery.id}/retry")

    assert response.status_code == 202
    assert [(set(c["changes"]), c["only"]) for c in calls] == [({delivery.id}, Only(from_statuses=services.REPLAY_FROM))]


def test_retrying_a_delivery_in_flight_leaves_it_to_the_attempt_under_way(api, claimed):
    (delivery,) = claimed.deliveries
    api.post(f"/api/v1/deliveries/{delivery.id}/retry")

    record_round(claimed, [http.Outcome(200, 5)], timezone.now())

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.due_at) == ("succeeded", 1, None)


# --- health, in the transaction of the attempts that caused it -------------------------------


@pytest.mark.parametrize("answer, unhealthy", [(500, State.FAILING), (410, State.INACTIVE)])
def test_a_failure_after_the_health_write_rolls_back_the_health_the_deliveries_and_the_attempts(
        claimed, monkeypatch, answer, unhealthy):
    (delivery,) = claimed.deliveries
    seen = []

    def fail_at_the_last_write(*batches):
        seen.append((state_of(Subscription.objects.get(id=delivery.subscription_id)),
                     Delivery.objects.get(id=delivery.id).status))
        raise OperationalError("the connection dropped mid-record")

    monkeypatch.setattr(recording.bulk, "insert", fail_at_the_last_write)  # the attempt rows

    with pytest.raises(OperationalError):
        record_round(claimed, [http.Outcome(answer, 5, error_kind="http_status")], timezone.now())

    assert seen == [(unhealthy, "failed" if answer == 410 else "pending")]  # written, then undone:
    assert state_of(Subscription.objects.get(id=delivery.subscription_id)) == State.HEALTHY
    assert Delivery.objects.filter(id=delivery.id, status="pending", leased_until=claimed.lease).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_round_that_changes_health_folds_it_in_under_the_subscriptions_lock(claimed, monkeypatch):
    # So a concurrent round of the same subscription waits, then adds to what this one wrote.
    (delivery,) = claimed.deliveries
    locked_out = []
    fold_in = health.record_outcomes

    def try_the_lock_elsewhere(subscription, *args, **kwargs):
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute(f"SELECT id FROM {Subscription._meta.db_table} WHERE id = %s "
                               "FOR NO KEY UPDATE NOWAIT", [delivery.subscription_id])
            locked_out.append(False)
        except OperationalError:
            locked_out.append(True)
        finally:
            other.close()
        return fold_in(subscription, *args, **kwargs)

    monkeypatch.setattr(health, "record_outcomes", try_the_lock_elsewhere)

    record_round(claimed, [http.Outcome(500, 5, error_kind="http_status")], timezone.now())

    assert locked_out == [True]
    assert state_of(Subscription.objects.get(id=delivery.subscription_id)) == State.FAILING


# --- migration 0004 ----------------------------------------------------------------------------

# Tests build their database without migrations, so this one runs them for real, in a child
# process on a throwaway SQLite database: rows made before 0004, 0004 applied to them.
MIGRATION_RUN = """
import json
from datetime import timedelta

import django

django.setup()
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from comms.accounts import application_create, channel_upsert
from comms.submission import message_submit
from deliveries.models import Delivery
from deliveries.services import subscription_create

call_command("migrate", verbosity=0)
application, _ = application_create(name="acme")
channel, _ = channel_upsert(name="sim", type="simulator")
subscription_create(application=application, url="https://example.com/hook")
for _ in range(3):
    message_submit(application=application, data={"channel": channel, "receiver": "+447700900123",
                                                  "content": {"text": "hi"}})
lapsed, live, finished = Delivery.objects.values_list("id", flat=True)
call_command("migrate", "deliveries", "0003_breaker_and_in_flight_bound", verbosity=0)
now = timezone.now()
at = connection.ops.adapt_datetimefield_value
with connection.cursor() as cursor:
    for row, status, leased in [(lapsed, "pending", now - timedelta(hours=1)),
                                (live, "pending", now + timedelta(hours=1)), (finished, "succeeded", None)]:
        cursor.execute("UPDATE deliveries_delivery SET status = %s, next_attempt_at = %s, leased_until = %s "
                       "WHERE id = %s", [status, at(now), at(leased), row])
call_command("migrate", verbosity=0)
rows = {name: Delivery.objects.values_list("due_at", "leased_until").get(id=row)
        for name, row in [("lapsed", lapsed), ("live", live), ("finished", finished)]}
print(json.dumps({"now": now.isoformat(), **{k: [v and v.isoformat() for v in r] for k, r in rows.items()}}))
"""


def test_migration_0004_keeps_due_times_and_clears_lapsed_leases_and_finished_due_times(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.sqlite3'}", "RELAY_VAR_DIR": str(tmp_path),
           "CELERY_BROKER_URL": "memory://", "DJANGO_SETTINGS_MODULE": "config.settings"}

    run = subprocess.run([sys.executable, "-c", MIGRATION_RUN], env=env, cwd=settings.BASE_DIR,
                         capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout.splitlines()[-1])
    now, in_an_hour = rows["now"], (datetime.fromisoformat(rows["now"]) + timedelta(hours=1)).isoformat()
    assert [rows["lapsed"], rows["live"], rows["finished"]] == [[now, None], [now, in_an_hour], [None, None]]
