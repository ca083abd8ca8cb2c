"""Scheduling through the API: a future sendAt is SCHEDULED, held in the database, and QUEUED
on time by the start_scheduled task or, if that task is lost, by the sweeper.

Time is a fixture (`clock`) that replaces django.utils.timezone.now, so the API, the tasks and
the sweeper all see the same injected instant; nothing sleeps. Tasks are recorded by
`published` and run by calling them.
"""

from datetime import datetime, timedelta

import pytest
from django.conf import settings

from comms import sending, sweeper, tasks
from comms.models import Message, MessageEvent
from comms.status import Status
from tests.timing import grace, seconds

pytestmark = pytest.mark.django_db

PHONE = "+447700900123"
URL = "/api/v1/messages"


def lookahead() -> timedelta:
    return seconds(settings.RELAY_SCHEDULE_LOOKAHEAD)


def iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.fixture
def submit(api, channel, published, django_capture_on_commit_callbacks):
    """POST /messages as a client would, committed (its publishes are recorded)."""

    def submit(**fields) -> tuple[int, dict]:
        body = {"channel": channel.name, "receiver": PHONE, "content": {"text": "Hi"}, **fields}
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(URL, body, format="json")
        return response.status_code, response.json()

    return submit



def codes(message_id: str) -> list[str]:
    return list(MessageEvent.objects.filter(message_id=message_id).order_by("sequence")
                .values_list("status_code", flat=True))


def row(message_id: str) -> Message:
    return Message.objects.get(id=message_id)


# Accepting


def test_a_future_send_at_is_accepted_as_scheduled(submit, clock):
    status, body = submit(sendAt=iso(clock.now + seconds(3600)))

    assert status == 202
    assert body["status"] == Status.SCHEDULED
    assert codes(body["id"]) == ["SCHEDULED"]


def test_the_scheduled_event_is_listed_on_the_message(api, submit, clock):
    _, body = submit(sendAt=iso(clock.now + seconds(3600)))

    detail = api.get(f"{URL}/{body['id']}").json()

    assert [e["statusCode"] for e in detail["events"]] == ["SCHEDULED"]
    assert detail["sendAt"] is not None


def test_a_scheduled_message_is_not_sent_at_submission(submit, published, clock):
    submit(sendAt=iso(clock.now + seconds(3600)))

    assert published.sent_ids() == []


def test_a_message_months_ahead_is_held_in_the_database_without_any_celery_countdown(submit, published, clock):
    send_at = clock.now + timedelta(days=120)

    _, body = submit(sendAt=iso(send_at))

    # A long countdown would sit unacknowledged in a worker and be redelivered by Redis.
    assert published.of("start_scheduled") == []
    assert published.of("send_messages") == []
    message = row(body["id"])
    assert message.send_at == send_at
    assert message.due_at == send_at - lookahead()


def test_a_message_due_within_the_lookahead_gets_a_countdown_to_its_send_at(submit, published, clock):
    _, body = submit(sendAt=iso(clock.now + seconds(60)))

    assert published.of("start_scheduled") == [(([body["id"]],), {"countdown": 60.0})]
    # Due at its sendAt: the sweeper is the net if that countdown is lost, a grace after it.
    assert row(body["id"]).due_at == clock.now + seconds(60)


def test_a_send_at_in_the_past_sends_now(submit, published, clock):
    status, body = submit(sendAt=iso(clock.now - seconds(60)))

    assert (status, body["status"]) == (202, Status.QUEUED)
    assert codes(body["id"]) == ["QUEUED"]
    assert published.sent_ids() == [body["id"]]
    assert published.of("start_scheduled") == []


@pytest.mark.parametrize("gap", [0, 60], ids=["equal", "after"])
def test_send_at_at_or_after_expires_at_is_refused_and_creates_nothing(submit, clock, gap):
    expires_at = clock.now + seconds(600)

    status, body = submit(sendAt=iso(expires_at + seconds(gap)), expiresAt=iso(expires_at))

    assert status == 400
    assert "expiresAt" in body["errors"]
    assert not Message.objects.exists()


def test_a_malformed_send_at_is_a_400(submit):
    status, body = submit(sendAt="next tuesday")

    assert status == 400
    assert "sendAt" in body["errors"]
    assert not Message.objects.exists()


# Released on time


def test_the_start_scheduled_task_queues_the_message_at_its_send_at(submit, published, run, clock):
    send_at = clock.now + seconds(60)
    _, body = submit(sendAt=iso(send_at))
    published.clear()

    clock.now = send_at
    run(tasks.start_scheduled, [body["id"]])

    assert row(body["id"]).status == Status.QUEUED
    assert codes(body["id"]) == ["SCHEDULED", "QUEUED"]
    assert published.sent_ids() == [body["id"]]


