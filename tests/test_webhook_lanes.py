"""Lanes: a healthy subscription's round carries up to WEBHOOK_ROUND_MAX deliveries, posted
over at most WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION lanes; what no lane started goes back,
still pending and due, with no attempt spent.

Answered attempts go to the local receiver, unanswered ones to http://127.0.0.1:9 (nothing
listens there: refused at once).
"""

from collections import Counter

import pytest
from django.utils import timezone

from deliveries import http, posting, sending
from deliveries.claims import claim
from deliveries.health import State, state_of
from deliveries.models import Delivery, DeliveryAttempt, Subscription
from deliveries.recording import record_round
from deliveries.sending import send_for_subscription
from tests.receiver import Answer
from tests.timing import seconds
from tests.webhooks import submit, subscribe

pytestmark = pytest.mark.usefixtures("local_receivers_allowed", "published")

REFUSED_URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def lanes(settings):
    """Two lanes, rounds of up to five."""
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 2
    settings.WEBHOOK_ROUND_MAX = 5
    return settings


@pytest.fixture
def one_round(monkeypatch):
    """A task that starts no second round."""
    monkeypatch.setattr(sending, "DRAIN_SECONDS", 0)


def deliveries_for(application, channel, subscription, n: int) -> list[str]:
    for _ in range(n):
        submit(application, channel)
    return list(Delivery.objects.filter(subscription=subscription).order_by("created_at").values_list("id", flat=True))


def untouched(ids: list[str], due_before: dict[str, object]) -> bool:
    """Pending, due as they were, unleased, no attempt spent or logged."""
    rows = Delivery.objects.filter(id__in=ids).values_list("id", "status", "due_at", "leased_until", "attempts")
    return len(ids) > 0 and all((status, due, lease, attempts) == ("pending", due_before[i], None, 0)
                                for i, status, due, lease, attempts in rows) and \
        not DeliveryAttempt.objects.filter(delivery_id__in=ids).exists()


def due_times(ids: list[str]) -> dict[str, object]:
    return dict(Delivery.objects.filter(id__in=ids).values_list("id", "due_at"))


# --- how much a round takes --------------------------------------------------------------------


def test_a_healthy_subscriptions_round_claims_up_to_the_round_max(lanes, application, channel):
    sub = subscribe(application)

    claimed = claim(sub.id, deliveries_for(application, channel, sub, 7), timezone.now())

    assert len(claimed.deliveries) == 5


@pytest.mark.parametrize("unhealthy", [
    {"failing_since": timezone.now()},
    {"failing_since": timezone.now(), "unreachable_streak": 1},
])
def test_a_subscription_that_is_not_healthy_claims_only_its_bound(lanes, application, channel, unhealthy):
    sub = subscribe(application)
    Subscription.objects.filter(id=sub.id).update(**unhealthy)

    claimed = claim(sub.id, deliveries_for(application, channel, sub, 7), timezone.now())

    assert len(claimed.deliveries) == 2


# --- posting over lanes ------------------------------------------------------------------------


def test_a_round_posts_all_it_claimed_in_one_round(lanes, application, channel, receiver):
    sub = subscribe(application, receiver.url)

    assert send_for_subscription(sub.id, deliveries_for(application, channel, sub, 5)) == 5

    rounds = DeliveryAttempt.objects.filter(delivery__subscription=sub).values_list("attempted_at", flat=True)
    assert list(Counter(rounds).values()) == [5]
    assert Delivery.objects.filter(subscription=sub, status="succeeded").count() == 5


def test_a_round_never_has_more_connections_open_than_the_bound(settings, application, channel, receiver):
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 3
    settings.WEBHOOK_ROUND_MAX = 12
    receiver.default = Answer(hold=0.2)  # so the lanes' requests overlap
    sub = subscribe(application, receiver.url)

    send_for_subscription(sub.id, deliveries_for(application, channel, sub, 12))

    assert (len(receiver.requests), receiver.most_open) == (12, 3)


