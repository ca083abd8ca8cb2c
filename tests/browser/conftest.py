"""A real browser on the admin: Debian's Chromium (`apt install chromium`) driven by
Playwright. Playwright's own browser download is never used; without /usr/bin/chromium these
tests are skipped. Screenshots go to artifacts/screenshots (RELAY_ARTIFACTS_DIR overrides)."""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

CHROMIUM = "/usr/bin/chromium"
# The flags a sandboxed, offline machine needs: no sandbox as root, no calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREEN = {"width": 1366, "height": 768}  # the smallest laptop screen an operator uses

# Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
# between browser steps are still synchronous ones.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def artifacts_dir() -> Path:
    base = Path(os.environ.get("RELAY_ARTIFACTS_DIR", Path(settings.BASE_DIR) / "artifacts"))
    path = base / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def operator(transactional_db):
    """A superuser: what an operator logs in as."""
    return get_user_model().objects.create_superuser("operator", "ops@example.com", "not-a-real-password")


@pytest.fixture
def admin_page(chromium, live_server, operator):
    """A page logged in to the admin as `operator`, on a 1,366-px-wide screen; its base URL
    is the live server's, so `page.goto("/admin/")` works."""
    client = Client()
    client.force_login(operator)
    context = chromium.new_context(viewport=SCREEN, base_url=live_server.url)
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME,
                          "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                          "url": live_server.url}])
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot():
    """screenshot(page, "name") saves the whole page as artifacts/screenshots/name.png."""
    def take(page, name: str) -> Path:
        path = artifacts_dir() / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take


def page_width(page) -> int:
    """How wide the page's content is: over the viewport's width, the screen scrolls sideways."""
    return page.evaluate("() => document.documentElement.scrollWidth")