def test_a_start_scheduled_task_that_runs_early_leaves_the_message_scheduled(submit, published, run, clock):
    send_at = clock.now + seconds(60)
    _, body = submit(sendAt=iso(send_at))
    published.clear()

    clock.now = send_at - seconds(1)
    run(tasks.start_scheduled, [body["id"]])

    message = row(body["id"])
    assert message.status == Status.SCHEDULED
    assert message.due_at is not None  # still in the sweeper's sight
    assert published.sent_ids() == []


def test_a_start_scheduled_task_delivered_twice_queues_once(submit, published, run, clock):
    send_at = clock.now + seconds(60)
    _, body = submit(sendAt=iso(send_at))
    published.clear()
    clock.now = send_at

    run(tasks.start_scheduled, [body["id"]])
    run(tasks.start_scheduled, [body["id"]])

    assert codes(body["id"]) == ["SCHEDULED", "QUEUED"]
    assert published.sent_ids() == [body["id"]]


def test_a_released_message_is_then_sent(submit, run, clock):
    send_at = clock.now + seconds(60)
    _, body = submit(sendAt=iso(send_at))
    clock.now = send_at
    run(tasks.start_scheduled, [body["id"]])

    run(sending.send_attempts, [body["id"]])

    assert row(body["id"]).status == Status.SENT
    assert codes(body["id"]) == ["SCHEDULED", "QUEUED", "SENT"]


def test_a_message_months_ahead_is_released_by_the_sweeper_even_if_every_countdown_is_lost(
        submit, published, run, clock):
    send_at = clock.now + timedelta(days=90)
    _, body = submit(sendAt=iso(send_at))

    # Sweep whenever the sweeper would take the row (a grace after it fell due), never
    # running the countdowns it publishes.
    for _ in range(5):
        clock.now = row(body["id"]).due_at + grace()
        run(sweeper.sweep_due_work)
        if row(body["id"]).status != Status.SCHEDULED:
            break

    assert row(body["id"]).status == Status.QUEUED
    assert clock.now == send_at + grace()
    assert body["id"] in published.sent_ids()


def test_the_sweeper_gives_a_far_message_its_countdown_once_within_the_lookahead(
        submit, published, run, clock):
    send_at = clock.now + timedelta(days=30)
    _, body = submit(sendAt=iso(send_at))

    clock.now = send_at - lookahead() + grace()
    run(sweeper.sweep_due_work)

    countdown = (lookahead() - grace()).total_seconds()
    assert published.of("start_scheduled") == [(([body["id"]],), {"countdown": countdown})]
    assert row(body["id"]).status == Status.SCHEDULED


def test_the_sweeper_does_not_touch_a_far_message_before_its_look(submit, published, run, clock):
    send_at = clock.now + timedelta(days=30)
    _, body = submit(sendAt=iso(send_at))
    before = row(body["id"]).due_at

    clock.now = before + grace() - seconds(1)
    counts = run(sweeper.sweep_due_work)

    assert counts == {"dispatched": 0, "released": 0, "polled": 0, "cleared": 0}
    assert row(body["id"]).due_at == before
    assert published.of("start_scheduled") == []


def test_a_scheduled_message_with_a_fallback_leaves_the_fallback_dormant(submit, backup_channel, clock):
    fallback = {"channel": backup_channel.name, "receiver": PHONE, "content": {"text": "Hi"}}

    _, body = submit(sendAt=iso(clock.now + seconds(3600)), fallback=fallback)

    fallback_row = row(body["fallbackTo"])
    assert fallback_row.status == Status.PENDING
    assert codes(fallback_row.id) == []


# Listing


def test_listing_by_status_scheduled_shows_only_the_waiting_messages(api, submit, clock):
    _, later = submit(sendAt=iso(clock.now + seconds(3600)))
    _, much_later = submit(sendAt=iso(clock.now + timedelta(days=200)))
    submit()  # sent now

    response = api.get(URL, {"status": "SCHEDULED"})

    assert response.status_code == 200
    results = response.json()["results"]
    assert {m["id"] for m in results} == {later["id"], much_later["id"]}
    assert {m["status"] for m in results} == {"SCHEDULED"}


def test_a_released_message_leaves_the_scheduled_listing(api, submit, run, clock):
    send_at = clock.now + seconds(60)
    _, body = submit(sendAt=iso(send_at))
    clock.now = send_at
    run(tasks.start_scheduled, [body["id"]])

    results = api.get(URL, {"status": "SCHEDULED"}).json()["results"]

    assert results == []


def test_another_applications_scheduled_messages_are_not_listed(other_api, submit, clock):
    submit(sendAt=iso(clock.now + seconds(3600)))

    results = other_api.get(URL, {"status": "SCHEDULED"}).json()["results"]

    assert results == []
