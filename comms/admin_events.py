"""Events and receipts, listed on their own, newest first and read-only: what the webhooks
carried, and what the providers told us."""

from django.contrib import admin

from .admin_display import SHORT_ID, clipped, error_text, link_to, to_the_millisecond
from .admin_filters import code_filter
from .admin_readonly import HistoryAdmin
from .models import Message, MessageEvent, Receipt
from .status import ErrorCode, EventCode


def search_by_message(queryset, term: str):
    """The message's id, exactly: the indexes lead with message_id."""
    term = term.strip().lower()
    return queryset.filter(message_id=term) if term else queryset


class EventColumns:
    """An event's columns as the message page's timeline and the events list both show them:
    to the millisecond, the code as the webhooks carry it, the error as its code and message."""

    error_width: int | None = None  # characters of the error shown; None: all of it

    @admin.display(description="at", ordering="created_at")
    def at(self, event):
        return to_the_millisecond(event.created_at)

    @admin.display(description="#")
    def seq(self, event):
        return event.sequence

    @admin.display(description="status code")
    def code(self, event):
        return event.status_code

    @admin.display(description="error")
    def error(self, event):
        return error_text(event.error_code, event.error_message, width=self.error_width)

    @admin.display(description="fallback to")
    def fallback(self, event):
        return link_to(Message, event.fallback_to or None, width=SHORT_ID)


@admin.register(MessageEvent)
class MessageEventAdmin(EventColumns, HistoryAdmin):
    list_display = ["at", "message_shown", "seq", "code", "error", "attempt"]
    list_display_links = ["at"]
    sortable_by = ["at"]
    ordering = ["-created_at"]
    list_filter = [code_filter("status_code", EventCode, "status code"), code_filter("error_code", ErrorCode, "error code"),
                   "created_at"]
    search_fields = ["=message__id"]
    search_help_text = "A message id, exactly."
    fields = ["at", "message_shown", "sequence", "code", "error_in_full", "raw_code", "attempt",
              "fallback", "link", "env"]
    readonly_fields = fields
    error_width = 24

    def get_search_results(self, request, queryset, search_term):
        return search_by_message(queryset, search_term), False

    @admin.display(description="message")
    def message_shown(self, event):
        return link_to(Message, event.message_id, width=SHORT_ID)

    @admin.display(description="error")
    def error_in_full(self, event):
        return error_text(event.error_code, event.error_message)


@admin.register(Receipt)
class ReceiptAdmin(HistoryAdmin):
    list_display = ["received_at", "channel_shown", "message_shown", "outcome", "detail_shown"]
    sortable_by = ["received_at"]
    ordering = ["-received_at"]
    list_filter = ["outcome", "channel", "received_at"]
    search_fields = ["=message__id"]
    search_help_text = "A message id, exactly."
    # As for deliveries: the channels of the page's rows, fetched after the page is cut.
    list_select_related = False
    fields = ["received_at", "channel", "message_shown", "outcome", "detail", "payload"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("channel")

    def get_search_results(self, request, queryset, search_term):
        return search_by_message(queryset, search_term), False

    @admin.display(description="channel")
    def channel_shown(self, receipt):
        return clipped(receipt.channel.name, 16)

    @admin.display(description="message")
    def message_shown(self, receipt):
        return link_to(Message, receipt.message_id, width=SHORT_ID)

    @admin.display(description="detail")
    def detail_shown(self, receipt):
        return clipped(receipt.detail, 50)
