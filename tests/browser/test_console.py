from django.utils import timezone

from tests.browser.conftest import SCREEN, page_width
from tests.test_console import make_history


def test_an_operator_opens_the_console_from_the_admin_index_and_reads_it(admin_page, screenshot):
    make_history(timezone.now())
    admin_page.goto("/admin/")
    admin_page.get_by_role("link", name="Health console").click()
    admin_page.wait_for_url("**/admin/console/")

    for heading in ("Backlog", "Events by status", "Channels, last 24 hours",
                    "Messages per minute, last 24 hours (UTC)", "Webhook subscriptions"):
        assert admin_page.get_by_role("heading", name=heading).is_visible(), heading
    chart = admin_page.locator("svg.chart")
    assert chart.is_visible() and chart.locator("polyline").count() == 3
    assert chart.bounding_box()["width"] > 900

    row = admin_page.locator('#status-table tr[data-code="ACCEPTED"] td')
    assert row.all_inner_texts() == ["ACCEPTED", "8", "11"]
    sms = admin_page.locator('#channel-table tr[data-channel="sms"] td').all_inner_texts()
    assert sms[:5] == ["sms", "8", "4", "2", "66.7 %"] and sms[5].endswith(" s")
    subscriptions = admin_page.locator("#subscription-table tbody tr")
    assert subscriptions.count() == 3
    assert admin_page.locator("#subscription-table .state").all_inner_texts() == ["disabled", "failing", "healthy"]
    assert admin_page.get_by_text("The endpoint answered 410 Gone").is_visible()
    queued = admin_page.locator('[data-backlog="QUEUED due"]')
    assert queued.locator(".value").inner_text() == "1" and "2 min ago" in queued.inner_text()
    assert admin_page.locator('[data-backlog="Webhook deliveries due"] .value').inner_text() == "1"

    assert screenshot(admin_page, "console").exists()
    assert page_width(admin_page) <= SCREEN["width"]
