"""Isolation of webhook work: stage queues, one subscription per task, the in-flight bound,
the circuit breaker, follow-ups instead of a task per retry, and a sweeper that publishes per
subscription.

Attempts that cannot connect go to http://127.0.0.1:9 (nothing listens there: refused at
once); answered ones to the local receiver.
"""

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from comms.due import grace
from comms.status import Status
from config.celery import app as celery_app
from deliveries import http, sending
from deliveries.claims import claim, in_flight
from deliveries.health import State, state_of
from deliveries.models import Delivery, DeliveryAttempt, Subscription
from deliveries.recording import record_round
from deliveries.sending import send_for_subscription
from deliveries.services import subscription_update
from deliveries.sweeper import sweep_due_deliveries
from tests.receiver import Answer
from tests.timing import seconds
from tests.webhooks import move, queued_event, submit, subscribe

pytestmark = pytest.mark.usefixtures("local_receivers_allowed", "published")

REFUSED_URL = "http://127.0.0.1:9/hook"


def pending_ids(subscription) -> list[str]:
    return list(Delivery.objects.filter(subscription=subscription, status="pending")
                .order_by("created_at").values_list("id", flat=True))


def deliveries_for(application, channel, subscription, n: int) -> list[str]:
    for _ in range(n):
        submit(application, channel)
    return pending_ids(subscription)


def published_subscriptions(published) -> list[str]:
    return [args[1] for args, _ in published.of("send_deliveries")]


# --- queues per stage ----------------------------------------------------------------------


@pytest.mark.parametrize("task, queue", [
    ("comms.send_messages", "send"),
    ("comms.start_scheduled", "send"),
    ("comms.process_receipts", "receipts"),
    ("deliveries.send_deliveries", "webhooks"),
    ("comms.tasks.sweep", "sweeps"),
    ("deliveries.sweep", "sweeps"),
])
def test_each_stage_has_its_own_queue(task, queue):
    assert celery_app.amqp.router.route({}, task)["queue"].name == queue


def test_every_relay_task_is_routed_to_a_stage_queue():
    celery_app.loader.import_default_modules()  # the tasks modules, as a worker loads them
    names = [n for n in celery_app.tasks if n.startswith(("comms.", "deliveries."))]

    assert names
    assert {n for n in names if n not in settings.CELERY_TASK_ROUTES} == set()
    assert {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()} <= set(settings.RELAY_QUEUES)


def procfile() -> dict[str, str]:
    lines = (Path(settings.BASE_DIR) / "Procfile").read_text().splitlines()
    return {name.strip(): command.strip() for name, _, command in (line.partition(":") for line in lines)}


@pytest.mark.parametrize("queue", ["send", "receipts", "webhooks", "sweeps"])
def test_the_procfile_runs_a_worker_per_stage_on_that_stage_only(queue):
    # The send workers also drain `celery`, where a release before the stage queues put tasks.
    expected = {"send": "send,celery"}.get(queue, queue)
    assert f" -Q {expected} " in procfile()[f"worker-{queue}"]


def test_the_embedded_worker_consumes_every_stage():
    assert f" -Q {','.join(settings.RELAY_QUEUES)},celery " in procfile()["worker"]


def test_webhook_workers_run_threads_so_a_hanging_request_holds_one_thread():
    assert "--pool threads" in procfile()["worker-webhooks"]


# --- one subscription per task ---------------------------------------------------------------


def test_fan_out_publishes_each_subscriptions_deliveries_in_tasks_of_their_own(
        application, channel, published, django_capture_on_commit_callbacks):
    first, second = subscribe(application), subscribe(application)

    with django_capture_on_commit_callbacks(execute=True):
        event = queued_event(submit(application, channel))

    tasks = sorted((args[1], args[0]) for args, _ in published.of("send_deliveries"))
    assert tasks == sorted([(first.id, [Delivery.objects.get(event=event, subscription=first).id]),
                            (second.id, [Delivery.objects.get(event=event, subscription=second).id])])


