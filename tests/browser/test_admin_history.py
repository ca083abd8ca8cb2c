"""What an operator sees of the history in a real browser on a 1,366-px screen: the
message list newest first, a message's history with its events to the millisecond, its
error and its fallback chain, a subscription's health and recent deliveries; every list
fits the screen without scrolling sideways."""

from datetime import timedelta

import pytest

from comms.models import Receipt
from deliveries.models import Delivery, DeliveryAttempt, Subscription
from tests.browser.conftest import SCREEN, page_width
from tests.test_admin_history import T0, make_event, make_message

LONG_ERROR = ("Too many requests: the provider accepts 1 message per second on this long code; "
              "retry after 1 s (Twilio error 20429, see https://www.twilio.com/docs/errors/20429)")


@pytest.fixture
def story(application, channel, backup_channel):
    """A busy history: a long-winded receiver, a rate-limited message that fell back to
    another channel, a subscription with failing deliveries to a long URL."""
    for n in range(30):
        make_message(application, channel, minutes=-n - 1,
                     receiver=f"someone.with.a.rather.long.address.{n}@subsidiary.example.co.uk")
    second = make_message(application, backup_channel, minutes=2, receiver="+447700900002")
    first = make_message(application, channel, minutes=1, status="DELIVERY_FAILED", fallback_to=second,
                         provider_ref="SM3f9c0a0c4e3b4f6e8d2a1b0c9d8e7f6a", receiver="+447700900001")
    make_event(first, 1, "QUEUED", ms=60_000)
    make_event(first, 2, "DELIVERY_FAILED", ms=60_412, error_code="RATE_LIMITED", error_message=LONG_ERROR,
               raw_code="20429", fallback_to=second.id)
    make_event(second, 1, "QUEUED", ms=60_413)
    make_event(second, 2, "DELIVERED", ms=121_007)
    subscription = Subscription.objects.create(
        application=application, secret="whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", failing_since=T0,
        url="https://hooks.example.com/relay/webhooks/incoming/very/long/path/that/goes/on/and/on?token=abc",
        headers={"Authorization": "Bearer abc", "X-Team": "ops"})
    for n, event in enumerate(first.events.all()):
        delivery = Delivery.objects.create(subscription=subscription, event=event, status="pending", attempts=3,
                                           last_status_code=503, last_error="HTTP 503 Service Unavailable",
                                           due_at=T0 + timedelta(minutes=5), created_at=T0 + timedelta(seconds=n),
                                           updated_at=T0)
        DeliveryAttempt.objects.create(delivery=delivery, number=1, attempted_at=T0, status_code=503,
                                       duration_ms=87, error_kind="http_status", error_detail=LONG_ERROR)
    Receipt.objects.create(channel=channel, message=first, payload={"MessageSid": first.provider_ref},
                           outcome="applied", detail=LONG_ERROR)
    return {"first": first, "second": second, "subscription": subscription}


def fits(page) -> bool:
    """Neither the page nor the list scrolls sideways (the admin puts a list that is too
    wide in a box of its own that scrolls, so the page alone can look fine)."""
    results = page.evaluate("() => { const r = document.querySelector('#changelist-form .results');"
                            " return r ? r.scrollWidth <= r.clientWidth : true; }")
    return results and page_width(page) <= SCREEN["width"]


def test_the_message_list_is_newest_first_and_fits_the_screen(admin_page, story, screenshot):
    admin_page.goto("/admin/comms/message/")
    screenshot(admin_page, "messages-list")

    ids = admin_page.locator("#result_list tbody th a span")
    assert ids.first.get_attribute("title") == story["second"].id  # the whole id on hover
    assert ids.nth(1).get_attribute("title") == story["first"].id
    assert ids.first.inner_text() == story["second"].id[:8] + "…"
    assert fits(admin_page)


@pytest.mark.parametrize("path", ["/admin/comms/messageevent/", "/admin/deliveries/delivery/",
                                  "/admin/deliveries/deliveryattempt/", "/admin/deliveries/subscription/",
                                  "/admin/comms/receipt/"])
def test_every_history_list_fits_the_screen(admin_page, story, path):
    admin_page.goto(path)

    assert admin_page.locator("#result_list tbody tr").count() >= 1
    assert fits(admin_page)


def test_the_deliveries_list_fits_the_screen(admin_page, story, screenshot):
    admin_page.goto("/admin/deliveries/delivery/")
    screenshot(admin_page, "deliveries-list")

    assert admin_page.locator("#result_list tbody tr").count() == 2
    assert admin_page.get_by_role("option", name="Retry the selected deliveries now").count() == 1
    assert fits(admin_page)


def test_a_messages_history_page_tells_what_happened(admin_page, story, screenshot):
    first, second = story["first"], story["second"]

    admin_page.goto(f"/admin/comms/message/{first.id}/change/")
    screenshot(admin_page, "message-history")

    events = admin_page.locator(".inline-group tbody tr.has_original")
    assert events.count() == 2
    assert events.nth(1).locator("td.field-at").inner_text() == "2026-03-14 09:27:54.001"
    assert events.nth(1).locator("td.field-error code").inner_text() == "RATE_LIMITED"
    assert LONG_ERROR in events.nth(1).locator("td.field-error").inner_text()
    assert admin_page.get_by_role("button", name="Save").count() == 0
    assert admin_page.get_by_role("link", name="Delete").count() == 0
    assert page_width(admin_page) <= SCREEN["width"]

    admin_page.locator(".field-successor a").click()  # along the fallback chain, and back
    assert admin_page.url.endswith(f"/admin/comms/message/{second.id}/change/")
    admin_page.locator(".field-predecessor a").click()
    assert admin_page.url.endswith(f"/admin/comms/message/{first.id}/change/")


def test_the_subscription_page_shows_its_health_and_recent_deliveries(admin_page, story, screenshot):
    subscription = story["subscription"]

    admin_page.goto(f"/admin/deliveries/subscription/{subscription.id}/change/")
    screenshot(admin_page, "subscription")

    assert admin_page.evaluate("() => { const t = document.querySelector('table.relay-recent');"
                               " return t.getBoundingClientRect().right <= "
                               " t.closest('fieldset').getBoundingClientRect().right; }")  # not cut off
    assert admin_page.locator(".relay-state").inner_text() == "failing"
    assert "failing since 2026-03-14 09:26:53" in admin_page.locator(".field-health").inner_text()
    rows = admin_page.locator("table.relay-recent tbody tr")
    assert rows.count() == 2
    cells = rows.first.locator("td")
    assert [cells.nth(i).inner_text() for i in (2, 3, 4, 5)] == ["DELIVERY_FAILED", "pending", "3", "503"]
    assert admin_page.locator("textarea[name=headers]").input_value() == "Authorization: Bea…\nX-Team: ops"
    assert subscription.secret not in admin_page.content()
    assert page_width(admin_page) <= SCREEN["width"]

    rows.first.locator("td").nth(1).locator("a").click()
    assert "/admin/deliveries/delivery/" in admin_page.url
