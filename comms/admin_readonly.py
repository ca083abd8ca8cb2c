"""History in the admin is read-only: statuses change only through the lifecycle, and what
happened to a message or a webhook must never be edited or deleted by hand.

Without the change permission Django renders a change page as a view (no Save buttons) and
refuses a POST to it with 403; without the delete permission there is no Delete button,
no delete view and no "delete selected" action."""

from django.contrib import admin
from django.contrib.admin.options import ShowFacets

from .admin_paging import CappedPaginator


class ViewOnly:
    """No add, change or delete permission, for anyone: a page to look at."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class HistoryAdmin(ViewOnly, admin.ModelAdmin):
    paginator = CappedPaginator
    # Neither a count(*) of the whole table nor counts per filter choice on every page.
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_per_page = 50

    class Media:
        css = {"all": ["comms/admin.css"]}

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class HistoryInline(ViewOnly, admin.TabularInline):
    extra = 0
    can_delete = False

