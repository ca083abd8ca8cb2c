"""Bad input is answered with a 400 naming the field, never a 500 and never silently
accepted: time zone offsets, page sizes, and the size of `context`."""

from datetime import timedelta, timezone

import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError
from kombu.exceptions import OperationalError as KombuOperationalError

from comms import selectors
from comms.api.auth import ApiKeyAuthentication
from comms.models import Message
from deliveries.services import subscription_create
from tests.test_api_messages import body, post

pytestmark = pytest.mark.django_db


# --- time zone offsets ---------------------------------------------------------------------


@pytest.mark.parametrize("param, value", [("createdAfter", "2026-01-01T00:00:00+18:03"),
                                          ("createdBefore", "2026-01-01T00:00:00-17:00"),
                                          ("createdAfter", "2026-01-01T00:00:00+14:00")])
def test_any_offset_python_reads_is_compared_in_utc(api, param, value):
    response = api.get("/api/v1/messages", {param: value})

    assert response.status_code == 200, response.content


def test_an_offset_names_the_same_instant_as_in_utc(api, channel):
    message = Message.objects.get(id=post(api, body(channel="sim")).json()["id"])
    a_second_before = (message.created_at - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=18, minutes=3)))

    found = api.get("/api/v1/messages", {"createdAfter": a_second_before.isoformat()}).json()["results"]

    assert [m["id"] for m in found] == [message.id]


# --- page sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["false", "-5", "0", "501", "1000", "1.5", ""])
def test_a_page_size_outside_1_to_500_is_a_400(api, size):
    response = api.get("/api/v1/messages", {"pageSize": size})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["pageSize"])


@pytest.mark.parametrize("size", ["1", "500"])
def test_a_page_size_within_bounds_is_taken(api, size):
    assert api.get("/api/v1/messages", {"pageSize": size}).status_code == 200


def test_the_deliveries_list_checks_its_page_size_too(api, application, local_receivers_allowed):
    sub = subscription_create(application=application, url="http://127.0.0.1:9/hook")

    response = api.get(f"/api/v1/subscriptions/{sub.id}/deliveries", {"pageSize": "-1"})

    assert response.status_code == 400


# --- context size ----------------------------------------------------------------------------


def test_a_context_over_the_limit_is_a_400_and_creates_nothing(api, channel, settings):
    settings.RELAY_MAX_CONTEXT_BYTES = 100

    response = post(api, body(channel="sim", context={"blob": "x" * 200}))

    assert (response.status_code, list(response.json()["errors"])) == (400, ["context"])
    assert not Message.objects.exists()


def test_a_context_within_the_limit_is_taken(api, channel, settings):
    settings.RELAY_MAX_CONTEXT_BYTES = 100

    assert post(api, body(channel="sim", context={"blob": "x" * 50})).status_code == 202


def test_a_batch_context_merged_into_an_item_must_fit_too(api, channel, settings):
    settings.RELAY_MAX_CONTEXT_BYTES = 100
    item = body(channel="sim", context={"mine": "y" * 45})

    response = api.post("/api/v1/messages/batch", {"messages": [item], "context": {"shared": "z" * 45}},
                        format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]["messages"]["0"]) == ["context"]
    assert not Message.objects.exists()


# --- not found, not allowed: the API's error shape ---------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/messages/x/y/z", "/api/v2/messages", "/api/"])
def test_a_path_under_the_api_that_names_no_endpoint_is_a_json_404(api, path):
    response = api.get(path)

    assert (response.status_code, response["Content-Type"]) == (404, "application/json")
    assert response.json()["code"] == "not_found"


def test_an_unknown_id_is_a_404_that_says_so(api):
    response = api.get("/api/v1/messages/" + "0" * 32)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and response.json()["message"]


def test_a_method_an_endpoint_does_not_take_is_a_json_405(api):
    response = api.delete("/api/v1/messages")

    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")


# --- outages: 503 JSON with Retry-After, never a 500 page -------------------------------------


@pytest.mark.parametrize("outage", [OperationalError("server closed the connection unexpectedly"),
                                    InterfaceError("connection already closed"),
                                    KombuOperationalError("Error 111 connecting to 127.0.0.1:6379")])
def test_an_outage_under_a_request_is_a_json_503_with_retry_after(api, monkeypatch, outage):
    def down(*args, **kwargs):
        raise outage

    monkeypatch.setattr(selectors, "messages_of", down)

    response = api.get("/api/v1/messages")

    assert (response.status_code, response["Retry-After"], response.json()["code"]) == (503, "5", "unavailable")


def test_an_outage_during_authentication_is_a_503_too(api, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(ApiKeyAuthentication, "authenticate", down)

    assert api.get("/api/v1/messages").status_code == 503


def test_a_programming_error_is_a_bug_not_an_outage(api, monkeypatch):
    def broken(*args, **kwargs):
        raise ProgrammingError("relation does not exist")

    monkeypatch.setattr(selectors, "messages_of", broken)
    api.raise_request_exception = False

    assert api.get("/api/v1/messages").status_code == 500


def test_an_outage_is_logged_as_one_warning_line_and_nothing_else(api, monkeypatch, caplog):
    def down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly\n\tThis probably means ...")

    monkeypatch.setattr(selectors, "messages_of", down)

    api.get("/api/v1/messages")

    ours = [r for r in caplog.records if r.name.startswith(("comms", "deliveries", "django"))]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in ours] == [
        ("WARNING", "outage on GET /api/v1/messages: OperationalError: server closed the connection unexpectedly",
         None)]
