"""The API takes JSON as its schema types it: no number read as a string, no "yes" as a
boolean, no date without an offset, no empty filter silently ignored. Each of these was
accepted before, found by schemathesis' negative-data check."""

import pytest
from rest_framework.test import APIClient

from comms.models import Channel, Message
from deliveries.models import Subscription
from deliveries.services import subscription_create

pytestmark = pytest.mark.django_db


def message(**changes):
    body = {"channel": "sim", "receiver": "+447700900123", "content": {"text": "hi"}}
    body.update(changes)
    return body


@pytest.mark.parametrize("changes, field", [
    ({"receiver": 5}, "receiver"),
    ({"sender": 5}, "sender"),
    ({"content": {"text": 7}}, "content"),
    ({"content": {"text": "hi", "subject": 1.5}}, "content"),
    ({"sendAt": "2030-01-01"}, "sendAt"),
    ({"sendAt": "2030-01-01T10:00"}, "sendAt"),
    ({"sendAt": "2030-01-01T10:00:00"}, "sendAt"),
    ({"expiresAt": "20300101T100000Z"}, "expiresAt"),
])
def test_a_message_field_of_the_wrong_json_type_or_format_is_a_400(api, channel, changes, field):
    response = api.post("/api/v1/messages", message(**changes), format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("send_at", ["2030-01-01T10:00:00Z", "2030-01-01T10:00:00.250+02:00", "2030-01-01t10:00:00z"])
def test_an_rfc3339_instant_is_taken(api, channel, send_at):
    assert api.post("/api/v1/messages", message(sendAt=send_at), format="json").status_code == 202


@pytest.mark.parametrize("changes", [{"maxAttempts": "3"}, {"retryDelay": "5"}, {"retryDelay": True},
                                     {"enabled": 0}, {"enabled": "yes"}, {"name": 12345}])
def test_a_channel_field_of_the_wrong_json_type_is_a_400(admin_api, changes):
    response = admin_api.post("/api/v1/channels", {"name": "c1", "type": "simulator", **changes}, format="json")

    assert response.status_code == 400, response.content
    assert not Channel.objects.exists()


@pytest.mark.parametrize("changes, field", [({"active": 0}, "active"), ({"active": "true"}, "active"),
                                            ({"description": 5}, "description"), ({"channels": [5]}, "channels"),
                                            ({"headers": {"X-A": 5}}, "headers"), ({"url": "ftp://example.com/x"}, "url")])
def test_a_subscription_field_of_the_wrong_json_type_is_a_400(api, local_receivers_allowed, changes, field):
    response = api.post("/api/v1/subscriptions", {"url": "http://127.0.0.1:9/hook", **changes}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Subscription.objects.exists()


def test_recover_since_must_be_an_rfc3339_instant(api, application, local_receivers_allowed):
    sub = subscription_create(application=application, url="http://127.0.0.1:9/hook")

    response = api.post(f"/api/v1/subscriptions/{sub.id}/recover", {"since": "2020-01-01"}, format="json")

    assert (response.status_code, list(response.json()["errors"])) == (400, ["since"])


@pytest.mark.parametrize("param", ["createdAfter", "createdBefore", "status", "channel", "receiver", "cursor"])
def test_a_list_parameter_given_empty_is_a_400_not_ignored(api, param):
    response = api.get("/api/v1/messages", {param: ""})

    assert (response.status_code, list(response.json()["errors"])) == (400, [param])


def test_a_list_instant_without_an_offset_is_a_400(api):
    response = api.get("/api/v1/messages", {"createdAfter": "2026-01-01"})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["createdAfter"])


def test_an_empty_delivery_status_filter_is_a_400(api, application, local_receivers_allowed):
    sub = subscription_create(application=application, url="http://127.0.0.1:9/hook")

    response = api.get(f"/api/v1/subscriptions/{sub.id}/deliveries", {"status": ""})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["status"])


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unsafe_method_on_an_unknown_api_path_is_a_json_404_not_a_csrf_page(api, method):
    client = APIClient(enforce_csrf_checks=True)
    response = getattr(client, method)("/api/v1/subscriptions/a.b/rotate-secret")

    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
        404, "application/json", "not_found")


def test_a_malformed_url_is_named_as_such_not_as_a_wrong_type(api, local_receivers_allowed):
    response = api.post("/api/v1/subscriptions", {"url": "https://0.a"}, format="json")

    assert response.json()["errors"]["url"] == ["Enter a valid URL."]


def test_a_blank_receiver_is_refused_as_its_schema_pattern_says(api, channel):
    response = api.post("/api/v1/messages", message(receiver="   "), format="json")

    assert (response.status_code, list(response.json()["errors"])) == (400, ["receiver"])


def test_a_subject_of_spaces_is_kept_as_sent(api, channel):
    response = api.post("/api/v1/messages", message(content={"text": "hi", "subject": " "}), format="json")

    assert response.status_code == 202
    assert Message.objects.get().content["subject"] == " "


def test_a_subscriptions_channels_are_channel_names(api, local_receivers_allowed):
    response = api.post("/api/v1/subscriptions", {"url": "http://127.0.0.1:9/hook", "channels": [" "]}, format="json")

    assert (response.status_code, list(response.json()["errors"])) == (400, ["channels"])
