"""The channels API: shared infrastructure, so admin applications only; CRUD by name and
validation of the retry policy, the type and the provider's config."""

import pytest

from comms.models import Channel

BASE = "/api/v1/channels"
GATEWAY = "https://gateway.example.com/send"


def post(client, data):
    return client.post(BASE, data, format="json")


def patch(client, name, data):
    return client.patch(f"{BASE}/{name}", data, format="json")


# --- who may -----------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [("get", BASE), ("get", f"{BASE}/sim"), ("patch", f"{BASE}/sim"),
                                          ("put", f"{BASE}/sim")])
def test_a_non_admin_application_gets_403(api, channel, method, path):
    response = getattr(api, method)(path, {"name": "sim", "type": "simulator", "maxAttempts": 9}, format="json")

    assert response.status_code == 403
    assert response.json()["code"]
    channel.refresh_from_db()
    assert channel.max_attempts == 3


def test_a_non_admin_application_cannot_create_a_channel(api):
    response = post(api, {"name": "mine", "type": "simulator"})

    assert response.status_code == 403
    assert not Channel.objects.filter(name="mine").exists()


def test_the_channels_api_needs_a_key(client, channel):
    assert client.get(BASE).status_code == 401


# --- CRUD --------------------------------------------------------------------------------


def test_an_admin_creates_a_channel(admin_api):
    response = post(admin_api, {"name": "sms-uk", "type": "simulator", "config": {"receiptDelay": 0.5},
                                "maxAttempts": 5, "retryDelay": 2.5, "enabled": False})

    assert response.status_code == 201, response.content
    data = response.json()
    assert set(data) == {"name", "type", "config", "maxAttempts", "retryDelay", "rateLimit", "enabled"}
    assert (data["name"], data["type"], data["maxAttempts"], data["retryDelay"], data["enabled"]) == \
        ("sms-uk", "simulator", 5, 2.5, False)
    assert data["config"]["receiptDelay"] == 0.5
    channel = Channel.objects.get(name="sms-uk")
    assert (channel.type, channel.max_attempts, channel.retry_delay, channel.enabled) == \
        ("simulator", 5, 2.5, False)
    assert channel.config == data["config"]


def test_a_created_channel_gets_defaults_and_a_generated_receipt_secret(admin_api):
    data = post(admin_api, {"name": "plain", "type": "simulator"}).json()

    assert (data["maxAttempts"], data["retryDelay"], data["enabled"]) == (3, 5.0, True)
    assert len(data["config"]["receiptSecret"]) >= 16


def test_a_channel_has_no_rate_limit_unless_given_one(admin_api):
    assert post(admin_api, {"name": "plain", "type": "simulator"}).json()["rateLimit"] is None

    data = post(admin_api, {"name": "slow", "type": "simulator", "rateLimit": 1}).json()

    assert data["rateLimit"] == 1.0
    assert Channel.objects.get(name="slow").rate_limit == 1.0


def test_a_rate_limit_is_removed_with_null(admin_api, channel):
    admin_api.patch(f"{BASE}/sim", {"rateLimit": 5}, format="json")
    response = admin_api.patch(f"{BASE}/sim", {"rateLimit": None}, format="json")

    assert response.status_code == 200
    assert Channel.objects.get(name="sim").rate_limit is None


@pytest.mark.parametrize("rate", [0, -1, "5", 1e9])
def test_a_rate_limit_must_be_a_positive_number_of_messages_per_second(admin_api, rate):
    response = post(admin_api, {"name": "bad", "type": "simulator", "rateLimit": rate})

    assert response.status_code == 400
    assert "rateLimit" in str(response.json())
    assert not Channel.objects.filter(name="bad").exists()


def test_an_admin_creates_an_http_gateway_channel(admin_api):
    response = post(admin_api, {"name": "gw", "type": "http",
                                "config": {"url": GATEWAY, "headers": {"X-Api-Key": "k"}}})

    assert response.status_code == 201, response.content
    assert Channel.objects.get(name="gw").config["url"] == GATEWAY


