"""Bootstrap commands: `createapp` prints a working key alone on its last line;
`createchannel` creates, then updates only what it is given."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from comms.models import ApiKey, Application, Channel

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# --- createapp ---------------------------------------------------------------------------


def test_createapp_prints_the_key_alone_on_the_last_line_and_the_key_authenticates():
    lines = run("createapp", "acme")

    key = lines[-1]
    assert key == key.strip() and " " not in key
    assert client_with(key).get("/api/v1/messages").status_code == 200
    assert not Application.objects.get(name="acme").is_admin


def test_createapp_stores_only_the_hash_of_the_key():
    key = run("createapp", "acme")[-1]

    stored = ApiKey.objects.get(application__name="acme")
    assert stored.key_hash == ApiKey.hash(key)
    assert key not in (stored.key_hash, stored.prefix)


def test_createapp_admin_makes_an_application_that_may_manage_channels():
    key = run("createapp", "ops", "--admin")[-1]

    assert Application.objects.get(name="ops").is_admin
    assert client_with(key).get("/api/v1/channels").status_code == 200


def test_a_plain_createapp_key_may_not_manage_channels():
    key = run("createapp", "acme")[-1]

    assert client_with(key).get("/api/v1/channels").status_code == 403


def test_each_createapp_prints_a_different_key():
    assert run("createapp", "one")[-1] != run("createapp", "two")[-1]


def test_createapp_with_a_taken_name_is_a_command_error_and_issues_no_key():
    run("createapp", "acme")

    with pytest.raises(CommandError, match="exists"):
        run("createapp", "acme")

    assert ApiKey.objects.count() == 1


# --- createchannel -----------------------------------------------------------------------


def test_createchannel_creates_a_channel_with_the_given_settings():
    lines = run("createchannel", "sms", "--type", "simulator", "--max-attempts", "5", "--retry-delay", "2.5",
                "--config", '{"receiptDelay": 0.5}')

    channel = Channel.objects.get(name="sms")
    assert (channel.type, channel.max_attempts, channel.retry_delay, channel.enabled) == \
        ("simulator", 5, 2.5, True)
    assert channel.config["receiptDelay"] == 0.5
    assert lines[-1].startswith("Created channel sms")


def test_createchannel_on_an_existing_channel_updates_only_what_is_given():
    run("createchannel", "sms", "--type", "simulator", "--max-attempts", "5", "--retry-delay", "2.5")

    lines = run("createchannel", "sms", "--max-attempts", "9")

    channel = Channel.objects.get(name="sms")
    assert (channel.max_attempts, channel.retry_delay, channel.type) == (9, 2.5, "simulator")
    assert Channel.objects.count() == 1
    assert lines[-1].startswith("Updated channel sms")


def test_createchannel_sets_and_removes_a_rate_limit():
    lines = run("createchannel", "sms", "--type", "simulator", "--rate-limit", "5")
    limited = Channel.objects.get(name="sms").rate_limit
    run("createchannel", "sms", "--rate-limit", "0")

    assert (limited, Channel.objects.get(name="sms").rate_limit) == (5.0, None)
    assert "rateLimit=5/s" in lines[-1]


def test_createchannel_can_disable_and_enable_a_channel():
    run("createchannel", "sms", "--type", "simulator")

    run("createchannel", "sms", "--disable")
    disabled = Channel.objects.get(name="sms").enabled
    run("createchannel", "sms", "--enable")

    assert (disabled, Channel.objects.get(name="sms").enabled) == (False, True)


def test_createchannel_replaces_the_config_when_given_one():
    run("createchannel", "gw", "--type", "http", "--config", '{"url": "https://a.example.com/"}')

    run("createchannel", "gw", "--config", '{"url": "https://b.example.com/"}')

    assert Channel.objects.get(name="gw").config["url"] == "https://b.example.com/"


@pytest.mark.parametrize("config", ["{not json", "'single'", ""])
def test_createchannel_with_config_that_is_not_json_is_a_command_error(config):
    with pytest.raises(CommandError, match="--config"):
        run("createchannel", "sms", "--type", "simulator", "--config", config)

    assert not Channel.objects.exists()


@pytest.mark.parametrize("config", ["[1, 2]", '"text"', '{"colour": "blue"}', '{"failureRate": 3}'])
def test_createchannel_with_config_that_does_not_fit_is_a_command_error(config):
    with pytest.raises(CommandError):
        run("createchannel", "sms", "--type", "simulator", "--config", config)

    assert not Channel.objects.exists()


@pytest.mark.parametrize("args", [
    ["createchannel", "new"],  # a new channel needs a type
    ["createchannel", "sms", "--type", "carrier-pigeon"],
    ["createchannel", "sms", "--type", "simulator", "--max-attempts", "0"],
    ["createchannel", "sms", "--type", "simulator", "--retry-delay", "-1"],
])
def test_createchannel_with_bad_settings_is_a_command_error(args):
    with pytest.raises(CommandError):
        run(*args)

    assert not Channel.objects.exists()


def test_a_failed_createchannel_update_leaves_the_channel_as_it_was():
    run("createchannel", "sms", "--type", "simulator", "--max-attempts", "5")

    with pytest.raises(CommandError):
        run("createchannel", "sms", "--max-attempts", "0")

    assert Channel.objects.get(name="sms").max_attempts == 5


def test_createchannel_with_a_name_that_is_not_a_slug_is_a_command_error():
    with pytest.raises(CommandError):
        run("createchannel", "my channel/1", "--type", "simulator")

    assert not Channel.objects.exists()


def test_createchannel_output_shows_the_resulting_config_as_json():
    lines = run("createchannel", "sms", "--type", "simulator", "--config", '{"failureRate": 0.1}')

    config = json.loads(lines[-1].split("config=", 1)[1])
    assert config == Channel.objects.get(name="sms").config


# --- runplatform: the demo key is not an admin key; loopback while DEBUG ---------------------


def key_on(lines: list[str], label: str) -> str:
    (line,) = [line for line in lines if line.startswith(label)]
    return line.removeprefix(label).strip()


def test_the_demo_key_cannot_manage_channels():
    demo_key = key_on(run("runplatform", "--no-serve"), "API key:")

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {demo_key}")

    assert client.get("/api/v1/messages").status_code == 200
    assert client.get("/api/v1/channels").status_code == 403
    assert not Application.objects.filter(is_admin=True).exists()


def test_an_admin_key_is_printed_only_when_asked_for():
    lines = run("runplatform", "--no-serve", "--admin-key")

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_on(lines, 'Admin API key:')}")

    assert client.get("/api/v1/channels").status_code == 200
    assert Application.objects.get(is_admin=True).name == "admin"


@pytest.mark.parametrize(("debug", "given", "expected"), [
    (True, None, "127.0.0.1"), (False, None, "0.0.0.0"), (True, "0.0.0.0", "0.0.0.0")])
def test_web_listens_on_loopback_while_debug_is_on_unless_told(settings, debug, given, expected):
    from comms.management.commands.runplatform import bind_address

    settings.DEBUG = debug

    assert bind_address(given) == expected
