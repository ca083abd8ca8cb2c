"""The message history: newest first, read-only, with each message's events to the
millisecond and its fallback chain linked both ways."""

import json

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from .admin_display import SHORT_ID, clipped, link
from .admin_events import EventColumns
from .admin_filters import code_filter
from .admin_readonly import HistoryAdmin, HistoryInline
from .ids import new_id
from .models import Message, MessageEvent
from .status import Status

ID_LENGTH = len(new_id())


def search_exactly(queryset, term: str):
    """An id, a receiver or a provider reference, each matched exactly. Django's "=" lookups
    are case-insensitive (UPPER(id) = UPPER(...)), which no index serves; a term shaped like
    an id is looked up by primary key alone."""
    term = term.strip()
    if not term:
        return queryset
    if len(term) == ID_LENGTH and all(c in "0123456789abcdefABCDEF" for c in term):
        return queryset.filter(id=term.lower())
    return queryset.filter(Q(receiver=term) | Q(provider_ref=term))


def pretty_json(value) -> str:
    return format_html('<pre class="relay-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False))


class MessageEventInline(EventColumns, HistoryInline):
    model = MessageEvent
    fields = ["at", "seq", "code", "error", "raw_code", "attempt", "fallback", "link_shown"]
    readonly_fields = fields
    ordering = ["sequence"]
    verbose_name_plural = "events"

    @admin.display(description="link")
    def link_shown(self, event):
        return clipped(event.link, 24) or "-"


@admin.register(Message)
class MessageAdmin(HistoryAdmin):
    """History, read-only: statuses change only through the lifecycle."""

    list_display = ["short_id", "created_at", "status_code", "channel_shown", "application_shown",
                    "receiver_shown", "attempts"]
    # Sorting by anything but the creation time would sort the whole table for each page.
    sortable_by = ["created_at"]
    ordering = ["-created_at"]
    list_filter = [code_filter("status", Status, "status"), "channel", "application", "created_at"]
    search_fields = ["=id", "=receiver", "=provider_ref"]
    search_help_text = "A message id, a receiver or a provider reference, exactly."
    list_select_related = ["channel", "application"]
    inlines = [MessageEventInline]
    fieldsets = [
        (None, {"fields": ["id", "status_code", "application", "channel", "sender", "receiver", "attempts",
                           "provider_ref", "idempotency_key"]}),
        ("Fallback chain", {"fields": ["predecessor", "successor"]}),
        ("Times", {"fields": ["created_at", "updated_at", "send_at", "expires_at", "due_at", "leased_until"]}),
        ("Content", {"fields": ["content_shown", "context_shown"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    def get_search_results(self, request, queryset, search_term):
        return search_exactly(queryset, search_term), False

    @admin.display(description="id")
    def short_id(self, message):
        return clipped(message.id, SHORT_ID)

    @admin.display(description="status")
    def status_code(self, message):
        return message.status  # as the API and the webhooks write it

    @admin.display(description="channel")
    def channel_shown(self, message):
        return clipped(message.channel.name, 12)

    @admin.display(description="application")
    def application_shown(self, message):
        return clipped(message.application.name, 12)

    @admin.display(description="receiver")
    def receiver_shown(self, message):
        return clipped(message.receiver, 20)

    @admin.display(description="fallback of (predecessor)")
    def predecessor(self, message):
        return self._chain_link(Message.objects.filter(fallback_to=message).first())

    @admin.display(description="falls back to (successor)")
    def successor(self, message):
        return self._chain_link(message.fallback_to)

    @staticmethod
    def _chain_link(other: Message | None) -> str:
        if other is None:
            return "-"
        return link(other, f"{other.id} · {other.channel} · {other.status}", width=80)

    @admin.display(description="content")
    def content_shown(self, message):
        return pretty_json(message.content)

    @admin.display(description="context")
    def context_shown(self, message):
        return pretty_json(message.context)