def test_an_error_in_a_lane_is_raised_not_recorded_as_a_timeout(lanes, application, channel, monkeypatch):
    sub = subscribe(application)
    claimed = claim(sub.id, deliveries_for(application, channel, sub, 3), timezone.now())
    monkeypatch.setattr(posting, "_post", lambda delivery, at: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        posting.post_round(claimed.deliveries, timezone.now())


# --- what a round does not start goes back -----------------------------------------------------


def test_what_a_lane_had_not_started_when_the_round_ended_is_not_attempted(
        lanes, one_round, application, channel, receiver):
    lanes.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 1
    lanes.WEBHOOK_ROUND_SECONDS = 0.5
    receiver.answer(Answer(hold=10))  # the first never answers in time
    sub = subscribe(application, receiver.url)
    ids = deliveries_for(application, channel, sub, 3)
    due = due_times(ids)

    assert send_for_subscription(sub.id, ids) == 1

    (attempt,) = DeliveryAttempt.objects.all()
    assert attempt.error_kind == "timeout"
    assert untouched([i for i in ids if i != attempt.delivery_id], due)
    assert all(d <= timezone.now() for d in due.values())  # and still due


def test_after_an_unanswered_attempt_a_round_starts_nothing_more(lanes, one_round, application, channel):
    lanes.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 1
    sub = subscribe(application, REFUSED_URL)
    ids = deliveries_for(application, channel, sub, 3)
    due = due_times(ids)

    assert send_for_subscription(sub.id, ids) == 1

    (attempt,) = DeliveryAttempt.objects.all()
    assert attempt.error_kind == "connection"
    assert untouched([i for i in ids if i != attempt.delivery_id], due)


def test_a_lane_starts_no_request_that_could_outlast_the_round(lanes, one_round, application, channel, receiver):
    # Else a request started late would still hold a connection when the next round starts.
    lanes.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 1
    lanes.WEBHOOK_ROUND_SECONDS = lanes.WEBHOOK_CONNECT_TIMEOUT + lanes.WEBHOOK_TIMEOUT - 0.1
    sub = subscribe(application, receiver.url)
    ids = deliveries_for(application, channel, sub, 3)
    due = due_times(ids)

    assert send_for_subscription(sub.id, ids) == 1

    (attempt,) = DeliveryAttempt.objects.all()
    assert untouched([i for i in ids if i != attempt.delivery_id], due)


def test_what_a_round_gave_back_goes_out_in_the_tasks_next_rounds(lanes, application, channel, receiver):
    lanes.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 1
    lanes.WEBHOOK_ROUND_SECONDS = 0.5  # one request per lane and round
    sub = subscribe(application, receiver.url)

    assert send_for_subscription(sub.id, deliveries_for(application, channel, sub, 3)) == 3

    assert Delivery.objects.filter(subscription=sub, status="succeeded", attempts=1).count() == 3


# --- recording a round with deliveries it never started -----------------------------------------


@pytest.fixture
def claimed_three(lanes, application, channel):
    lanes.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = 1
    sub = subscribe(application)
    deliveries_for(application, channel, sub, 3)
    return claim(sub.id, [], timezone.now())


@pytest.mark.parametrize("answer, health", [(200, State.HEALTHY), (500, State.FAILING)])
def test_recording_gives_back_what_was_not_attempted_on_either_path(claimed_three, answer, health):
    first, *behind = claimed_three.deliveries
    due = due_times([d.id for d in behind])
    outcome = http.Outcome(answer, 5, error_kind="" if answer == 200 else "http_status")

    record_round(claimed_three, [outcome, None, None], timezone.now())

    assert Delivery.objects.filter(id=first.id, attempts=1, leased_until=None).exists()
    assert untouched([d.id for d in behind], due)
    assert state_of(Subscription.objects.get(id=first.subscription_id)) == health


@pytest.mark.parametrize("answer", [200, 500])
def test_a_round_recorded_after_its_lease_was_claimed_again_gives_back_nothing(settings, claimed_three, answer):
    later = claim(claimed_three.subscription.id, [], timezone.now() + seconds(settings.RELAY_CLAIM_LEASE + 1))
    outcome = http.Outcome(answer, 5, error_kind="" if answer == 200 else "http_status")

    record_round(claimed_three, [outcome, None, None], timezone.now())

    assert set(Delivery.objects.values_list("leased_until", flat=True)) == {later.lease}
    assert not DeliveryAttempt.objects.exists()
