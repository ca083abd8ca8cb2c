"""The batch API: up to 1,000 messages in request order, all or nothing, errors keyed by
item index, a shared context under each message's own, and a bounded number of queries."""

import math
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from comms.models import Message, MessageEvent
from deliveries.models import Delivery
from deliveries.services import subscription_create

BATCH = "/api/v1/messages/batch"
HEX32_LEN = 32


@pytest.fixture(autouse=True)
def _no_real_publishing(published):
    pass


def item(receiver: str, **overrides) -> dict:
    return {"channel": "sim", "receiver": receiver, "content": {"text": f"Hi {receiver}"}, **overrides}


def items(n: int) -> list[dict]:
    return [item(f"+4477009{i:05d}") for i in range(n)]


def post(client, data):
    return client.post(BATCH, data, format="json")


def bulk_inserts(model, rows: int) -> int:
    """INSERT statements a bulk_create of `rows` takes: one, unless the backend caps the
    parameters per statement (SQLite: 999), which Django answers by splitting."""
    per_statement = connection.ops.bulk_batch_size(model._meta.concrete_fields, [None] * rows)
    return math.ceil(rows / per_statement)


# --- accepted ----------------------------------------------------------------------------


def test_a_batch_is_accepted_with_its_messages_in_request_order(api, application, channel):
    receivers = ["+3", "+1", "+2"]

    response = post(api, {"messages": [item(r) for r in receivers]})

    assert response.status_code == 202, response.content
    results = response.json()["messages"]
    assert [m["receiver"] for m in results] == receivers
    assert all(len(m["id"]) == HEX32_LEN and m["status"] == "QUEUED" for m in results)
    stored = Message.objects.in_bulk([m["id"] for m in results])
    assert [stored[m["id"]].receiver for m in results] == receivers
    assert {m.application for m in stored.values()} == {application}


def test_a_batch_publishes_its_messages_after_commit(api, channel, published,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        results = post(api, {"messages": items(120)}).json()["messages"]

    assert published.sent_ids() == [m["id"] for m in results]


def test_a_batch_item_may_be_scheduled_and_may_carry_a_fallback(api, channel, backup_channel):
    send_at = (timezone.now() + timedelta(hours=1)).isoformat()

    response = post(api, {"messages": [
        item("+1", sendAt=send_at),
        item("+2", fallback={"channel": "backup", "receiver": "ann@example.com", "content": {"text": "Hi"}}),
    ]})

    assert response.status_code == 202, response.content
    scheduled, chained = response.json()["messages"]
    assert scheduled["status"] == "SCHEDULED"
    fallback = Message.objects.get(id=chained["fallbackTo"])
    assert (fallback.channel, fallback.status) == (backup_channel, "PENDING")
    assert "fallbackTo" not in scheduled


def test_a_batch_of_one_thousand_messages_is_accepted(api, channel):
    response = post(api, {"messages": items(1000)})

    assert response.status_code == 202
    assert len(response.json()["messages"]) == 1000
    assert Message.objects.count() == 1000


def test_a_batch_of_one_thousand_and_one_messages_is_refused(api, channel):
    response = post(api, {"messages": items(1001)})

    assert response.status_code == 400
    assert "messages" in response.json()["errors"]
    assert not Message.objects.exists()


# --- context -----------------------------------------------------------------------------


def test_the_batch_context_is_inherited_and_the_messages_own_keys_win(api, channel):
    response = post(api, {"context": {"campaign": "spring", "tier": "gold"}, "messages": [
        item("+1"),
        item("+2", context={"tier": "silver", "order": 7}),
    ]})

    plain, own = response.json()["messages"]
    assert plain["context"] == {"campaign": "spring", "tier": "gold"}
    assert own["context"] == {"campaign": "spring", "tier": "silver", "order": 7}
    assert Message.objects.get(id=own["id"]).context == own["context"]


def test_the_batch_context_reaches_the_fallbacks_too(api, channel, backup_channel):
    response = post(api, {"context": {"campaign": "spring"}, "messages": [
        item("+1", context={"order": 7},
             fallback={"channel": "backup", "receiver": "a@example.com", "content": {"text": "x"}}),
    ]})

    (head,) = response.json()["messages"]
    assert Message.objects.get(id=head["fallbackTo"]).context == {"campaign": "spring", "order": 7}


def test_the_batch_context_does_not_leak_between_items(api, channel):
    response = post(api, {"context": {"a": 1}, "messages": [item("+1", context={"b": 2}), item("+2")]})

    assert response.json()["messages"][1]["context"] == {"a": 1}


# --- all or nothing ----------------------------------------------------------------------


def test_one_bad_item_refuses_the_whole_batch_with_errors_keyed_by_index(
        api, channel, published, django_capture_on_commit_callbacks):
    messages = items(5)
    messages[3] = item("+3", channel="nope")
    messages[1] = {"channel": "sim", "content": {"text": "no receiver"}}

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, {"messages": messages})

    assert response.status_code == 400
    errors = response.json()["errors"]["messages"]
    assert set(errors) == {"1", "3"}
    assert "receiver" in errors["1"]
    assert "channel" in errors["3"]
    assert not Message.objects.exists()
    assert not MessageEvent.objects.exists()
    assert published.sent_ids() == []


