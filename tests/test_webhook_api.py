"""The subscriptions API: CRUD scoped to the calling application, secrets, replay."""

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from comms.submission import message_submit
from deliveries.models import Delivery, DeliveryAttempt, Subscription
from deliveries.services import subscription_create

BASE = "/api/v1/subscriptions"
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture(autouse=True)
def _local_urls_allowed(settings, published):
    # These tests use loopback URLs; the SSRF guard has its own tests.
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def mine(application):
    return subscription_create(application=application, url=HOOK)


@pytest.fixture
def theirs(other_app_and_key):
    return subscription_create(application=other_app_and_key[0], url=HOOK)


def post(client, path, data):
    return client.post(path, data, format="json")


def make_delivery(subscription, channel, *, status="pending", created_at=None) -> Delivery:
    """A delivery of a fresh message's QUEUED event to this subscription, in this state."""
    message, _ = message_submit(application=subscription.application, data={
        "channel": channel, "receiver": "+447700900123", "content": {"text": "hi"}})
    delivery = Delivery.objects.get(subscription=subscription, event__message=message)
    delivery.status = status
    delivery.due_at = None if status != "pending" else delivery.due_at
    delivery.created_at = created_at or delivery.created_at
    delivery.save()
    return delivery


def published_tasks(published) -> list[tuple]:
    return [args for args, _ in published.of("send_deliveries")]


# --- create, read ------------------------------------------------------------------------


def test_creating_a_subscription_returns_201_with_its_secret(api, application):
    response = post(api, BASE, {"url": HOOK, "events": ["DELIVERED"], "channels": ["sim"],
                                "description": "ops", "headers": {"X-Tenant": "acme"}})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["secret"] == Subscription.objects.get(id=body["id"]).secret
    assert (body["url"], body["events"], body["channels"], body["description"], body["headers"],
            body["active"]) == (HOOK, ["DELIVERED"], ["sim"], "ops", {"X-Tenant": "acme"}, True)


def test_a_created_subscription_belongs_to_the_calling_application(api, application):
    response = post(api, BASE, {"url": HOOK})

    assert Subscription.objects.get(id=response.json()["id"]).application == application


def test_retrieving_a_subscription_never_shows_its_secret(api, mine):
    response = api.get(f"{BASE}/{mine.id}")

    assert response.status_code == 200
    assert "secret" not in response.json()
    assert mine.secret not in response.content.decode()


def test_listing_subscriptions_never_shows_a_secret(api, mine):
    response = api.get(BASE)

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["results"]] == [mine.id]
    assert mine.secret not in response.content.decode()


def test_updating_a_subscription_never_shows_its_secret(api, mine):
    response = api.patch(f"{BASE}/{mine.id}", {"description": "x"}, format="json")

    assert response.status_code == 200
    assert "secret" not in response.json()


def test_the_list_holds_only_the_applications_own_subscriptions(api, mine, theirs):
    response = api.get(BASE)

    assert [s["id"] for s in response.json()["results"]] == [mine.id]


def test_another_applications_subscription_is_not_found(api, theirs):
    assert api.get(f"{BASE}/{theirs.id}").status_code == 404


def test_another_applications_subscription_cannot_be_changed(api, theirs):
    response = api.patch(f"{BASE}/{theirs.id}", {"url": "http://127.0.0.1:9/mine"}, format="json")

    theirs.refresh_from_db()
    assert response.status_code == 404
    assert theirs.url == HOOK


def test_another_applications_subscription_cannot_be_deleted(api, theirs):
    response = api.delete(f"{BASE}/{theirs.id}")

    assert response.status_code == 404
    assert Subscription.objects.filter(id=theirs.id).exists()


def test_an_application_deletes_its_own_subscription(api, mine):
    response = api.delete(f"{BASE}/{mine.id}")

    assert response.status_code == 204
    assert not Subscription.objects.filter(id=mine.id).exists()


def test_a_delete_that_meets_a_row_a_worker_added_meanwhile_is_tried_again(api, mine, monkeypatch):
    """Django collects the rows to cascade before deleting; a delivery attempt recorded in
    between breaks the foreign key at commit (seen under schemathesis as a 500)."""
    real_delete, seen_active = Subscription.delete, []

    def delete_racing_a_worker(self, *args, **kwargs):
        seen_active.append(Subscription.objects.get(pk=self.pk).active)
        if len(seen_active) == 1:
            raise IntegrityError("FOREIGN KEY constraint failed")
        return real_delete(self, *args, **kwargs)

    monkeypatch.setattr(Subscription, "delete", delete_racing_a_worker)

    response = api.delete(f"{BASE}/{mine.id}")

    assert response.status_code == 204
    assert not Subscription.objects.filter(id=mine.id).exists()
    assert seen_active == [False, False]  # deactivated first: fan-out and claims leave it alone


