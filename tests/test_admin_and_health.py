"""Operator surfaces: /healthz, the OpenAPI schema and docs, and the Django admin (message
history read-only, channels and applications editable)."""

from datetime import timedelta

import pytest
from django.forms import MultiWidget
from django.utils import timezone

import config.health
from comms import lifecycle
from comms.lifecycle import Change
from comms.models import Application, Channel, Message
from comms.status import Status
from comms.submission import message_submit

PHONE = "+447700900123"


@pytest.fixture(autouse=True)
def _fast(published, settings):
    # Records publishes; a fast hasher keeps admin_user's creation cheap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def submit(application, channel, receiver=PHONE) -> Message:
    message, _ = message_submit(application=application, data={
        "channel": channel, "receiver": receiver, "content": {"text": "Hi"}})
    return message


def admin_form_data(response) -> dict:
    """What a browser would post back from an admin change page, unchanged."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(n): management[n].value() for n in management.fields})
        forms += inline.formset.forms
    for form in forms:
        for name, field in form.fields.items():
            bound = form[name]
            value = bound.value()  # already prepared for the widget, as the page renders it
            if isinstance(field.widget, MultiWidget):
                for i, part in enumerate(field.widget.decompress(value)):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else part
            elif isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
            else:
                data[bound.html_name] = "" if value is None else value
    return data


# --- health ------------------------------------------------------------------------------


def test_healthz_answers_200_when_the_database_and_broker_answer(client, db):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_answers_503_naming_the_broker_when_it_does_not_answer(client, db, monkeypatch):
    def unreachable():
        raise ConnectionRefusedError

    monkeypatch.setattr(config.health.app, "connection_for_write", unreachable)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok",
                               "broker": "error: ConnectionRefusedError"}


def test_healthz_answers_503_naming_the_database_when_it_does_not_answer(client, db, monkeypatch):
    class DownConnection:
        def cursor(self):
            raise OSError("database down")

    monkeypatch.setattr(config.health, "connection", DownConnection())

    response = client.get("/healthz")

    assert response.status_code == 503
    assert (response.json()["status"], response.json()["database"], response.json()["broker"]) == \
        ("unavailable", "error: OSError", "ok")


def test_healthz_needs_no_api_key_and_takes_no_side_effects(client, db):
    assert client.get("/healthz").status_code == 200
    assert not Message.objects.exists()


# --- schema and docs ---------------------------------------------------------------------


def test_the_openapi_schema_describes_the_api(client, db):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/messages", "/api/v1/messages/batch", "/api/v1/messages/{message_id}",
            "/api/v1/channels", "/api/v1/subscriptions"} <= set(schema["paths"])
    assert "202" in schema["paths"]["/api/v1/messages"]["post"]["responses"]


def test_the_interactive_docs_page_is_served(client, db):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"/api/schema/" in response.content


# --- admin: message history --------------------------------------------------------------


@pytest.fixture
def history(application, other_app_and_key, channel, backup_channel):
    """Three messages: queued on sim, delivered on sim (another app), queued on backup."""
    queued = submit(application, channel, "+1")
    delivered = submit(other_app_and_key[0], channel, "+2")
    lifecycle.transition([delivered.id], Change(Status.SENT, count_attempt=True))
    lifecycle.transition([delivered.id], Change(Status.DELIVERED))
    on_backup = submit(application, backup_channel, "+3")
    Message.objects.filter(id=on_backup.id).update(created_at=timezone.now() - timedelta(days=40))
    return {"queued": queued, "delivered": delivered, "on_backup": on_backup}


def changelist_ids(admin_client, **params) -> set[str]:
    response = admin_client.get("/admin/comms/message/", params)
    assert response.status_code == 200
    return {m.id for m in response.context["cl"].result_list}


def test_the_message_changelist_lists_every_message(admin_client, history):
    assert changelist_ids(admin_client) == {m.id for m in history.values()}


@pytest.mark.parametrize("param, key, expected", [
    ("status__exact", "DELIVERED", {"delivered"}),
    ("channel__id__exact", "backup", {"on_backup"}),
    ("application__id__exact", "globex", {"delivered"}),
])
def test_the_message_changelist_filters(admin_client, history, param, key, expected):
    value = {"backup": lambda: Channel.objects.get(name="backup").id,
             "globex": lambda: Application.objects.get(name="globex").id}.get(key, lambda: key)()

    assert changelist_ids(admin_client, **{param: value}) == {history[k].id for k in expected}


def test_the_message_changelist_filters_by_creation_date(admin_client, history):
    since = (timezone.now() - timedelta(days=7)).date().isoformat()

    assert changelist_ids(admin_client, created_at__gte=since) == \
        {history["queued"].id, history["delivered"].id}


def test_the_message_changelist_searches_by_exact_id_and_by_receiver(admin_client, history):
    assert changelist_ids(admin_client, q=history["delivered"].id) == {history["delivered"].id}
    assert changelist_ids(admin_client, q="+3") == {history["on_backup"].id}
    # `=id` is exact: a fragment of an id finds nothing.
    assert changelist_ids(admin_client, q=history["delivered"].id[:8]) == set()


def test_a_message_change_page_shows_its_events_read_only(admin_client, history):
    message = history["delivered"]

    response = admin_client.get(f"/admin/comms/message/{message.id}/change/")

    assert response.status_code == 200
    (events,) = response.context["inline_admin_formsets"]
    assert [f.instance.status_code for f in events.formset.forms] == ["QUEUED", "SENT", "DELIVERED"]
    # No editable event field: each form holds only its hidden keys.
    assert all(set(f.fields) <= {"id", "message"} for f in events.formset.forms)
    assert events.formset.extra == 0 and not events.formset.can_delete
    assert not events.has_add_permission
    assert b'name="events-0-status_code"' not in response.content


def test_the_message_status_cannot_be_changed_through_the_admin(admin_client, history):
    message = history["queued"]
    url = f"/admin/comms/message/{message.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "status": "DELIVERED", "attempts": "9", "receiver": "+999"})

    assert response.status_code == 403  # history is view-only: a post to it is refused
    message.refresh_from_db()
    assert (message.status, message.attempts, message.receiver) == ("QUEUED", 0, "+1")
    assert list(message.events.values_list("status_code", flat=True)) == ["QUEUED"]


def test_messages_cannot_be_added_or_deleted_in_the_admin(admin_client, history):
    message = history["queued"]

    assert admin_client.get("/admin/comms/message/add/").status_code == 403
    assert admin_client.post(f"/admin/comms/message/{message.id}/delete/", {"post": "yes"}).status_code == 403
    assert Message.objects.filter(id=message.id).exists()


def test_the_admin_needs_a_staff_login(client, history):
    response = client.get("/admin/comms/message/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- admin: channels and applications ----------------------------------------------------


def test_a_channel_is_editable_in_the_admin(admin_client, channel):
    url = f"/admin/comms/channel/{channel.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "max_attempts": "7", "retry_delay": "1.5", "enabled": ""})

    assert response.status_code == 302, response.context["adminform"].form.errors
    channel.refresh_from_db()
    assert (channel.max_attempts, channel.retry_delay, channel.enabled) == (7, 1.5, False)


def test_the_channel_changelist_filters_by_type(admin_client, channel):
    response = admin_client.get("/admin/comms/channel/", {"type": "simulator"})

    assert response.status_code == 200
    assert [c.name for c in response.context["cl"].result_list] == ["sim"]


@pytest.mark.parametrize("change", [{"type": "smtp"}, {"config": '{"colour": "blue"}'}])
def test_the_admin_refuses_a_channel_no_provider_can_use(admin_client, channel, change):
    url = f"/admin/comms/channel/{channel.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, **change})

    assert response.status_code == 200  # the form comes back with its errors
    channel.refresh_from_db()
    assert (channel.type, "colour" in channel.config) == ("simulator", False)


def test_an_application_is_editable_in_the_admin(admin_client, application):
    url = f"/admin/comms/application/{application.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "name": "acme-renamed", "is_admin": "on"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    application.refresh_from_db()
    assert (application.name, application.is_admin) == ("acme-renamed", True)


def test_a_key_revoked_in_the_admin_stops_authenticating(admin_client, app_and_key, api):
    application = app_and_key[0]
    url = f"/admin/comms/application/{application.id}/change/"
    data = admin_form_data(admin_client.get(url))
    now = timezone.localtime()

    response = admin_client.post(url, {**data, "keys-0-revoked_at_0": now.date().isoformat(),
                                       "keys-0-revoked_at_1": now.time().strftime("%H:%M:%S")})

    assert response.status_code == 302
    assert application.keys.get().revoked_at is not None
    assert api.get("/api/v1/messages").status_code == 401


def test_keys_cannot_be_added_in_the_admin(admin_client, application):
    response = admin_client.get(f"/admin/comms/application/{application.id}/change/")

    (keys,) = response.context["inline_admin_formsets"]
    assert not keys.has_add_permission
    assert [f.instance.prefix for f in keys.formset.forms] == [application.keys.get().prefix]