def test_an_item_that_is_not_an_object_is_reported_by_its_index(api, channel):
    response = post(api, {"messages": [item("+1"), "hello", item("+2")]})

    assert response.status_code == 400
    assert set(response.json()["errors"]["messages"]) == {"1"}
    assert not Message.objects.exists()


def test_a_bad_fallback_in_one_item_is_reported_under_that_item(api, channel):
    response = post(api, {"messages": [item("+1"), item("+2", fallback={"channel": "sim"})]})

    assert response.status_code == 400
    assert "fallback" in response.json()["errors"]["messages"]["1"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("data, field", [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": None}, "messages"),
    ({"messages": {"0": item("+1")}}, "messages"),
    ({"messages": "all"}, "messages"),
    ({"messages": [item("+1")], "context": "ctx"}, "context"),
    ({"messages": [item("+1")], "context": [1]}, "context"),
    ({"messages": [item("+1")], "context": None}, "context"),
])
def test_a_malformed_batch_gets_400_naming_the_field(api, channel, data, field):
    response = post(api, data)

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("raw", ["not json", "[]", '"x"', "null"])
def test_a_batch_body_that_is_not_a_json_object_gets_400(api, channel, raw):
    api.raise_request_exception = False

    response = api.post(BATCH, raw, content_type="application/json")

    assert response.status_code == 400, response.content
    assert not Message.objects.exists()


def test_a_batch_over_the_body_limit_gets_413(api, channel, settings):
    settings.RELAY_MAX_BODY_BYTES = 10_000

    response = post(api, {"messages": items(200)})

    assert response.status_code == 413
    assert not Message.objects.exists()


@pytest.mark.parametrize("context", ['{"a": "nul\\u0000"}', '{"a": "\\ud800"}'])
def test_a_batch_context_json_columns_cannot_store_is_a_400(api, channel, context):
    api.raise_request_exception = False
    raw = '{"messages": [{"channel": "sim", "receiver": "+1", "content": {"text": "x"}}], ' \
          f'"context": {context}}}'

    response = api.post(BATCH, raw, content_type="application/json")

    assert response.status_code == 400
    assert not Message.objects.exists()


# --- auth and cost -----------------------------------------------------------------------


def test_a_batch_needs_a_key(client, channel):
    response = client.post(BATCH, {"messages": items(1)}, content_type="application/json")

    assert response.status_code == 401
    assert not Message.objects.exists()


@pytest.mark.parametrize("n", [20, 200])
def test_a_batch_takes_a_constant_number_of_queries(api, application, channel, settings, n,
                                                    django_assert_max_num_queries,
                                                    django_capture_on_commit_callbacks):
    # A subscription makes the webhook fan-out part of the cost too.
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    subscription_create(application=application, url="http://127.0.0.1:9/hook")
    # Key lookup, channels, savepoint and release, subscriptions, channel names, then the
    # bulk INSERTs (one each on PostgreSQL; SQLite's parameter cap splits large ones), and
    # after commit which subscriptions could take a webhook task now.
    fixed = 7
    inserts = bulk_inserts(Message, n) + bulk_inserts(MessageEvent, n) + bulk_inserts(Delivery, n)

    with django_assert_max_num_queries(fixed + inserts), django_capture_on_commit_callbacks(execute=True):
        response = post(api, {"messages": items(n)})

    assert response.status_code == 202
    assert Delivery.objects.count() == n