def test_a_claim_never_takes_another_subscriptions_deliveries(application, channel):
    mine, other = subscribe(application), subscribe(application)
    asked = deliveries_for(application, channel, mine, 2)

    claimed = claim(mine.id, asked[:1], timezone.now())

    assert {d.subscription_id for d in claimed.deliveries} == {mine.id}
    assert sorted(d.id for d in claimed.deliveries) == sorted(asked)
    assert in_flight(other.id, timezone.now()) == 0


# --- the in-flight bound -----------------------------------------------------------------------


def test_a_claim_takes_no_more_than_the_subscription_may_have_in_flight(settings, application, channel):
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 3
    settings.WEBHOOK_ROUND_MAX = 3  # rounds of one request per lane (lanes: test_webhook_lanes)
    sub = subscribe(application)
    asked = deliveries_for(application, channel, sub, 5)

    first = claim(sub.id, asked, timezone.now())
    second = claim(sub.id, asked, timezone.now())

    assert (len(first.deliveries), len(second.deliveries)) == (3, 0)
    assert in_flight(sub.id, timezone.now()) == 3


def test_while_one_claim_of_a_subscription_is_in_flight_no_other_task_claims_for_it(
        settings, application, channel):
    # So a hanging endpoint holds one worker thread, however many of its tasks are queued.
    sub = subscribe(application)
    first_ids = deliveries_for(application, channel, sub, 1)
    first = claim(sub.id, first_ids, timezone.now())
    later = [i for i in deliveries_for(application, channel, sub, 2) if i not in first_ids]

    assert (len(first.deliveries), claim(sub.id, later, timezone.now()).deliveries) == (1, [])


def test_a_task_drains_its_subscription_in_rounds_within_the_bound(settings, application, channel, receiver):
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 2
    settings.WEBHOOK_ROUND_MAX = 2  # rounds of one request per lane (lanes: test_webhook_lanes)
    sub = subscribe(application, receiver.url)
    asked = deliveries_for(application, channel, sub, 5)

    assert send_for_subscription(sub.id, asked[:1]) == 5

    rounds = DeliveryAttempt.objects.filter(delivery__subscription=sub).values_list("attempted_at", flat=True)
    assert sorted(Counter(rounds).values()) == [1, 2, 2]
    assert in_flight(sub.id, timezone.now()) == 0


def test_a_task_starts_no_new_round_after_its_drain_time(settings, application, channel, receiver, monkeypatch):
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 2
    settings.WEBHOOK_ROUND_MAX = 2  # rounds of one request per lane (lanes: test_webhook_lanes)
    monkeypatch.setattr(sending, "DRAIN_SECONDS", 0)
    sub = subscribe(application, receiver.url)

    assert send_for_subscription(sub.id, deliveries_for(application, channel, sub, 5)) == 2


def test_a_dead_workers_claims_stop_counting_when_their_lease_ends(settings, application, channel):
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 2
    sub = subscribe(application)
    asked = deliveries_for(application, channel, sub, 2)
    t0 = timezone.now()
    claim(sub.id, asked, t0)  # and the worker dies: nothing is recorded

    later = t0 + seconds(settings.RELAY_CLAIM_LEASE + 1)

    assert in_flight(sub.id, later) == 0
    assert len(claim(sub.id, [], later).deliveries) == 2


# --- the circuit breaker ---------------------------------------------------------------------


def unreachable_subscription(settings, application, channel, *, failures: int) -> Subscription:
    """A subscription whose endpoint refused `failures` attempts in a row, in one task."""
    settings.WEBHOOK_BREAKER_THRESHOLD = 3
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = failures
    sub = subscribe(application, REFUSED_URL)
    send_for_subscription(sub.id, deliveries_for(application, channel, sub, failures))
    sub.refresh_from_db()
    return sub


