"""Webhook outcomes and retries, against a real local HTTP receiver.

Delivery attempts are made by calling deliveries.sending.send_deliveries with delivery ids,
as the task does; later attempts are driven by passing `now` = the row's due_at.
"""

import time
from datetime import timedelta
from email.utils import formatdate

import pytest
from django.utils import timezone

from comms.due import grace
from comms.status import Status
from deliveries import http, retries
from deliveries.http import EXCERPT_BYTES
from deliveries.models import Delivery, DeliveryAttempt, Subscription
from deliveries.sending import send_deliveries
from deliveries.signing import new_secret
from deliveries.sweeper import sweep_due_deliveries
from tests.receiver import Answer, closed_port
from tests.webhooks import (
    countdowns,
    delivery_of,
    move,
    one_failed_attempt,
    queued_event,
    send_again,
    submit,
    subscribe,
)

# These tests post to a receiver on 127.0.0.1; the SSRF guard has its own tests.
pytestmark = pytest.mark.usefixtures("local_receivers_allowed", "published")


# --- outcomes and retries ----------------------------------------------------------------


@pytest.fixture
def flaky(receiver, application, channel):
    """A delivery whose receiver answered 500, 500 and then 200, over three attempts."""
    receiver.answer(Answer(500, body=b"oops", hold=0.05), Answer(500, hold=0.05), Answer(200, hold=0.05))
    sub = subscribe(application, receiver.url)
    delivery = delivery_of(queued_event(submit(application, channel)), sub)
    send_deliveries([delivery.id])
    send_again(delivery)
    return send_again(delivery)


def test_a_receiver_answering_500_500_200_gets_the_event_on_the_third_attempt(flaky, receiver):
    assert len(receiver.requests) == 3
    assert flaky.status == "succeeded" and flaky.attempts == 3 and flaky.due_at is None


def test_every_attempt_carries_the_same_webhook_id(flaky, receiver):
    assert [r.headers["webhook-id"] for r in receiver.requests] == [flaky.event_id] * 3


def test_every_attempt_is_recorded_with_its_status_code_and_duration(flaky):
    attempts = list(flaky.attempt_log.order_by("number"))

    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert all(a.duration_ms >= 40 for a in attempts)
    assert [a.error_kind for a in attempts] == ["http_status", "http_status", ""]
    assert attempts[0].response_excerpt == "oops"


def test_any_2xx_answer_is_a_success(receiver, application, channel):
    receiver.answer(Answer(204))
    sub = subscribe(application, receiver.url)
    delivery = delivery_of(queued_event(submit(application, channel)), sub)

    send_deliveries([delivery.id])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("succeeded", 204)


def test_retry_delays_follow_the_configured_schedule(settings, monkeypatch):
    settings.WEBHOOK_RETRY_SCHEDULE = [5.0, 300.0, 1800.0]
    monkeypatch.setattr(retries.random, "uniform", lambda lo, hi: 1.0)

    delays = [retries.retry_delay(n, http.Outcome(500, 1)) for n in (1, 2, 3)]

    assert delays == [5.0, 300.0, 1800.0]


@pytest.mark.parametrize("factor", [0.8, 1.2])
def test_retry_delays_are_jittered_by_twenty_percent_at_most(settings, monkeypatch, factor):
    settings.WEBHOOK_RETRY_SCHEDULE = [100.0]
    bounds = []
    monkeypatch.setattr(retries.random, "uniform", lambda lo, hi: bounds.append((lo, hi)) or factor)

    delay = retries.retry_delay(1, http.Outcome(None, 1, error_kind="timeout"))

    assert bounds == [(0.8, 1.2)]
    assert delay == pytest.approx(100.0 * factor)