def test_channels_are_listed_by_name(admin_api, channel, backup_channel):
    response = admin_api.get(BASE)

    assert response.status_code == 200
    body = response.json()
    names = [c["name"] for c in (body["results"] if isinstance(body, dict) else body)]
    assert names == ["backup", "sim"]


def test_a_channel_is_retrieved_by_name(admin_api, channel):
    response = admin_api.get(f"{BASE}/sim")

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["maxAttempts"], response.json()["retryDelay"]) == \
        ("sim", 3, 10.0)


def test_an_unknown_channel_is_not_found(admin_api):
    assert admin_api.get(f"{BASE}/nope").status_code == 404


def test_patching_changes_only_the_given_fields(admin_api, channel):
    secret = channel.config["receiptSecret"]

    response = patch(admin_api, "sim", {"maxAttempts": 7, "enabled": False})

    assert response.status_code == 200, response.content
    channel.refresh_from_db()
    assert (channel.max_attempts, channel.enabled, channel.retry_delay) == (7, False, 10.0)
    assert channel.config["receiptSecret"] == secret


def test_putting_replaces_the_channel(admin_api, channel):
    response = admin_api.put(f"{BASE}/sim", {"name": "sim", "type": "simulator", "maxAttempts": 2,
                                             "retryDelay": 0, "config": {"failureRate": 0.25}}, format="json")

    assert response.status_code == 200, response.content
    channel.refresh_from_db()
    assert (channel.max_attempts, channel.retry_delay, channel.config["failureRate"]) == (2, 0.0, 0.25)


def test_a_channel_cannot_be_deleted_through_the_api(admin_api, channel):
    # Messages point at channels (PROTECT): disabling is the way to retire one.
    response = admin_api.delete(f"{BASE}/sim")

    assert response.status_code == 405
    assert Channel.objects.filter(name="sim").exists()


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("data, field", [
    ({"type": "simulator"}, "name"),
    ({"name": "has space", "type": "simulator"}, "name"),
    ({"name": "x" * 101, "type": "simulator"}, "name"),
    ({"name": "c"}, "type"),
    ({"name": "c", "type": "carrier-pigeon"}, "type"),
    ({"name": "c", "type": None}, "type"),
    ({"name": "c", "type": ["simulator"]}, "type"),
    ({"name": "c", "type": "simulator", "maxAttempts": 0}, "maxAttempts"),
    ({"name": "c", "type": "simulator", "maxAttempts": -1}, "maxAttempts"),
    ({"name": "c", "type": "simulator", "maxAttempts": 101}, "maxAttempts"),
    ({"name": "c", "type": "simulator", "maxAttempts": 2.5}, "maxAttempts"),
    ({"name": "c", "type": "simulator", "maxAttempts": "many"}, "maxAttempts"),
    ({"name": "c", "type": "simulator", "retryDelay": -0.1}, "retryDelay"),
    ({"name": "c", "type": "simulator", "retryDelay": 86_401}, "retryDelay"),
    ({"name": "c", "type": "simulator", "retryDelay": "NaN"}, "retryDelay"),
    ({"name": "c", "type": "simulator", "retryDelay": "soon"}, "retryDelay"),
    ({"name": "c", "type": "simulator", "config": "receiptDelay=1"}, "config"),
    ({"name": "c", "type": "simulator", "config": [1]}, "config"),
    ({"name": "c", "type": "simulator", "config": None}, "config"),
    ({"name": "c", "type": "simulator", "config": {"receiptDelay": -1}}, "config"),
    ({"name": "c", "type": "simulator", "config": {"failureRate": 2}}, "config"),
    ({"name": "c", "type": "simulator", "config": {"colour": "blue"}}, "config"),
    ({"name": "c", "type": "simulator", "config": {"receiptSecret": "short"}}, "config"),
    ({"name": "c", "type": "http"}, "config"),
    ({"name": "c", "type": "http", "config": {"url": "ftp://example.com/"}}, "config"),
    ({"name": "c", "type": "http", "config": {"url": GATEWAY, "headers": {"X-A": 1}}}, "config"),
    ({"name": "c", "type": "simulator", "enabled": "maybe"}, "enabled"),
])
def test_an_invalid_channel_gets_400_naming_the_field_and_creates_nothing(admin_api, data, field):
    response = post(admin_api, data)

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Channel.objects.exists()


