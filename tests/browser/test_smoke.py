from tests.browser.conftest import SCREEN, page_width


def test_the_admin_index_opens_logged_in_and_fits_the_screen(admin_page, screenshot):
    admin_page.goto("/admin/")
    assert admin_page.get_by_role("link", name="Messages").first.is_visible()
    assert page_width(admin_page) <= SCREEN["width"]
    assert screenshot(admin_page, "admin-index").exists()
