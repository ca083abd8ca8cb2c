"""The admin's history pages as an operator reads them: newest first, times to the second
(events to the millisecond), error codes as codes, the fallback chain linked both ways,
history strictly read-only, counts capped on big tables, and a subscription's health,
recent deliveries and headers at a glance."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.forms import ValidationError

from comms.models import Message, MessageEvent, Receipt
from deliveries.admin_headers import HeadersField, parse_header_lines
from deliveries.models import Delivery, DeliveryAttempt, Subscription
from tests.test_admin_and_health import admin_form_data

T0 = datetime(2026, 3, 14, 9, 26, 53, 589_000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_message(application, channel, *, minutes=0, status="DELIVERED", **fields) -> Message:
    fields.setdefault("receiver", "+447700900001")
    message = Message.objects.create(application=application, channel=channel, status=status,
                                     content={"text": "Hi"}, **fields)
    Message.objects.filter(pk=message.pk).update(created_at=T0 + timedelta(minutes=minutes))
    message.refresh_from_db()
    return message


def make_event(message, sequence, status_code, *, ms=0, **fields) -> MessageEvent:
    return MessageEvent.objects.create(message=message, sequence=sequence, status_code=status_code,
                                       created_at=T0 + timedelta(milliseconds=ms), **fields)


@pytest.fixture
def chain(application, channel, backup_channel):
    """sms failed (rate limited) and fell back to backup, which was delivered."""
    second = make_message(application, backup_channel, minutes=1, receiver="+447700900002")
    first = make_message(application, channel, status="DELIVERY_FAILED", fallback_to=second,
                         provider_ref="SM-first")
    make_event(first, 1, "QUEUED", ms=0)
    make_event(first, 2, "DELIVERY_FAILED", ms=412, error_code="RATE_LIMITED",
               error_message="Too many requests: 1 per second", fallback_to=second.id)
    make_event(second, 1, "DELIVERED", ms=60_000)
    return first, second


@pytest.fixture
def subscription(application):
    return Subscription.objects.create(application=application, url="https://hooks.example.com/relay",
                                       secret="whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
                                       headers={"Authorization": "Bearer abc", "X-Team": "ops"})


@pytest.fixture
def delivery(subscription, chain):
    event = chain[0].events.get(sequence=2)
    delivery = Delivery.objects.create(subscription=subscription, event=event, status="failed", attempts=2,
                                       last_status_code=503, last_error="HTTP 503", created_at=T0, updated_at=T0)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, attempted_at=T0, status_code=503)
    return delivery


@pytest.fixture
def history_rows(chain, delivery):
    receipt = Receipt.objects.create(channel=chain[0].channel, message=chain[0], payload={"id": "SM-first"},
                                     outcome="applied")
    return {"message": chain[0], "messageevent": chain[0].events.first(), "receipt": receipt,
            "delivery": delivery, "deliveryattempt": delivery.attempt_log.get()}


HISTORY = ["comms/message", "comms/messageevent", "comms/receipt", "deliveries/delivery",
           "deliveries/deliveryattempt"]


# --- read-only ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", HISTORY)
def test_a_history_page_has_no_save_and_no_delete(admin_client, history_rows, page):
    row = history_rows[page.split("/")[1]]

    response = admin_client.get(f"/admin/{page}/{row.pk}/change/")

    assert response.status_code == 200
    assert b'name="_save"' not in response.content and b'name="_continue"' not in response.content
    assert b"deletelink" not in response.content


@pytest.mark.parametrize("page", HISTORY)
def test_a_post_to_a_history_page_is_refused(admin_client, history_rows, page):
    row = history_rows[page.split("/")[1]]

    assert admin_client.post(f"/admin/{page}/{row.pk}/change/", {}).status_code == 403
    assert admin_client.post(f"/admin/{page}/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert type(row).objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("page", HISTORY)
def test_a_history_list_offers_no_bulk_delete(admin_client, history_rows, page):
    response = admin_client.get(f"/admin/{page}/")

    assert response.status_code == 200
    assert b"delete_selected" not in response.content


def test_deliveries_can_still_be_retried_from_their_list(admin_client, history_rows, published):
    response = admin_client.get("/admin/deliveries/delivery/")

    assert b'value="retry_now"' in response.content


# --- the message list and page -----------------------------------------------------------


def test_messages_are_listed_newest_first(admin_client, application, channel):
    made = [make_message(application, channel, minutes=m) for m in (5, 0, 10)]

    response = admin_client.get("/admin/comms/message/")

    assert [m.id for m in response.context["cl"].result_list] == [made[2].id, made[0].id, made[1].id]


def test_times_in_the_admin_are_to_the_second(admin_client, application, channel):
    make_message(application, channel)

    response = admin_client.get("/admin/comms/message/")

    assert b"2026-03-14 09:26:53" in response.content


def test_a_messages_events_are_shown_to_the_millisecond(admin_client, chain):
    response = admin_client.get(f"/admin/comms/message/{chain[0].id}/change/")

    assert b"2026-03-14 09:26:53.589" in response.content
    assert b"2026-03-14 09:26:54.001" in response.content  # 412 ms later


def test_an_error_is_shown_as_its_code_with_its_message(admin_client, chain):
    response = admin_client.get(f"/admin/comms/message/{chain[0].id}/change/")

    assert b"<code>RATE_LIMITED</code> Too many requests: 1 per second" in response.content
    assert b"The channel is rate limiting us" not in response.content  # the choice's label


def test_the_fallback_chain_is_linked_both_ways(admin_client, chain):
    first, second = chain

    first_page = admin_client.get(f"/admin/comms/message/{first.id}/change/").content.decode()
    second_page = admin_client.get(f"/admin/comms/message/{second.id}/change/").content.decode()

    assert f'href="/admin/comms/message/{second.id}/change/"' in first_page  # its successor
    assert f'href="/admin/comms/message/{first.id}/change/"' in second_page  # its predecessor


@pytest.mark.parametrize("term, found", [("SM-first", [0]), ("+447700900002", [1]), ("+4477009", [])])
def test_messages_are_found_by_exact_provider_reference_or_receiver(admin_client, chain, term, found):
    response = admin_client.get("/admin/comms/message/", {"q": term})

    assert [m.id for m in response.context["cl"].result_list] == [chain[i].id for i in found]


def test_events_are_filtered_by_their_error_code_as_the_api_writes_it(admin_client, chain):
    response = admin_client.get("/admin/comms/messageevent/", {"error_code__exact": "RATE_LIMITED"})

    assert [e.status_code for e in response.context["cl"].result_list] == ["DELIVERY_FAILED"]
    assert b'href="?error_code__exact=RATE_LIMITED"' in response.content
    assert b"The channel is rate limiting us" not in response.content  # the choice's label


def test_an_event_page_shows_its_error_in_full(admin_client, chain):
    event = chain[0].events.get(sequence=2)

    response = admin_client.get(f"/admin/comms/messageevent/{event.pk}/change/")

    assert b"<code>RATE_LIMITED</code> Too many requests: 1 per second" in response.content


# --- counting big tables -----------------------------------------------------------------


def test_a_count_over_the_cap_reads_as_the_cap_and_a_plus(admin_client, application, channel, settings):
    settings.RELAY_ADMIN_COUNT_CAP = 3
    for minute in range(5):
        make_message(application, channel, minutes=minute)

    response = admin_client.get("/admin/comms/message/")

    assert response.context["cl"].result_count == 3
    assert b"3+ messages" in response.content


def test_a_search_counts_its_results_up_to_the_cap(admin_client, application, channel, settings):
    settings.RELAY_ADMIN_COUNT_CAP = 3
    for minute in range(5):
        make_message(application, channel, minutes=minute, receiver="+447700900099")

    response = admin_client.get("/admin/comms/message/", {"q": "+447700900099"})

    assert b"3+ results" in response.content


def test_a_count_under_the_cap_is_exact(admin_client, application, channel):
    for minute in range(2):
        make_message(application, channel, minutes=minute)

    response = admin_client.get("/admin/comms/message/")

    assert b"2 messages" in response.content and b"2+" not in response.content


# --- subscriptions -----------------------------------------------------------------------


def test_headers_are_written_one_name_and_value_a_line():
    field = HeadersField()

    assert field.prepare_value({"X-Team": "ops", "Accept-Language": "en"}) == "Accept-Language: en\nX-Team: ops"
    assert field.clean("X-Team: ops\n\n  Accept-Language:en  \n") == {"X-Team": "ops", "Accept-Language": "en"}
    assert field.clean("") == {}


def test_credentials_in_headers_are_shown_masked_and_kept_when_left_masked():
    field = HeadersField()
    field.previous = {"Authorization": "Bearer abcdefghijkl", "X-Api-Key": "k-123456789"}

    shown = field.prepare_value(field.previous)

    assert shown == "Authorization: Bearer…\nX-Api-Key: k-1…"
    assert field.clean(shown + "\nX-Team: ops") == {**field.previous, "X-Team": "ops"}
    assert field.clean("Authorization: Bearer new-token")["Authorization"] == "Bearer new-token"


@pytest.mark.parametrize("text, problem", [
    ("X-Team ops", 'Line 1: write each header as "Name: value".'),
    ("X-Team: ops\nBad Name: x", "Line 2: 'Bad Name' is not a valid HTTP header name."),
    ("Host: example.com", "Line 1: 'Host' is set by Relay and cannot be configured."),
    ("X-Team: a\nx-team: b", "Line 2: 'x-team' is given twice."),
    ("X-Long: " + "a" * 1001, "Line 1: the value of 'X-Long' is longer than 1000 characters."),
])
def test_a_header_line_http_cannot_carry_is_refused_naming_its_line(text, problem):
    with pytest.raises(ValidationError) as caught:
        parse_header_lines(text)

    assert caught.value.messages == [problem]


def test_the_subscription_page_shows_headers_as_lines_and_the_secret_masked(admin_client, subscription):
    page = admin_client.get(f"/admin/deliveries/subscription/{subscription.id}/change/").content.decode()

    assert "Authorization: Bea…\nX-Team: ops</textarea>" in page
    assert "Bearer abc" not in page
    assert subscription.secret[:10] + "…" in page and subscription.secret not in page


def test_headers_edited_as_lines_are_saved_as_a_dict(admin_client, subscription):
    url = f"/admin/deliveries/subscription/{subscription.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "headers": "X-Team: platform\nX-Env: prod"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    subscription.refresh_from_db()
    assert subscription.headers == {"X-Team": "platform", "X-Env": "prod"}


def test_a_subscription_saved_unchanged_keeps_its_masked_credentials(admin_client, subscription):
    url = f"/admin/deliveries/subscription/{subscription.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "description": "ops hook"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    subscription.refresh_from_db()
    assert subscription.headers == {"Authorization": "Bearer abc", "X-Team": "ops"}
    assert subscription.description == "ops hook"


def test_a_bad_header_line_comes_back_with_its_error_and_saves_nothing(admin_client, subscription):
    url = f"/admin/deliveries/subscription/{subscription.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "headers": "X-Team ops"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["headers"] == ['Line 1: write each header as "Name: value".']
    subscription.refresh_from_db()
    assert subscription.headers == {"Authorization": "Bearer abc", "X-Team": "ops"}


def test_the_subscription_page_lists_its_recent_deliveries_linked(admin_client, delivery):
    page = admin_client.get(f"/admin/deliveries/subscription/{delivery.subscription_id}/change/").content.decode()

    assert f'href="/admin/deliveries/delivery/{delivery.id}/change/"' in page
    assert "<td>failed</td><td>2</td><td>503</td>" in page  # status, attempts, last status code


def test_the_subscription_page_links_to_all_its_deliveries(admin_client, delivery, application):
    other = Subscription.objects.create(application=application, url="https://other.example.com/", secret="x")
    Delivery.objects.create(subscription=other, event=delivery.event, created_at=T0, updated_at=T0)
    page = admin_client.get(f"/admin/deliveries/subscription/{delivery.subscription_id}/change/").content.decode()
    url = re.search(r'href="(/admin/deliveries/delivery/\?subscription__id__exact=[0-9a-f]+)"', page).group(1)

    response = admin_client.get(url)

    assert [d.id for d in response.context["cl"].result_list] == [delivery.id]


def test_the_subscription_page_lists_at_most_the_latest_20_deliveries(admin_client, subscription, chain):
    for n in range(22):
        event = make_event(chain[1], 10 + n, "DELIVERED", ms=n)
        Delivery.objects.create(subscription=subscription, event=event, status="succeeded",
                                created_at=T0 + timedelta(seconds=n), updated_at=T0)

    page = admin_client.get(f"/admin/deliveries/subscription/{subscription.id}/change/").content.decode()

    assert len(re.findall(r'href="/admin/deliveries/delivery/[0-9a-f]{32}/change/"', page)) == 20
    assert "2026-03-14 09:27:14" in page and "2026-03-14 09:26:55" in page  # seconds 21 .. 2
    assert "2026-03-14 09:26:54" not in page and "2026-03-14 09:26:53" not in page


def test_the_subscription_page_shows_why_it_is_failing(admin_client, subscription):
    Subscription.objects.filter(pk=subscription.pk).update(failing_since=T0)

    page = admin_client.get(f"/admin/deliveries/subscription/{subscription.id}/change/").content.decode()

    assert "relay-state-failing" in page and "failing since 2026-03-14 09:26:53" in page


def test_the_subscription_page_shows_why_it_was_disabled(admin_client, subscription):
    Subscription.objects.filter(pk=subscription.pk).update(active=False, disabled_at=T0,
                                                           disabled_reason="HTTP 410 Gone")

    page = admin_client.get(f"/admin/deliveries/subscription/{subscription.id}/change/").content.decode()

    assert "disabled 2026-03-14 09:26:53: HTTP 410 Gone" in page


# --- applications and channels -----------------------------------------------------------


def test_an_applications_rate_and_quota_are_edited_in_the_admin(admin_client, application):
    url = f"/admin/comms/application/{application.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "api_requests_per_minute": "120", "daily_message_quota": "5000"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    application.refresh_from_db()
    assert (application.api_requests_per_minute, application.daily_message_quota) == (120, 5000)


def test_a_channels_rate_limit_is_edited_and_listed_in_the_admin(admin_client, channel):
    url = f"/admin/comms/channel/{channel.id}/change/"
    data = admin_form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "rate_limit": "2.5"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    channel.refresh_from_db()
    assert channel.rate_limit == 2.5
    assert "rate_limit" in admin_client.get("/admin/comms/channel/").context["cl"].list_display