def test_retry_delays_vary_within_the_jitter(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [100.0]

    delays = {retries.retry_delay(1, http.Outcome(503, 1)) for _ in range(50)}

    assert len(delays) > 1
    assert all(80.0 <= d <= 120.0 for d in delays)


def test_there_is_no_retry_once_the_schedule_is_spent(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [5.0, 300.0]

    assert retries.retry_delay(3, http.Outcome(500, 1)) is None


def test_a_short_retry_delay_is_published_as_a_countdown(settings, receiver, application, channel,
                                                          published, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE = [10.0, 3600.0]

    with django_capture_on_commit_callbacks(execute=True):
        delivery = one_failed_attempt(receiver, application, channel, Answer(500))

    assert delivery.status == "pending"
    (countdown,) = countdowns(published)[-1:]
    assert 8 <= countdown <= 13  # the jittered delay, to the whole second
    assert published.of("send_deliveries")[-1][0] == ([], delivery.subscription_id)


def test_a_long_retry_delay_is_held_in_the_database_not_in_a_countdown(
        settings, receiver, application, channel, published, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE = [3600.0]

    with django_capture_on_commit_callbacks(execute=True):
        delivery = one_failed_attempt(receiver, application, channel, Answer(500))

    attempted_at = delivery.attempt_log.get().attempted_at
    assert all(countdown is None for countdown in countdowns(published))
    assert 2880 <= (delivery.due_at - attempted_at).total_seconds() <= 4320


def test_the_sweeper_leaves_a_long_retry_alone_until_a_grace_after_it_is_due(
        settings, receiver, application, channel, published, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE = [3600.0]
    delivery = one_failed_attempt(receiver, application, channel, Answer(500))

    with django_capture_on_commit_callbacks(execute=True):
        swept = sweep_due_deliveries(now=delivery.due_at + grace() - timedelta(seconds=1))

    assert swept == 0
    assert published.of("send_deliveries") == []


def test_the_sweeper_publishes_a_long_retry_a_grace_after_it_is_due(
        settings, receiver, application, channel, published, django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE = [3600.0]
    delivery = one_failed_attempt(receiver, application, channel, Answer(500))

    with django_capture_on_commit_callbacks(execute=True):
        swept = sweep_due_deliveries(now=delivery.due_at + grace() + timedelta(seconds=1))

    assert swept == 1
    assert [args for args, _ in published.of("send_deliveries")] == [([], delivery.subscription_id)]


def test_a_delivery_fails_when_the_schedule_runs_out(settings, receiver, application, channel):
    settings.WEBHOOK_RETRY_SCHEDULE = [1.0]
    receiver.default = Answer(500)
    delivery = one_failed_attempt(receiver, application, channel, Answer(500))

    delivery = send_again(delivery)

    assert (delivery.status, delivery.attempts, delivery.due_at) == ("failed", 2, None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_a_4xx_answer_is_final_after_one_attempt(receiver, application, channel, status):
    delivery = one_failed_attempt(receiver, application, channel, Answer(status))

    assert (delivery.status, delivery.attempts, delivery.due_at) == ("failed", 1, None)


@pytest.mark.parametrize("status", [408, 409, 425, 429])
def test_these_4xx_answers_are_retried(receiver, application, channel, status):
    delivery = one_failed_attempt(receiver, application, channel, Answer(status))

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, status)
    assert delivery.due_at is not None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_sets_the_delay(receiver, application, channel, published,
                                               django_capture_on_commit_callbacks, status):
    with django_capture_on_commit_callbacks(execute=True):
        one_failed_attempt(receiver, application, channel, Answer(status, {"Retry-After": "7"}))

    assert countdowns(published)[-1] == 7.0


def test_retry_after_as_an_http_date_sets_the_delay(receiver, application, channel, published,
                                                    django_capture_on_commit_callbacks):
    when = formatdate(time.time() + 120, usegmt=True)

    with django_capture_on_commit_callbacks(execute=True):
        one_failed_attempt(receiver, application, channel, Answer(503, {"Retry-After": when}))

    assert 115.0 <= countdowns(published)[-1] <= 120.0


def test_retry_after_in_seconds_is_bounded_by_the_setting(settings, receiver, application, channel):
    settings.WEBHOOK_RETRY_AFTER_MAX = 900.0

    delivery = one_failed_attempt(receiver, application, channel, Answer(429, {"Retry-After": "86400"}))

    attempted_at = delivery.attempt_log.get().attempted_at
    assert (delivery.due_at - attempted_at).total_seconds() == 900.0


def test_retry_after_as_an_http_date_is_bounded_by_the_setting(settings, receiver, application, channel):
    settings.WEBHOOK_RETRY_AFTER_MAX = 900.0
    when = formatdate(time.time() + 86400, usegmt=True)

    delivery = one_failed_attempt(receiver, application, channel, Answer(503, {"Retry-After": when}))

    attempted_at = delivery.attempt_log.get().attempted_at
    assert (delivery.due_at - attempted_at).total_seconds() == 900.0


def test_retry_after_on_a_500_is_ignored(settings, receiver, application, channel):
    settings.WEBHOOK_RETRY_SCHEDULE = [3600.0]

    delivery = one_failed_attempt(receiver, application, channel, Answer(500, {"Retry-After": "7"}))

    attempted_at = delivery.attempt_log.get().attempted_at
    assert (delivery.due_at - attempted_at).total_seconds() >= 2880


def test_a_410_disables_the_subscription(receiver, application, channel):
    delivery = one_failed_attempt(receiver, application, channel, Answer(410))

    sub = Subscription.objects.get(id=delivery.subscription_id)
    assert sub.active is False
    assert sub.disabled_at is not None
    assert "410" in sub.disabled_reason


def test_a_410_is_not_retried(receiver, application, channel):
    delivery = one_failed_attempt(receiver, application, channel, Answer(410))

    assert (delivery.status, delivery.attempts, delivery.due_at) == ("failed", 1, None)


def test_later_deliveries_of_a_subscription_disabled_by_410_are_not_sent(receiver, application, channel):
    gone = one_failed_attempt(receiver, application, channel, Answer(410))
    later = Delivery.objects.create(subscription_id=gone.subscription_id,
                                    event=move(gone.event.message, Status.SENT),
                                    due_at=timezone.now(), created_at=timezone.now(),
                                    updated_at=timezone.now())

    send_deliveries([later.id])

    later.refresh_from_db()
    assert len(receiver.requests) == 1
    assert (later.status, later.attempts) == ("failed", 0)


def test_continuous_failure_past_the_disable_period_disables_the_subscription(settings, receiver, application,
                                                                               channel):
    settings.WEBHOOK_DISABLE_AFTER_DAYS = 5
    sub = subscribe(application, receiver.url)
    Subscription.objects.filter(id=sub.id).update(failing_since=timezone.now() - timedelta(days=5, minutes=1))
    receiver.answer(Answer(500))
    delivery = delivery_of(queued_event(submit(application, channel)), sub)

    send_deliveries([delivery.id])

    sub.refresh_from_db()
    delivery.refresh_from_db()
    assert (sub.active, sub.disabled_at is not None) == (False, True)
    assert "5 days" in sub.disabled_reason
    assert delivery.status == "failed"


def test_failure_for_less_than_the_disable_period_keeps_the_subscription(settings, receiver, application,
                                                                         channel):
    settings.WEBHOOK_DISABLE_AFTER_DAYS = 5
    sub = subscribe(application, receiver.url)
    Subscription.objects.filter(id=sub.id).update(failing_since=timezone.now() - timedelta(days=4))
    receiver.answer(Answer(500))

    send_deliveries([delivery_of(queued_event(submit(application, channel)), sub).id])

    sub.refresh_from_db()
    assert sub.active is True and sub.disabled_at is None


def test_the_first_failure_starts_the_failing_clock(receiver, application, channel):
    started = timezone.now()

    delivery = one_failed_attempt(receiver, application, channel, Answer(500))

    assert Subscription.objects.get(id=delivery.subscription_id).failing_since >= started


def test_a_success_in_between_resets_the_failing_clock(settings, receiver, application, channel):
    settings.WEBHOOK_DISABLE_AFTER_DAYS = 5
    sub = subscribe(application, receiver.url)
    Subscription.objects.filter(id=sub.id).update(failing_since=timezone.now() - timedelta(days=6))
    message = submit(application, channel)
    receiver.answer(Answer(200), Answer(500))
    send_deliveries([delivery_of(queued_event(message), sub).id])
    restarted = timezone.now()

    send_deliveries([delivery_of(move(message, Status.SENT), sub).id])

    sub.refresh_from_db()
    assert sub.active is True
    assert sub.failing_since >= restarted


def test_a_timeout_is_recorded_as_error_kind_timeout(settings, receiver, application, channel):
    settings.WEBHOOK_TIMEOUT = 0.2

    delivery = one_failed_attempt(receiver, application, channel, Answer(200, hold=10))

    attempt = delivery.attempt_log.get()
    assert (attempt.error_kind, attempt.status_code, delivery.status) == ("timeout", None, "pending")


def test_a_refused_connection_is_recorded_as_error_kind_connection(application, channel):
    sub = subscribe(application, f"http://127.0.0.1:{closed_port()}/hook")
    delivery = delivery_of(queued_event(submit(application, channel)), sub)

    send_deliveries([delivery.id])

    attempt = delivery.attempt_log.get()
    assert (attempt.error_kind, attempt.status_code) == ("connection", None)


def test_a_refused_connection_is_a_failed_attempt_that_will_be_retried(application, channel):
    sub = subscribe(application, f"http://127.0.0.1:{closed_port()}/hook")
    delivery = delivery_of(queued_event(submit(application, channel)), sub)

    send_deliveries([delivery.id])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "refused" in delivery.attempt_log.get().error_detail.lower()


def test_the_response_excerpt_is_cut_to_4_kb(receiver, application, channel):
    delivery = one_failed_attempt(receiver, application, channel, Answer(500, body=b"x" * 20000))

    assert delivery.attempt_log.get().response_excerpt == "x" * EXCERPT_BYTES
    assert EXCERPT_BYTES == 4096


def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver, application, channel):
    redirect = Answer(302, {"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"})

    delivery = one_failed_attempt(receiver, application, channel, redirect)

    assert [r.path for r in receiver.requests] == ["/hook"]
    attempt = delivery.attempt_log.get()
    assert (attempt.status_code, attempt.error_kind, delivery.status) == (302, "http_status", "pending")


def test_an_unsendable_extra_header_is_a_failed_attempt_not_a_crash(receiver, application, channel):
    sub = Subscription.objects.create(application=application, url=receiver.url, secret=new_secret(),
                                      headers={"X-Note": "line one\r\nline two"})
    delivery = delivery_of(queued_event(submit(application, channel)), sub)

    send_deliveries([delivery.id])

    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_a_nonsensical_retry_after_is_a_failed_attempt_not_a_crash(receiver, application, channel):
    delivery = one_failed_attempt(receiver, application, channel, Answer(429, {"Retry-After": "nan"}))

    assert (delivery.status, delivery.attempts) == ("pending", 1)
