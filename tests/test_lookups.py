"""The per-process caches of API keys and channels (comms.lookups): hits, expiry, and
changes that take effect at once in the process that made them."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from comms import lookups
from comms.accounts import application_for_key, channel_upsert
from comms.models import ApiKey, Channel

BASE = "/api/v1/messages"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch, settings):
    """Empty caches, a clock the test moves, and a TTL of 5 s."""
    settings.RELAY_LOOKUP_CACHE_SECONDS = 5
    fake = FakeClock()
    lookups.keys.clear()
    lookups.channels.clear()
    monkeypatch.setattr(lookups.keys, "clock", fake)
    monkeypatch.setattr(lookups.channels, "clock", fake)
    return fake


def post(api, channel_name="sim"):
    body = {"channel": channel_name, "receiver": "+447700900123", "content": {"text": "hi"}}
    return api.post(BASE, json.dumps(body), content_type="application/json")


def test_a_known_key_is_looked_up_once_within_the_ttl(app_and_key, django_assert_num_queries):
    application, raw_key = app_and_key
    application_for_key(raw_key)

    with django_assert_num_queries(0):
        found = application_for_key(raw_key)

    assert found.id == application.id


def test_a_cached_prefix_with_a_wrong_secret_is_still_refused(app_and_key):
    _, raw_key = app_and_key
    application_for_key(raw_key)
    prefix = raw_key.split("_")[1]

    assert application_for_key(f"rly_{prefix}_wrong") is None


def test_a_key_revoked_without_a_signal_is_refused_once_the_entry_expires(app_and_key, clock):
    _, raw_key = app_and_key
    application_for_key(raw_key)
    ApiKey.objects.update(revoked_at=timezone.now())  # as another process would: no signal here

    still_cached = application_for_key(raw_key)
    clock.now += 5.1

    assert (still_cached is not None, application_for_key(raw_key)) == (True, None)


def test_a_key_revoked_in_this_process_is_refused_at_once(app_and_key):
    application, raw_key = app_and_key
    application_for_key(raw_key)
    key = application.keys.get()

    key.revoked_at = timezone.now()
    key.save()

    assert application_for_key(raw_key) is None


def test_an_application_made_admin_in_this_process_is_admin_at_once(app_and_key):
    application, raw_key = app_and_key
    application_for_key(raw_key)

    application.is_admin = True
    application.save()

    assert application_for_key(raw_key).is_admin is True


def test_a_channel_is_looked_up_once_within_the_ttl(api, channel):
    post(api)

    with CaptureQueriesContext(connection) as queries:
        response = post(api)

    assert response.status_code == 202, response.content
    looked_up = [q["sql"] for q in queries if 'FROM "comms_channel"' in q["sql"] or 'FROM "comms_apikey"' in q["sql"]]
    assert looked_up == []


def test_a_channel_disabled_in_this_process_is_refused_at_once(api, channel):
    post(api)

    channel_upsert(name="sim", enabled=False)
    response = post(api)

    assert response.status_code == 400
    assert "disabled" in response.json()["errors"]["channel"][0]


def test_a_channel_disabled_without_a_signal_is_refused_once_the_entry_expires(api, channel, clock):
    post(api)
    Channel.objects.filter(id=channel.id).update(enabled=False)

    within_ttl = post(api).status_code
    clock.now += 5.1

    assert (within_ttl, post(api).status_code) == (202, 400)


def test_a_deleted_channel_is_unknown_at_once(channel):
    lookups.channel_by_name("sim")

    channel.delete()

    assert lookups.channel_by_name("sim") is None


def test_what_a_caller_sets_on_a_channel_does_not_reach_the_next(channel):
    first = lookups.channel_by_name("sim")
    first.enabled = False

    assert lookups.channel_by_name("sim").enabled is True


def test_a_ttl_of_zero_turns_the_cache_off(app_and_key, settings, django_assert_num_queries):
    settings.RELAY_LOOKUP_CACHE_SECONDS = 0
    _, raw_key = app_and_key
    application_for_key(raw_key)

    with django_assert_num_queries(1):
        application_for_key(raw_key)