def test_a_duplicate_name_is_a_409_conflict(admin_api, channel):
    response = post(admin_api, {"name": "sim", "type": "simulator"})

    assert (response.status_code, response.json()["code"]) == (409, "name_taken")
    assert Channel.objects.count() == 1


def test_renaming_onto_a_taken_name_is_a_409_and_changes_nothing(admin_api, channel, backup_channel):
    response = admin_api.patch("/api/v1/channels/backup", {"name": "sim"}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "name_taken")
    assert sorted(Channel.objects.values_list("name", flat=True)) == ["backup", "sim"]


@pytest.mark.parametrize("data, field", [
    ({"maxAttempts": 0}, "maxAttempts"), ({"maxAttempts": None}, "maxAttempts"),
    ({"retryDelay": -1}, "retryDelay"), ({"type": "unknown"}, "type"), ({"config": "x"}, "config"),
    # A simulator's config is no gateway's: switching type must bring a config that fits.
    ({"type": "http"}, "config"),
])
def test_an_invalid_update_gets_400_and_changes_nothing(admin_api, channel, data, field):
    response = patch(admin_api, "sim", data)

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert Channel.objects.get(name="sim").updated_at == channel.updated_at


@pytest.mark.parametrize("raw", ["not json", "[]", "null"])
def test_a_channel_body_that_is_not_a_json_object_gets_400(admin_api, raw):
    admin_api.raise_request_exception = False

    response = admin_api.post(BASE, raw, content_type="application/json")

    assert response.status_code == 400
    assert not Channel.objects.exists()


@pytest.mark.parametrize("config", [
    {"url": "http://"},
    {"url": GATEWAY, "headers": {"X-A": "one\r\nX-Injected: two"}},
    {"url": GATEWAY, "headers": {"X A": "v"}},
    {"url": GATEWAY, "headers": {"X-A": "€"}},
    {"url": GATEWAY, "headers": {"X-Token": " abc"}},  # clients refuse leading whitespace
    {"url": GATEWAY, "headers": {"Host": "elsewhere.example"}},
    {"url": GATEWAY, "headers": {"Transfer-Encoding": "chunked"}},
])
def test_an_http_gateway_config_that_cannot_work_is_refused(admin_api, config):
    admin_api.raise_request_exception = False

    response = post(admin_api, {"name": "gw", "type": "http", "config": config})

    assert response.status_code == 400
    assert "config" in response.json()["errors"]
    assert not Channel.objects.exists()


def test_a_nul_anywhere_in_a_config_is_refused_when_the_body_is_read(admin_api):
    admin_api.raise_request_exception = False

    response = post(admin_api, {"name": "gw", "type": "http", "config": {"url": GATEWAY + "\u0000"}})

    assert (response.status_code, response.json()["code"]) == (400, "parse_error")
    assert not Channel.objects.exists()


def test_updating_a_gateways_config_keeps_its_receipt_secret(admin_api):
    secret = post(admin_api, {"name": "gw", "type": "http", "config": {"url": GATEWAY}}).json()["config"][
        "receiptSecret"]

    response = patch(admin_api, "gw", {"config": {"url": "https://gateway2.example.com/send"}})

    assert response.status_code == 200
    assert Channel.objects.get(name="gw").config["receiptSecret"] == secret
