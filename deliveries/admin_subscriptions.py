"""The subscription page: what an operator edits (URL, filters, headers), its health at a
glance, and its latest deliveries, each linked."""

from django.urls import reverse
from django.utils.html import format_html, format_html_join

from comms.admin_display import SHORT_ID, clipped, link_to, to_the_second
from comms.models import Message

from .health import State, state_of
from .models import Delivery, Subscription

RECENT = 20


def recent_deliveries(subscription_id: str, n: int = RECENT) -> list[Delivery]:
    """The latest `n`, newest first. One query per status, because the index that serves a
    subscription's deliveries by time leads with (subscription, status): each reads only
    its first `n` entries, where one query over all statuses would sort all of them."""
    rows = []
    for status in Delivery.Status:
        rows += Delivery.objects.filter(subscription_id=subscription_id, status=status) \
            .select_related("event").order_by("-created_at")[:n]
    return sorted(rows, key=lambda d: d.created_at, reverse=True)[:n]


def health_summary(subscription: Subscription, width: int | None = None) -> str:
    """Its state as a badge, and since when or why; the words clipped to `width` in lists."""
    state = state_of(subscription)
    words, when = {
        State.HEALTHY: ("", None),
        State.FAILING: ("failing since", subscription.failing_since),
        State.BACKING_OFF: ("unreachable; next probe at", subscription.next_probe_at),
        State.INACTIVE: ("disabled" if subscription.disabled_at else "switched off", subscription.disabled_at),
    }[state]
    detail = f"{words} {to_the_second(when)}" if when else words
    if state is State.INACTIVE and subscription.disabled_reason:
        detail += f": {subscription.disabled_reason}"
    return format_html('<span class="relay-state relay-state-{}">{}</span> {}', state.value, state.value,
                       clipped(detail, width) if width else detail)


def deliveries_table(subscription: Subscription) -> str:
    rows = recent_deliveries(subscription.id)
    if not rows:
        return "No deliveries yet."
    body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                "<td>{}</td></tr>", (
        (to_the_second(d.created_at), link_to(Delivery, d.id, width=SHORT_ID),
         link_to(Message, d.event.message_id, d.event.status_code),  # the event, linked to its message
         d.status, d.attempts, d.last_status_code or "-", clipped(d.last_error, 30) or "-")
        for d in rows))
    everything = reverse("admin:deliveries_delivery_changelist") + f"?subscription__id__exact={subscription.id}"
    return format_html(
        '<table class="relay-recent"><thead><tr><th>created</th><th>delivery</th><th>event</th>'
        "<th>status</th><th>attempts</th><th>last code</th><th>last error</th>"
        '</tr></thead><tbody>{}</tbody></table><p><a href="{}">All deliveries of this subscription</a></p>',
        body, everything)
