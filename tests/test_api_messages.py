"""The messages API: submit one message (with a fallback chain and an Idempotency-Key),
per-field errors that create nothing, the filtered cursor-paginated list, the detail with
its events, and isolation between applications."""

import io
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from comms import lifecycle
from comms.api.parsers import StrictJSONParser
from comms.lifecycle import Change, EventDetails
from comms.models import Message, MessageEvent
from comms.status import ErrorCode, Status
from comms.submission import message_submit

BASE = "/api/v1/messages"
PHONE = "+447700900123"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$")


@pytest.fixture(autouse=True)
def _no_real_publishing(published):
    pass


def body(**overrides) -> dict:
    return {"channel": "sim", "receiver": PHONE, "content": {"text": "Hi"}, **overrides}


def post(client, data, **headers):
    return client.post(BASE, data, format="json", headers=headers)


def iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def submit(application, channel, receiver=PHONE, **data) -> Message:
    message, _ = message_submit(application=application, data={
        "channel": channel, "receiver": receiver, "content": {"text": "Hi"}, **data})
    return message


# --- submit ------------------------------------------------------------------------------


def test_a_submitted_message_is_accepted_with_its_resource(api, application, channel):
    send_at = timezone.now() + timedelta(hours=1)
    expires_at = send_at + timedelta(hours=1)

    response = post(api, body(sender="Acme", content={"text": "Hi", "subject": "S", "html": "<b>Hi</b>"},
                              context={"prop1": "value1", "prop2": 33},
                              sendAt=iso(send_at), expiresAt=iso(expires_at)))

    assert response.status_code == 202, response.content
    data = response.json()
    assert set(data) == {"id", "status", "channel", "sender", "receiver", "content", "context", "sendAt",
                         "expiresAt", "attempts", "createdAt", "updatedAt"}
    assert HEX32.match(data["id"])
    assert (data["status"], data["channel"], data["sender"], data["receiver"], data["attempts"]) == \
        ("SCHEDULED", "sim", "Acme", PHONE, 0)
    assert data["content"] == {"text": "Hi", "subject": "S", "html": "<b>Hi</b>"}
    assert data["context"] == {"prop1": "value1", "prop2": 33}
    assert data["createdAt"] and data["updatedAt"]
    message = Message.objects.get(id=data["id"])
    assert (message.application, message.channel, message.send_at, message.expires_at) == \
        (application, channel, send_at, expires_at)


def test_a_message_without_send_at_is_queued_and_has_no_fallback_to(api, channel):
    data = post(api, body()).json()

    assert data["status"] == "QUEUED"
    assert (data["sendAt"], data["expiresAt"], data["sender"], data["context"]) == (None, None, "", {})
    assert "fallbackTo" not in data


def test_a_nested_fallback_chain_is_linked_and_only_the_head_starts(api, channel, backup_channel):
    response = post(api, body(context={"order": 7}, fallback={
        "channel": "backup", "receiver": "ann@example.com", "content": {"text": "Hi by mail"},
        "context": {"via": "mail"},
        "fallback": {"channel": "sim", "receiver": "+15550100", "content": {"text": "last"}}}))

    assert response.status_code == 202, response.content
    head = Message.objects.get(id=response.json()["id"])
    second = head.fallback_to
    third = second.fallback_to
    assert response.json()["fallbackTo"] == second.id
    assert (second.channel, second.receiver, second.content) == (backup_channel, "ann@example.com",
                                                                  {"text": "Hi by mail"})
    assert (third.receiver, third.fallback_to) == ("+15550100", None)
    assert (head.status, second.status, third.status) == ("QUEUED", "PENDING", "PENDING")
    # A fallback inherits the context of the link before it, its own keys winning.
    assert (second.context, third.context) == ({"order": 7, "via": "mail"}, {"order": 7, "via": "mail"})
    # A dormant fallback emits nothing.
    assert list(MessageEvent.objects.values_list("message_id", "status_code")) == [(head.id, "QUEUED")]