def test_fewer_unanswered_attempts_than_the_threshold_leave_the_breaker_closed(settings, application, channel):
    sub = unreachable_subscription(settings, application, channel, failures=2)

    assert (state_of(sub), sub.unreachable_streak, sub.next_probe_at) == (State.FAILING, 2, None)


def test_the_threshold_of_unanswered_attempts_backs_the_subscription_off(settings, application, channel):
    settings.WEBHOOK_BREAKER_PROBE_INTERVAL = 30
    sub = unreachable_subscription(settings, application, channel, failures=3)

    assert state_of(sub) == State.BACKING_OFF
    assert timedelta(seconds=29) < sub.next_probe_at - sub.backing_off_since <= timedelta(seconds=31)


def test_an_endpoint_that_answers_with_an_error_is_not_backed_off(settings, application, channel, receiver):
    settings.WEBHOOK_BREAKER_THRESHOLD = 2
    receiver.default = Answer(500)
    sub = subscribe(application, receiver.url)

    send_for_subscription(sub.id, deliveries_for(application, channel, sub, 3))

    sub.refresh_from_db()
    assert (state_of(sub), sub.unreachable_streak) == (State.FAILING, 0)


def test_nothing_is_claimed_while_backing_off_before_the_probe_is_due(settings, application, channel):
    sub = unreachable_subscription(settings, application, channel, failures=3)
    submit(application, channel)

    assert claim(sub.id, pending_ids(sub), sub.next_probe_at - seconds(1)).deliveries == []


def test_once_the_probe_is_due_exactly_one_delivery_is_claimed_and_the_next_probe_is_set(
        settings, application, channel):
    sub = unreachable_subscription(settings, application, channel, failures=3)
    submit(application, channel)
    at = sub.next_probe_at + seconds(1)

    probe = claim(sub.id, pending_ids(sub), at)
    again = claim(sub.id, pending_ids(sub), at)

    assert (len(probe.deliveries), probe.probe, again.deliveries) == (1, True, [])
    sub.refresh_from_db()
    assert sub.next_probe_at == at + seconds(settings.WEBHOOK_BREAKER_PROBE_INTERVAL)


def test_an_answered_probe_ends_the_back_off_and_is_logged_as_a_probe(settings, application, channel, receiver):
    sub = unreachable_subscription(settings, application, channel, failures=3)
    Subscription.objects.filter(id=sub.id).update(url=receiver.url)
    at = sub.next_probe_at + seconds(1)

    # The probe, then the two that waited behind it.
    assert send_for_subscription(sub.id, [], now=at) == 3

    sub.refresh_from_db()
    assert (state_of(sub), sub.unreachable_streak, sub.backing_off_since) == (State.HEALTHY, 0, None)
    answered = DeliveryAttempt.objects.filter(delivery__subscription=sub, status_code=200)
    assert sorted(answered.values_list("probe", flat=True)) == [False, False, True]


def test_a_failed_probe_keeps_backing_off_until_the_next_interval(settings, application, channel):
    sub = unreachable_subscription(settings, application, channel, failures=3)
    at = sub.next_probe_at + seconds(1)

    send_for_subscription(sub.id, [], now=at)

    sub.refresh_from_db()
    assert state_of(sub) == State.BACKING_OFF
    assert sub.next_probe_at == at + seconds(settings.WEBHOOK_BREAKER_PROBE_INTERVAL)


def test_pointing_a_backed_off_subscription_elsewhere_ends_the_back_off(settings, application, channel, api):
    sub = unreachable_subscription(settings, application, channel, failures=3)

    response = api.patch(f"/api/v1/subscriptions/{sub.id}", {"url": "http://127.0.0.1:8/new"}, format="json")

    assert (response.status_code, response.json()["state"]) == (200, "healthy")
    sub.refresh_from_db()
    assert (sub.next_probe_at, sub.unreachable_streak) == (None, 0)