def test_an_application_updates_its_own_subscription(api, mine):
    response = api.patch(f"{BASE}/{mine.id}", {"events": ["SENT", "READ"], "channels": ["sim"]}, format="json")

    mine.refresh_from_db()
    assert response.status_code == 200
    assert (mine.events, mine.channels) == (["SENT", "READ"], ["sim"])


def test_the_api_needs_a_key(client, mine):
    assert client.get(BASE).status_code == 401


@pytest.mark.parametrize("events", [["DELIVERD"], ["PENDING"], ["delivered"], "DELIVERED", [None]])
def test_events_must_be_status_codes(api, events):
    response = post(api, BASE, {"url": HOOK, "events": events})

    assert response.status_code == 400
    assert "events" in response.json()["errors"]
    assert not Subscription.objects.exists()


def test_every_status_code_is_a_valid_event(api):
    codes = ["SCHEDULED", "QUEUED", "SENT", "DELIVERY_RETRIED", "DELIVERED", "DELIVERY_FAILED", "READ",
             "INTERACTED", "DELETED", "CANCELLED", "FAILED_CANCELLATION", "EXPIRED"]

    response = post(api, BASE, {"url": HOOK, "events": codes})

    assert response.status_code == 201
    assert response.json()["events"] == codes


@pytest.mark.parametrize("body", [
    "not json", "[]", '"a string"', "{}", '{"url": null}', '{"url": 5}', '{"url": "not a url"}',
    json.dumps({"url": "http://" + "a" * 2000 + ".com/"}),
    json.dumps({"url": HOOK, "events": None}),
    json.dumps({"url": HOOK, "events": [["DELIVERED"]]}),
    json.dumps({"url": HOOK, "channels": "sim"}),
    json.dumps({"url": HOOK, "headers": ["X-A"]}),
    json.dumps({"url": HOOK, "headers": {"X-A": {"nested": 1}}}),
    json.dumps({"url": HOOK, "headers": {"X-A": None}}),
    json.dumps({"url": HOOK, "description": "d" * 501}),
    json.dumps({"url": HOOK, "active": "maybe"}),
])
def test_malformed_subscriptions_get_400_and_create_nothing(api, body):
    api.raise_request_exception = False

    response = api.post(BASE, body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["code"]
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("body", [{"url": None}, {"active": None}, {"events": "SENT"}, {"headers": 3}, []])
def test_a_malformed_update_gets_400_and_changes_nothing(api, mine, body):
    api.raise_request_exception = False

    response = api.patch(f"{BASE}/{mine.id}", body, format="json")

    assert response.status_code == 400, response.content
    assert Subscription.objects.get(id=mine.id).updated_at == mine.updated_at


@pytest.mark.parametrize("headers", [{"X-Note": "one\r\ntwo"}, {"X-Note": "€"}, {"X:Note": "v"}])
def test_an_extra_header_http_cannot_carry_is_refused(api, headers):
    response = post(api, BASE, {"url": HOOK, "headers": headers})

    assert response.status_code == 400
    assert "headers" in response.json()["errors"]


# --- secrets and re-enabling -------------------------------------------------------------


def test_rotating_the_secret_returns_a_new_one(api, mine):
    response = api.post(f"{BASE}/{mine.id}/rotate-secret")

    assert response.status_code == 200
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != mine.secret
    assert Subscription.objects.get(id=mine.id).secret == new


def test_another_applications_secret_cannot_be_rotated(api, theirs):
    response = api.post(f"{BASE}/{theirs.id}/rotate-secret")

    assert response.status_code == 404
    assert Subscription.objects.get(id=theirs.id).secret == theirs.secret


def test_a_disabled_subscription_shows_when_and_why(api, mine):
    Subscription.objects.filter(id=mine.id).update(active=False, disabled_at=timezone.now(),
                                                   disabled_reason="The endpoint answered 410 Gone")

    body = api.get(f"{BASE}/{mine.id}").json()

    assert (body["active"], body["disabledReason"]) == (False, "The endpoint answered 410 Gone")
    assert body["disabledAt"]


def test_patching_active_true_re_enables_a_disabled_subscription_and_clears_why(api, mine):
    Subscription.objects.filter(id=mine.id).update(
        active=False, disabled_at=timezone.now(), disabled_reason="Every delivery failed for 5 days",
        failing_since=timezone.now() - timedelta(days=6))

    response = api.patch(f"{BASE}/{mine.id}", {"active": True}, format="json")

    assert response.status_code == 200
    assert (response.json()["active"], response.json()["disabledAt"], response.json()["disabledReason"]) == \
        (True, None, "")
    mine.refresh_from_db()
    assert (mine.active, mine.disabled_at, mine.disabled_reason, mine.failing_since) == (True, None, "", None)


# --- deliveries, retry, recover ----------------------------------------------------------


def test_a_subscriptions_deliveries_are_listed_with_their_attempts(api, mine, channel):
    delivery = make_delivery(mine, channel, status="failed")
    DeliveryAttempt.objects.create(delivery=delivery, number=1, attempted_at=timezone.now(), status_code=500,
                                   duration_ms=12, response_excerpt="oops", error_kind="http_status")

    response = api.get(f"{BASE}/{mine.id}/deliveries")

    assert response.status_code == 200
    (item,) = response.json()["results"]
    assert (item["id"], item["eventId"], item["statusCode"], item["status"]) == \
        (delivery.id, delivery.event_id, "QUEUED", "failed")
    assert [(a["number"], a["statusCode"], a["durationMs"], a["responseExcerpt"], a["errorKind"])
            for a in item["attemptLog"]] == [(1, 500, 12, "oops", "http_status")]


def test_deliveries_can_be_filtered_by_status(api, mine, channel):
    failed = make_delivery(mine, channel, status="failed")
    make_delivery(mine, channel, status="succeeded")
    make_delivery(mine, channel)

    response = api.get(f"{BASE}/{mine.id}/deliveries", {"status": "failed"})

    assert [d["id"] for d in response.json()["results"]] == [failed.id]


def test_an_unknown_delivery_status_filter_gets_400(api, mine):
    response = api.get(f"{BASE}/{mine.id}/deliveries", {"status": "lost"})

    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_another_applications_deliveries_are_not_found(api, theirs, channel):
    make_delivery(theirs, channel)

    assert api.get(f"{BASE}/{theirs.id}/deliveries").status_code == 404


def test_retrying_a_delivery_makes_it_pending_and_publishes_it(api, mine, channel, published,
                                                               django_capture_on_commit_callbacks):
    delivery = make_delivery(mine, channel, status="failed")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/deliveries/{delivery.id}/retry")

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert Delivery.objects.get(id=delivery.id).status == "pending"
    # One task for the subscription: it takes its due deliveries, this one among them.
    assert published_tasks(published) == [([], delivery.subscription_id)]


def test_another_applications_delivery_cannot_be_retried(api, theirs, channel, published,
                                                         django_capture_on_commit_callbacks):
    delivery = make_delivery(theirs, channel, status="failed")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/deliveries/{delivery.id}/retry")

    assert response.status_code == 404
    assert Delivery.objects.get(id=delivery.id).status == "failed"
    assert published_tasks(published) == []


def test_recover_requeues_the_failed_deliveries_since_the_given_time_only(
        api, mine, channel, published, django_capture_on_commit_callbacks):
    since = timezone.now() - timedelta(hours=1)
    before = make_delivery(mine, channel, status="failed", created_at=since - timedelta(minutes=1))
    after = make_delivery(mine, channel, status="failed", created_at=since + timedelta(minutes=1))
    succeeded = make_delivery(mine, channel, status="succeeded", created_at=since + timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, f"{BASE}/{mine.id}/recover", {"since": since.isoformat()})

    assert response.status_code == 202
    assert response.json() == {"retried": 1}
    assert published_tasks(published) == [([], after.subscription_id)]
    statuses = dict(Delivery.objects.values_list("id", "status"))
    assert (statuses[before.id], statuses[after.id], statuses[succeeded.id]) == ("failed", "pending", "succeeded")


def test_another_applications_subscription_cannot_be_recovered(api, theirs, channel):
    delivery = make_delivery(theirs, channel, status="failed")

    response = post(api, f"{BASE}/{theirs.id}/recover", {"since": "2000-01-01T00:00:00Z"})

    assert response.status_code == 404
    assert Delivery.objects.get(id=delivery.id).status == "failed"


@pytest.mark.parametrize("body", ["{}", "[]", '{"since": null}', '{"since": "yesterday"}', "not json"])
def test_a_malformed_recover_gets_400(api, mine, body):
    api.raise_request_exception = False

    response = api.post(f"{BASE}/{mine.id}/recover", body, content_type="application/json")

    assert response.status_code == 400, response.content


@pytest.mark.parametrize("path", [
    "/api/v1/deliveries/nope/retry", f"{BASE}/nope", f"{BASE}/nope/deliveries", f"{BASE}/nope/rotate-secret",
])
def test_unknown_ids_get_404(api, path):
    response = api.post(path) if path.endswith(("retry", "secret")) else api.get(path)

    assert response.status_code == 404


def test_a_garbage_cursor_is_bad_input_naming_the_cursor(api, mine):
    api.raise_request_exception = False

    response = api.get(f"{BASE}/{mine.id}/deliveries", {"cursor": "%%%garbage"})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["cursor"])