@pytest.mark.parametrize("links, status", [(5, 202), (6, 400)])
def test_a_fallback_chain_has_at_most_five_links(api, channel, links, status):
    node = None
    for _ in range(links):
        node = {"channel": "sim", "receiver": PHONE, "content": {"text": "x"},
                **({"fallback": node} if node else {})}

    response = post(api, body(fallback=node))

    assert response.status_code == status, response.content
    assert Message.objects.count() == (links + 1 if status == 202 else 0)


def test_a_bad_fallback_is_reported_under_the_fallback_field(api, channel):
    response = post(api, body(fallback={"channel": "nope", "receiver": PHONE, "content": {"text": "x"}}))

    assert response.status_code == 400
    assert "channel" in response.json()["errors"]["fallback"]
    assert not Message.objects.exists()


def test_a_repeated_idempotency_key_returns_the_first_message_and_creates_nothing(
        api, channel, published, django_capture_on_commit_callbacks):
    first = post(api, body(), **{"Idempotency-Key": "order-1"}).json()
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        again = post(api, body(receiver="+15550100"), **{"Idempotency-Key": "order-1"})

    assert again.status_code == 202
    assert again.json()["id"] == first["id"]
    assert again.json()["receiver"] == PHONE
    assert Message.objects.count() == 1
    assert MessageEvent.objects.count() == 1
    assert published.sent_ids() == []


def test_the_same_idempotency_key_in_another_application_is_independent(api, other_api, channel):
    mine = post(api, body(), **{"Idempotency-Key": "k"}).json()

    theirs = post(other_api, body(), **{"Idempotency-Key": "k"})

    assert theirs.status_code == 202
    assert theirs.json()["id"] != mine["id"]
    assert Message.objects.count() == 2


def test_without_idempotency_key_each_post_creates_a_message(api, channel):
    ids = {post(api, body()).json()["id"] for _ in range(2)}

    assert len(ids) == 2


def test_an_overlong_idempotency_key_is_a_400(api, channel):
    api.raise_request_exception = False

    response = post(api, body(), **{"Idempotency-Key": "k" * 256})

    assert response.status_code == 400
    assert not Message.objects.exists()


# --- malformed input ---------------------------------------------------------------------

NOW = timezone.now()


@pytest.mark.parametrize("data, field", [
    ({"receiver": PHONE, "content": {"text": "Hi"}}, "channel"),
    (body(channel="nope"), "channel"),
    (body(channel=5), "channel"),
    (body(channel=""), "channel"),
    (body(receiver=None), "receiver"),
    (body(receiver=["a"]), "receiver"),
    (body(receiver=""), "receiver"),
    (body(receiver="x" * 321), "receiver"),
    ({"channel": "sim", "content": {"text": "Hi"}}, "receiver"),
    (body(sender={"a": 1}), "sender"),
    (body(content="Hi"), "content"),
    (body(content=["Hi"]), "content"),
    (body(content={}), "content"),
    (body(content={"text": {"a": 1}}), "content"),
    (body(content={"text": "x" * 100_001}), "content"),
    (body(context="ctx"), "context"),
    (body(context=[1, 2]), "context"),
    (body(sendAt="tomorrow"), "sendAt"),
    (body(sendAt=12345), "sendAt"),
    (body(expiresAt="2021-13-45T00:00:00Z"), "expiresAt"),
    (body(expiresAt=iso(NOW - timedelta(minutes=1))), "expiresAt"),
    (body(sendAt=iso(NOW + timedelta(hours=2)), expiresAt=iso(NOW + timedelta(hours=1))), "expiresAt"),
    (body(fallback="sms"), "fallback"),
    (body(fallback=[body()]), "fallback"),
])
def test_malformed_fields_get_400_naming_the_field_and_create_nothing(api, channel, data, field):
    api.raise_request_exception = False

    response = post(api, data)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert not Message.objects.exists()


def test_a_disabled_channel_is_refused(api, channel):
    channel.enabled = False
    channel.save()

    response = post(api, body())

    assert response.status_code == 400
    assert "disabled" in response.json()["errors"]["channel"][0]
    assert not Message.objects.exists()