def test_pointing_a_subscription_elsewhere_sends_what_waited_at_once(
        settings, application, channel, api, published, django_capture_on_commit_callbacks):
    sub = unreachable_subscription(settings, application, channel, failures=3)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        api.patch(f"/api/v1/subscriptions/{sub.id}", {"url": "http://127.0.0.1:8/new"}, format="json")

    assert published_subscriptions(published) == [sub.id]


def test_re_enabling_in_the_admin_starts_afresh_as_the_api_does(settings, application, channel, admin_client):
    sub = unreachable_subscription(settings, application, channel, failures=3)
    Subscription.objects.filter(id=sub.id).update(active=False, disabled_reason="The endpoint answered 410 Gone")
    form = {"application": application.id, "url": sub.url, "events": "[]", "channels": "[]",
            "description": "", "headers": "", "active": "on"}

    response = admin_client.post(f"/admin/deliveries/subscription/{sub.id}/change/", form)

    assert response.status_code == 302
    fresh = Subscription.objects.get(id=sub.id)
    assert (state_of(fresh), fresh.disabled_reason, fresh.next_probe_at) == (State.HEALTHY, "", None)


def test_the_api_shows_a_backed_off_subscription_with_its_next_probe(settings, application, channel, api):
    sub = unreachable_subscription(settings, application, channel, failures=3)

    body = api.get(f"/api/v1/subscriptions/{sub.id}").json()

    assert body["state"] == "backing-off"
    assert body["backingOffSince"] and body["failingSince"]
    assert body["nextProbeAt"].startswith(sub.next_probe_at.strftime("%Y-%m-%dT%H:%M:%S"))


# --- follow-ups and the sweeper --------------------------------------------------------------


