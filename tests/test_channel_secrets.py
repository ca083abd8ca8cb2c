"""Write-only channel secrets: masked in every read (API, admin, command), kept when an update
omits them or sends back their mask, and shown in full once when Relay made them."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from comms.accounts import channel_upsert
from comms.models import Channel
from comms.providers import secrets
from tests.test_admin_and_health import admin_form_data

pytestmark = pytest.mark.django_db

SECRET = "s3cret-receipt-key-1a2b"
GATEWAY = {"url": "https://gateway.example.com/send", "receiptSecret": SECRET}


# --- the rules -----------------------------------------------------------------------------


def test_a_mask_shows_only_the_last_four_characters():
    assert (secrets.mask(SECRET), secrets.mask("short")) == ("••••1a2b", "••••")


def test_masking_covers_nested_secrets_and_leaves_the_rest():
    config = {"from": "a@example.com", "password": SECRET, "credentials": {"api_key": SECRET}}

    shown = secrets.masked(config, ["password", "credentials.*"])

    assert shown == {"from": "a@example.com", "password": "••••1a2b", "credentials": {"api_key": "••••1a2b"}}
    assert config["credentials"]["api_key"] == SECRET  # the stored config is untouched


@pytest.mark.parametrize("update", [{}, {"password": "••••1a2b"}, {"credentials": {"api_key": "••••1a2b"}}])
def test_a_secret_omitted_or_sent_back_masked_is_kept(update):
    previous = {"password": SECRET, "credentials": {"api_key": SECRET}}

    merged = secrets.kept({"from": "b@example.com", **update}, previous, ["password", "credentials.*"])

    assert (merged["password"], merged["credentials"]["api_key"]) == (SECRET, SECRET)


def test_a_new_secret_replaces_the_old():
    merged = secrets.kept({"password": "another-secret-value"}, {"password": SECRET}, ["password"])

    assert merged["password"] == "another-secret-value"


# --- the API ---------------------------------------------------------------------------------


def test_reading_a_channel_never_shows_its_secret(admin_api):
    channel_upsert(name="gw", type="http", config=GATEWAY)

    one = admin_api.get("/api/v1/channels/gw").json()
    listed = admin_api.get("/api/v1/channels").json()

    assert one["config"]["receiptSecret"] == "••••1a2b"
    assert SECRET not in json.dumps(listed)


def test_a_secret_relay_makes_is_shown_once_in_the_answer_that_made_it(admin_api):
    made = admin_api.post("/api/v1/channels", {"name": "gw", "type": "http", "config": {"url": GATEWAY["url"]}},
                          format="json").json()["config"]["receiptSecret"]

    assert made == Channel.objects.get(name="gw").config["receiptSecret"]
    assert admin_api.get("/api/v1/channels/gw").json()["config"]["receiptSecret"] == secrets.mask(made)


def test_a_secret_given_by_the_client_is_not_echoed_back(admin_api):
    response = admin_api.post("/api/v1/channels", {"name": "gw", "type": "http", "config": GATEWAY}, format="json")

    assert response.json()["config"]["receiptSecret"] == "••••1a2b"


def test_putting_back_what_was_read_keeps_the_secret(admin_api):
    channel_upsert(name="gw", type="http", config=GATEWAY)
    read = admin_api.get("/api/v1/channels/gw").json()

    response = admin_api.put("/api/v1/channels/gw", {**read, "config": {**read["config"], "url": GATEWAY["url"] + "2"}},
                             format="json")

    assert response.status_code == 200, response.content
    assert Channel.objects.get(name="gw").config == {**GATEWAY, "url": GATEWAY["url"] + "2"}


# --- the admin and the command ---------------------------------------------------------------


def test_the_admin_never_renders_a_secret_and_saving_unchanged_keeps_it(admin_client):
    channel, _ = channel_upsert(name="gw", type="http", config=GATEWAY)
    url = f"/admin/comms/channel/{channel.id}/change/"
    page = admin_client.get(url)

    response = admin_client.post(url, admin_form_data(page))

    assert SECRET not in page.content.decode()
    assert response.status_code == 302
    assert Channel.objects.get(id=channel.id).config == GATEWAY


def test_createchannel_masks_a_secret_it_was_given_and_shows_one_it_made():
    out = StringIO()
    call_command("createchannel", "gw", "--type", "http", "--config", json.dumps(GATEWAY), stdout=out)
    call_command("createchannel", "sim", "--type", "simulator", stdout=out)

    made = Channel.objects.get(name="sim").config["receiptSecret"]
    assert SECRET not in out.getvalue()
    assert "••••1a2b" in out.getvalue() and made in out.getvalue()


def test_the_admin_shows_a_secret_it_made_once_after_adding_the_channel(admin_client):
    form = {"name": "sim", "type": "simulator", "config": "{}", "max_attempts": "3", "retry_delay": "5",
            "enabled": "on"}

    response = admin_client.post("/admin/comms/channel/add/", form, follow=True)

    made = Channel.objects.get(name="sim").config["receiptSecret"]
    assert made in [str(m) for m in response.context["messages"]][0]
    assert made not in admin_client.get(f"/admin/comms/channel/{Channel.objects.get(name='sim').id}/change/") \
        .content.decode()
