"""Quotas per application: over its API requests per minute or its daily message quota, an
application gets 429 with Retry-After and the API's error shape, and nothing is created;
under them, and with none set, nothing changes (and the counter's storage is never asked)."""

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from comms import quotas
from comms.api import views
from comms.models import Message, MessageEvent
from tests.test_api_messages import body

pytestmark = pytest.mark.django_db

MESSAGES = "/api/v1/messages"
BATCH = "/api/v1/messages/batch"


@pytest.fixture(autouse=True)
def fresh_counts(settings):
    """Each test starts from empty counters: the Redis keys (under relay-limits:, in this
    run's Redis db) outlive a test, and application ids repeat between runs."""
    quotas.reset_storage()
    quotas.storage().reset()
    yield
    quotas.reset_storage()


def limit(application, **limits):
    for name, value in limits.items():
        setattr(application, name, value)
    application.save()  # saving empties the per-process lookup caches at once


def batch(client, n: int):
    items = [body(channel="sim", receiver=f"+4477009{i:05d}") for i in range(n)]
    return client.post(BATCH, {"messages": items}, format="json")


def single(client, **headers):
    return client.post(MESSAGES, body(channel="sim"), format="json", headers=headers)


def refusal(response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


# --- the request rate ----------------------------------------------------------------------


def test_over_its_requests_per_minute_an_application_gets_429_rate_limited(api, application):
    limit(application, api_requests_per_minute=3)

    answers = [api.get(MESSAGES) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json()["code"] == "rate_limited"
    assert "3 API requests a minute" in answers[3].json()["message"]
    assert 1 <= int(answers[3]["Retry-After"]) <= 60


def test_a_rate_of_zero_refuses_every_request(api, application):
    limit(application, api_requests_per_minute=0)

    response = api.get(MESSAGES)

    assert (refusal(response), response["Retry-After"]) == ((429, "rate_limited"), "60")


def test_every_authenticated_request_counts_against_the_rate_whatever_its_answer(api, application, channel):
    limit(application, api_requests_per_minute=2)
    api.get(f"{MESSAGES}/{'0' * 32}")  # 404
    api.post(MESSAGES, {"channel": "sim"}, format="json")  # 400

    assert refusal(single(api)) == (429, "rate_limited")


def test_the_rate_limited_submission_creates_nothing(api, application, channel, published, run):
    limit(application, api_requests_per_minute=1)
    api.get(MESSAGES)

    response = run(single, api)

    assert refusal(response) == (429, "rate_limited")
    assert (Message.objects.count(), published.calls) == (0, {})


def test_the_request_rate_is_per_application(api, other_api, application):
    limit(application, api_requests_per_minute=1)
    api.get(MESSAGES)

    assert api.get(MESSAGES).status_code == 429
    assert [other_api.get(MESSAGES).status_code for _ in range(3)] == [200, 200, 200]


def test_an_unauthenticated_request_is_refused_before_it_is_counted(api, application):
    limit(application, api_requests_per_minute=1)

    assert APIClient().get(MESSAGES).status_code == 401
    assert api.get(MESSAGES).status_code == 200


# --- the daily message quota ---------------------------------------------------------------


def test_a_batch_over_the_daily_quota_gets_429_quota_exceeded_and_creates_nothing(
        api, application, channel, published, run, clock):
    clock.now = datetime(2026, 11, 24, 23, 59, 30, tzinfo=UTC)
    limit(application, daily_message_quota=5)

    response = run(batch, api, 6)

    assert refusal(response) == (429, "quota_exceeded")
    assert response["Retry-After"] == "30"  # to 00:00 UTC
    assert "daily quota is 5 messages" in response.json()["message"]
    assert (Message.objects.count(), MessageEvent.objects.count(), published.calls) == (0, 0, {})


def test_a_batch_that_fits_the_quota_is_accepted_and_the_next_message_is_not(api, application, channel):
    limit(application, daily_message_quota=5)

    assert batch(api, 5).status_code == 202
    assert refusal(single(api)) == (429, "quota_exceeded")
    assert Message.objects.count() == 5


def test_a_refused_request_does_not_consume_quota(api, application, channel):
    limit(application, daily_message_quota=5)
    batch(api, 4)

    assert batch(api, 2).status_code == 429
    assert batch(api, 1).status_code == 202


def test_under_the_quota_nothing_changes(api, application, channel, published, run):
    limit(application, daily_message_quota=100, api_requests_per_minute=100)

    response = run(single, api)

    assert response.status_code == 202
    assert "Retry-After" not in response
    assert published.sent_ids() == [response.json()["id"]]


def test_the_quota_is_per_utc_day(api, application, channel, clock):
    clock.now = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    limit(application, daily_message_quota=1)
    single(api)
    assert single(api).status_code == 429

    clock.now += timedelta(seconds=2)

    assert single(api).status_code == 202


def test_an_invalid_request_is_a_400_even_with_the_quota_spent(api, application, channel):
    limit(application, daily_message_quota=1)
    single(api)

    assert refusal(api.post(MESSAGES, {"channel": "sim"}, format="json")) == (400, "invalid")
    assert refusal(api.post(BATCH, {"messages": [{}]}, format="json")) == (400, "invalid")


def test_a_submission_that_fails_gives_its_quota_back(api, application, channel, monkeypatch):
    limit(application, daily_message_quota=3)

    def down(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patched:
        patched.setattr(views, "message_submit_batch", down)
        assert batch(api, 3).status_code == 503

    assert batch(api, 3).status_code == 202


def test_an_idempotent_replay_consumes_no_quota(api, application, channel):
    limit(application, daily_message_quota=2)
    first = single(api, **{"Idempotency-Key": "k1"})

    replay = single(api, **{"Idempotency-Key": "k1"})

    assert (replay.status_code, replay.json()["id"]) == (202, first.json()["id"])
    assert single(api).status_code == 202
    assert refusal(single(api)) == (429, "quota_exceeded")


def test_an_idempotent_replay_is_answered_even_with_the_quota_spent(api, application, channel):
    limit(application, daily_message_quota=1)
    first = single(api, **{"Idempotency-Key": "k1"})

    replay = single(api, **{"Idempotency-Key": "k1"})

    assert (replay.status_code, replay.json()["id"]) == (202, first.json()["id"])
    assert refusal(single(api, **{"Idempotency-Key": "k2"})) == (429, "quota_exceeded")
    assert Message.objects.count() == 1


def test_the_quota_and_the_rate_are_each_applications_own(api, other_api, application, channel):
    limit(application, daily_message_quota=1)
    single(api)

    assert [single(other_api).status_code for _ in range(2)] == [202, 202]


# --- the storage: unreachable, and not asked at all without limits ---------------------------


def test_an_unreachable_storage_fails_open_with_one_warning(api, application, channel, settings, caplog):
    settings.RELAY_LIMITS_STORAGE_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    quotas.reset_storage()
    limit(application, api_requests_per_minute=1, daily_message_quota=1)

    with caplog.at_level(logging.WARNING, logger="comms.quotas"):
        answers = [single(api).status_code for _ in range(3)]

    assert answers == [202, 202, 202]
    warnings = [r for r in caplog.records if r.name == "comms.quotas"]
    assert len(warnings) == 1  # then not asked again for RELAY_LIMITS_RETRY_SECONDS
    assert "quotas not enforced" in warnings[0].getMessage()


def test_the_storage_is_asked_again_after_the_retry_interval(application, settings, monkeypatch):
    settings.RELAY_LIMITS_STORAGE_URL = "redis://127.0.0.1:1/0"
    settings.RELAY_LIMITS_RETRY_SECONDS = 0
    quotas.reset_storage()
    limit(application, api_requests_per_minute=1)
    calls = []
    monkeypatch.setattr(quotas, "storage", lambda real=quotas.storage: calls.append(1) or real())

    quotas.check_request_rate(application)
    quotas.check_request_rate(application)

    assert len(calls) == 2


def test_without_limits_the_storage_is_never_asked(api, application, channel, monkeypatch):
    def asked():
        raise AssertionError("the limits storage was asked")

    monkeypatch.setattr(quotas, "storage", asked)

    assert [api.get(MESSAGES).status_code, single(api).status_code, batch(api, 3).status_code] == [200, 202, 202]


def test_the_throttle_module_imports_first_without_a_cycle():
    """APIView reads DEFAULT_THROTTLE_CLASSES as its class is made: importing the throttle
    before rest_framework.views must not need rest_framework.views."""
    code = "import django; django.setup(); import comms.api.throttling"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"})

    assert result.returncode == 0, result.stderr


# --- units and the schema --------------------------------------------------------------------


@pytest.mark.parametrize("now, expected", [
    (datetime(2026, 11, 24, 0, 0, 0, tzinfo=UTC), 86400),
    (datetime(2026, 11, 24, 23, 59, 59, 500000, tzinfo=UTC), 0.5),
    (datetime(2026, 11, 24, 23, 0, 0, tzinfo=dt_timezone(timedelta(hours=-5))), 20 * 3600),  # 04:00 UTC
])
def test_seconds_to_midnight_counts_to_the_next_utc_midnight(now, expected):
    assert quotas.seconds_to_midnight(now) == expected


def test_429_is_documented_with_retry_after_on_every_authenticated_operation(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/v1/receipts/"):
                assert "429" not in operation["responses"]
                continue
            answer = operation["responses"]["429"]
            assert answer["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}, (method, path)
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            assert ("quota_exceeded" in answer["description"]) == (
                method == "post" and path in (MESSAGES, BATCH)), (method, path)