def test_a_task_whose_attempts_all_fail_publishes_one_follow_up_not_one_per_retry(
        settings, application, channel, receiver, published, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE = [5.0]
    receiver.default = Answer(500)
    sub = subscribe(application, receiver.url)
    asked = deliveries_for(application, channel, sub, 6)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        send_for_subscription(sub.id, asked)

    (task,) = published.of("send_deliveries")
    assert task[0] == ([], sub.id)
    assert 4 <= task[1]["countdown"] <= 6


def test_a_batch_of_jittered_retries_takes_a_few_follow_ups_not_one_each(
        settings, application, channel, receiver, clock, published, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE = [5.0]  # jittered to 4-6 s: three whole seconds at most
    receiver.answer(*[Answer(500)] * 10)
    sub = subscribe(application, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        send_for_subscription(sub.id, deliveries_for(application, channel, sub, 10))

    follow_ups = 0
    while Delivery.objects.filter(subscription=sub, status="pending").exists() and follow_ups < 10:
        ((args, options),) = published.of("send_deliveries")[-1:]
        published.clear()
        clock.now += seconds(options["countdown"] or 0)
        with django_capture_on_commit_callbacks(execute=True):
            send_for_subscription(*reversed(args))
        follow_ups += 1

    assert 1 <= follow_ups <= 3
    assert Delivery.objects.filter(subscription=sub, status="succeeded").count() == 10


def test_the_sweeper_publishes_one_task_per_subscription_with_overdue_work(
        application, channel, published, django_capture_on_commit_callbacks):
    first, second = subscribe(application), subscribe(application)
    for _ in range(3):
        submit(application, channel)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        swept = sweep_due_deliveries(now=timezone.now() + seconds(settings.RELAY_DISPATCH_GRACE + 1))

    assert swept == 2
    assert sorted(published_subscriptions(published)) == sorted([first.id, second.id])


def unclaimed_delivery(application, channel, published) -> Delivery:
    """A delivery whose task was lost: published, and never claimed."""
    sub = subscribe(application)
    submit(application, channel)
    published.clear()
    return Delivery.objects.get(subscription=sub)


def test_a_delivery_is_not_overdue_until_a_grace_after_it_fell_due(
        application, channel, published, django_capture_on_commit_callbacks):
    delivery = unclaimed_delivery(application, channel, published)

    with django_capture_on_commit_callbacks(execute=True):
        swept = sweep_due_deliveries(now=delivery.due_at + grace() - seconds(1))

    assert (swept, published.of("send_deliveries")) == (0, [])


def test_the_sweeper_dates_what_it_publishes_due_from_then(
        application, channel, published, django_capture_on_commit_callbacks):
    delivery = unclaimed_delivery(application, channel, published)
    at = delivery.due_at + grace() + seconds(1)

    with django_capture_on_commit_callbacks(execute=True):
        sweep_due_deliveries(now=at)

    delivery.refresh_from_db()
    assert delivery.due_at == at


def test_what_the_sweeper_published_is_not_published_again_within_a_grace(
        application, channel, published, django_capture_on_commit_callbacks):
    delivery = unclaimed_delivery(application, channel, published)
    at = delivery.due_at + grace() + seconds(1)

    with django_capture_on_commit_callbacks(execute=True):
        first = sweep_due_deliveries(now=at)
        within = sweep_due_deliveries(now=at + grace() - seconds(1))
        after = sweep_due_deliveries(now=at + grace() + seconds(1))

    assert (first, within, after) == (1, 0, 1)
    assert published_subscriptions(published) == [delivery.subscription_id] * 2


def test_the_sweeper_leaves_a_backed_off_subscription_alone_until_its_probe_is_due(
        settings, application, channel, published, django_capture_on_commit_callbacks):
    sub = unreachable_subscription(settings, application, channel, failures=3)
    Delivery.objects.filter(subscription=sub).update(due_at=timezone.now() - seconds(60))
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        before = sweep_due_deliveries(now=sub.next_probe_at - seconds(1))
        after = sweep_due_deliveries(now=sub.next_probe_at + seconds(1))

    assert (before, after) == (0, 1)
    assert published_subscriptions(published) == [sub.id]


def test_the_sweeper_clears_the_due_time_of_deliveries_that_are_no_longer_pending(application, channel):
    sub = subscribe(application)
    message = submit(application, channel)
    move(message, Status.SENT)
    Delivery.objects.filter(subscription=sub).update(status="succeeded")

    sweep_due_deliveries(now=timezone.now() + seconds(settings.RELAY_DISPATCH_GRACE + 1))

    assert not Delivery.objects.filter(subscription=sub, due_at__isnull=False).exists()


def test_the_follow_up_looks_after_commit_so_deliveries_left_to_it_meanwhile_go_out(
        application, channel, receiver, published, django_capture_on_commit_callbacks):
    sub = subscribe(application, receiver.url)
    asked = deliveries_for(application, channel, sub, 1)
    published.clear()
    with django_capture_on_commit_callbacks() as after_commit:
        send_for_subscription(sub.id, asked)
    # Committed just before the claim above was released: its own task found that claim
    # in flight, and left the delivery to the claim's follow-up.
    submit(application, channel)

    with django_capture_on_commit_callbacks(execute=True):
        for callback in after_commit:
            callback()

    assert published.of("send_deliveries") == [(([], sub.id), {"countdown": None})]


def test_a_healthy_subscriptions_successful_round_leaves_its_row_untouched(application, channel, receiver):
    sub = subscribe(application, receiver.url)
    before = Subscription.objects.get(id=sub.id).updated_at

    send_for_subscription(sub.id, deliveries_for(application, channel, sub, 2))

    assert Subscription.objects.get(id=sub.id).updated_at == before


def test_a_success_after_failures_clears_the_failing_state(application, channel, receiver):
    receiver.answer(Answer(500))
    sub = subscribe(application, receiver.url)
    send_for_subscription(sub.id, deliveries_for(application, channel, sub, 1))
    assert state_of(Subscription.objects.get(id=sub.id)) == State.FAILING

    send_for_subscription(sub.id, deliveries_for(application, channel, sub, 2))

    assert state_of(Subscription.objects.get(id=sub.id)) == State.HEALTHY


# --- no tasks that could only find their subscription busy ---------------------------------


def test_new_deliveries_of_a_subscription_with_a_claim_in_flight_get_no_task_of_their_own(
        application, channel, published, django_capture_on_commit_callbacks):
    busy, idle = subscribe(application), subscribe(application)
    claim(busy.id, deliveries_for(application, channel, busy, 1), timezone.now())
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        submit(application, channel)

    assert published_subscriptions(published) == [idle.id]


def test_new_deliveries_of_a_backing_off_subscription_get_no_task_before_its_probe(
        settings, application, channel, published, django_capture_on_commit_callbacks):
    unreachable_subscription(settings, application, channel, failures=3)
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        submit(application, channel)

    assert published.of("send_deliveries") == []


# --- a round always ends inside its lease; late or stale writes change nothing ----------------


def test_a_request_unanswered_by_the_end_of_its_round_is_recorded_as_a_timeout(
        settings, application, channel, receiver):
    settings.WEBHOOK_ROUND_SECONDS = 0.5
    receiver.default = Answer(hold=10)  # headers never come: an endpoint that trickles or hangs
    sub = subscribe(application, receiver.url)

    started = time.monotonic()
    send_for_subscription(sub.id, deliveries_for(application, channel, sub, 1))

    assert time.monotonic() - started < 5
    attempt = DeliveryAttempt.objects.get(delivery__subscription=sub)
    assert (attempt.error_kind, attempt.error_detail) == ("timeout", "no answer within 0.5 s")
    assert in_flight(sub.id, timezone.now()) == 0


def test_a_round_recorded_after_its_lease_lapsed_and_was_claimed_again_changes_nothing(
        settings, application, channel):
    sub = subscribe(application)
    asked = deliveries_for(application, channel, sub, 1)
    t0 = timezone.now()
    first = claim(sub.id, asked, t0)
    second = claim(sub.id, [], t0 + seconds(settings.RELAY_CLAIM_LEASE + 1))
    assert len(first.deliveries) == len(second.deliveries) == 1

    record_round(first, [http.Outcome(200, 5)], t0 + seconds(1))

    (delivery,) = second.deliveries
    delivery_now = Delivery.objects.get(id=delivery.id)
    assert (delivery_now.status, delivery_now.leased_until) == ("pending", delivery.leased_until)
    assert not DeliveryAttempt.objects.exists()


def test_attempts_at_an_address_the_subscription_has_left_do_not_back_off_its_new_one(
        settings, application, channel):
    settings.WEBHOOK_BREAKER_THRESHOLD = 2
    sub = subscribe(application, REFUSED_URL)
    claimed = claim(sub.id, deliveries_for(application, channel, sub, 3), timezone.now())
    subscription_update(subscription=Subscription.objects.get(id=sub.id), url="http://127.0.0.1:8/new")

    record_round(claimed, [http.Outcome(None, 5, error_kind="timeout")] * 3, timezone.now())

    assert state_of(Subscription.objects.get(id=sub.id)) == State.HEALTHY


def test_an_update_from_a_stale_copy_does_not_undo_a_back_off(settings, application, channel):
    stale = subscribe(application, REFUSED_URL)
    settings.WEBHOOK_BREAKER_THRESHOLD = 3
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 3
    send_for_subscription(stale.id, deliveries_for(application, channel, stale, 3))

    subscription_update(subscription=stale, description="renamed")

    fresh = Subscription.objects.get(id=stale.id)
    assert (state_of(fresh), fresh.description) == (State.BACKING_OFF, "renamed")


def test_the_sweeper_gives_no_task_to_a_subscription_with_a_claim_in_flight(
        settings, application, channel, published, django_capture_on_commit_callbacks):
    busy, idle = subscribe(application), subscribe(application)
    claim(busy.id, deliveries_for(application, channel, busy, 1), timezone.now())
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        sweep_due_deliveries(now=timezone.now() + seconds(settings.RELAY_DISPATCH_GRACE + 1))

    assert published_subscriptions(published) == [idle.id]