def test_a_charset_other_than_utf8_cannot_smuggle_a_lone_surrogate_in():
    # UTF-7 would decode "+2AA-" to a lone surrogate, which no escape check would see.
    raw = b'{"context": {"a": "+2AA-"}}'

    data = StrictJSONParser().parse(io.BytesIO(raw), parser_context={"encoding": "utf-7"})

    assert data == {"context": {"a": "+2AA-"}}


@pytest.mark.parametrize("raw", ["not json", "{", "", "[]", json.dumps([body()]), '"text"', "null", "5",
                                 '{"channel": "sim", "receiver": "x", "content": {"text": NaN}}'])
def test_a_body_that_is_not_a_json_object_gets_400(api, channel, raw):
    api.raise_request_exception = False

    response = api.post(BASE, raw, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["code"]
    assert not Message.objects.exists()


def test_a_body_over_the_limit_gets_413_and_creates_nothing(api, channel, settings):
    settings.RELAY_MAX_BODY_BYTES = 2_000

    response = post(api, body(content={"text": "x" * 3_000}))

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert not Message.objects.exists()


@pytest.mark.parametrize("context", [
    '{"n": 1e400}',  # parses to infinity, which no JSON column stores
    # a lone surrogate cannot be encoded; NUL is refused by PostgreSQL's jsonb
    '{"a": "\\ud800"}', '{"a": "nul\\u0000"}', '{"nul\\u0000": 1}', '{"a": {"deep": ["\\u0000"]}}',
    '{"channel": "sim", "receiver": "+447700900123", "content": {"text": "nul\\u0000"}}',
])
def test_a_context_json_columns_cannot_store_is_a_400(api, channel, context):
    api.raise_request_exception = False

    response = api.post(BASE, '{"channel": "sim", "receiver": "+447700900123", "content": {"text": "x"}, '
                              f'"context": {context}}}', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"]
    assert not Message.objects.exists()


# --- list --------------------------------------------------------------------------------


def test_the_list_is_newest_first_and_cursor_paginated(api, application, channel):
    now = timezone.now()
    ids = []
    for age in (3, 2, 1):
        m = submit(application, channel)
        Message.objects.filter(id=m.id).update(created_at=now - timedelta(minutes=age))
        ids.append(m.id)

    first = api.get(BASE, {"pageSize": 2}).json()
    second = api.get(first["next"]).json()
    back = api.get(second["previous"]).json()

    assert set(first) == {"next", "previous", "results"}
    assert [m["id"] for m in first["results"]] == [ids[2], ids[1]]
    assert first["previous"] is None
    assert [m["id"] for m in second["results"]] == [ids[0]]
    assert second["next"] is None
    assert [m["id"] for m in back["results"]] == [ids[2], ids[1]]
    assert "events" not in first["results"][0]


def test_the_list_filters_by_status_channel_and_receiver(api, application, channel, backup_channel):
    queued = submit(application, channel, "+1")
    scheduled = submit(application, channel, "+2", send_at=timezone.now() + timedelta(hours=1))
    on_backup = submit(application, backup_channel, "+3")

    def ids(**params):
        return [m["id"] for m in api.get(BASE, params).json()["results"]]

    assert ids(status="SCHEDULED") == [scheduled.id]
    assert ids(channel="backup") == [on_backup.id]
    assert ids(receiver="+1") == [queued.id]
    assert ids(status="QUEUED", channel="sim") == [queued.id]


def test_the_list_filters_by_a_created_range(api, application, channel):
    now = timezone.now()
    old, middle, new = (submit(application, channel) for _ in range(3))
    for m, age in ((old, 30), (middle, 20), (new, 10)):
        Message.objects.filter(id=m.id).update(created_at=now - timedelta(days=age))

    response = api.get(BASE, {"createdAfter": iso(now - timedelta(days=25)),
                              "createdBefore": iso(now - timedelta(days=15))})

    assert [m["id"] for m in response.json()["results"]] == [middle.id]


@pytest.mark.parametrize("params", [{"status": "LOST"}, {"createdAfter": "yesterday"},
                                    {"createdBefore": "2021-02-30T00:00:00Z"}])
def test_a_bad_list_filter_gets_400(api, channel, params):
    response = api.get(BASE, params)

    assert response.status_code == 400
    assert set(params) <= set(response.json()["errors"])


def test_a_garbage_cursor_is_bad_input_naming_the_cursor(api, channel):
    api.raise_request_exception = False
    response = api.get(BASE, {"cursor": "%%%garbage"})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["cursor"])


def test_the_list_holds_only_the_applications_own_messages(api, application, other_app_and_key, channel):
    mine = submit(application, channel)
    submit(other_app_and_key[0], channel)

    response = api.get(BASE)

    assert [m["id"] for m in response.json()["results"]] == [mine.id]


# --- detail ------------------------------------------------------------------------------


def test_the_detail_lists_events_oldest_first_in_the_webhook_shape(api, application, channel):
    message = submit(application, channel, context={"prop1": "value1"})
    lifecycle.transition([message.id], Change(Status.SENT, count_attempt=True))
    lifecycle.transition([message.id], Change(Status.DELIVERY_RETRIED, EventDetails(
        error_code=ErrorCode.CHANNEL_UNKNOWN_ERROR, error_message="The channel suffered an internal error",
        raw_code="E42")))

    response = api.get(f"{BASE}/{message.id}")

    assert response.status_code == 200
    data = response.json()
    assert (data["id"], data["status"], data["attempts"]) == (message.id, "DELIVERY_RETRIED", 1)
    events = data["events"]
    assert [(e["statusCode"], e["sequence"]) for e in events] == \
        [("QUEUED", 1), ("SENT", 2), ("DELIVERY_RETRIED", 3)]
    for event in events:
        assert HEX32.match(event["id"]) and TIMESTAMP.match(event["timeStamp"])
        assert (event["messageId"], event["channelName"], event["context"]) == \
            (message.id, "sim", {"prop1": "value1"})
    # Fields that do not apply are absent; the provider's raw code never leaves the platform.
    assert set(events[0]) == {"id", "statusCode", "messageId", "channelName", "context", "timeStamp", "sequence"}
    assert (events[2]["errorCode"], events[2]["errorMessage"]) == \
        ("CHANNEL_UNKNOWN_ERROR", "The channel suffered an internal error")
    assert "E42" not in response.content.decode()


def test_the_detail_of_a_chained_message_names_its_fallback(api, application, channel, backup_channel):
    message = submit(application, channel, fallback={
        "channel": backup_channel, "receiver": "ann@example.com", "content": {"text": "Hi"}})

    data = api.get(f"{BASE}/{message.id}").json()

    assert data["fallbackTo"] == message.fallback_to_id


def test_another_applications_message_is_not_found(api, other_app_and_key, channel):
    theirs = submit(other_app_and_key[0], channel)

    response = api.get(f"{BASE}/{theirs.id}")

    assert response.status_code == 404
    assert theirs.id not in response.content.decode()


def test_an_unknown_message_id_is_not_found(api, channel):
    assert api.get(f"{BASE}/{'0' * 32}").status_code == 404


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer ", "Bearer nope", "Bearer rly_abc_def",
                                           "Token rly_abc_def", "Basic dXNlcjpwYXNz"])
def test_a_missing_or_bad_key_gets_401_and_creates_nothing(client, channel, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    listed = client.get(BASE, headers=headers)
    created = client.post(BASE, body(), content_type="application/json", headers=headers)

    assert (listed.status_code, created.status_code) == (401, 401)
    assert created.json()["code"]
    assert not Message.objects.exists()


def test_a_revoked_key_gets_401(api, app_and_key, channel):
    app_and_key[0].keys.update(revoked_at=timezone.now())

    assert api.get(BASE).status_code == 401


def test_a_key_with_a_known_prefix_but_a_wrong_secret_gets_401(client, app_and_key):
    prefix = app_and_key[1].split("_")[1]

    response = client.get(BASE, headers={"Authorization": f"Bearer rly_{prefix}_wrong"})

    assert response.status_code == 401
