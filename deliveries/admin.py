from django import forms
from django.contrib import admin, messages

from comms.admin_display import SHORT_ID, clipped, link_to, to_the_millisecond, to_the_second
from comms.admin_readonly import HistoryAdmin, HistoryInline
from comms.models import Message, MessageEvent

from .admin_headers import HeadersField
from .admin_subscriptions import deliveries_table, health_summary
from .models import Delivery, DeliveryAttempt, Subscription
from .services import SUBSCRIPTION_FIELDS, deliveries_retry, subscription_update
from .signing import masked
from .urlguard import RefusedURL, check_url


class SubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", widget=forms.URLInput(attrs={"class": "vURLField"}))
    headers = HeadersField()

    class Meta:
        widgets = {"events": forms.Textarea(attrs={"rows": 2, "cols": 70}),
                   "channels": forms.Textarea(attrs={"rows": 2, "cols": 70})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["headers"].previous = self.instance.headers or {}

    def clean_url(self):
        try:
            check_url(self.cleaned_data["url"])
        except RefusedURL as exc:
            raise forms.ValidationError(str(exc)) from exc
        return self.cleaned_data["url"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["url_shown", "application_shown", "health_shown", "created_at"]
    list_filter = ["active", "application"]
    search_fields = ["=id", "url"]
    list_select_related = ["application"]
    ordering = ["-created_at"]
    # The secret is never shown in full: only its first characters.
    fieldsets = [
        (None, {"fields": ["application", "url", "description", "events", "channels", "headers", "active"]}),
        ("Health", {"fields": ["health", "failing_since", "unreachable_streak", "backing_off_since",
                               "next_probe_at", "disabled_at", "disabled_reason"]}),
        ("Recent deliveries", {"fields": ["recent_deliveries"]}),
        ("Signing", {"fields": ["secret_hint", "previous_secret_expires_at", "id", "created_at", "updated_at"]}),
    ]
    readonly_fields = ["health", "failing_since", "unreachable_streak", "backing_off_since", "next_probe_at",
                       "disabled_at", "disabled_reason", "recent_deliveries", "secret_hint",
                       "previous_secret_expires_at", "id", "created_at", "updated_at"]

    class Media:
        css = {"all": ["comms/admin.css"]}

    def get_fieldsets(self, request, obj=None):
        # A new subscription has no health and no deliveries yet.
        return self.fieldsets if obj else self.fieldsets[:1]

    @admin.display(description="url", ordering="url")
    def url_shown(self, obj):
        return clipped(obj.url, 28)

    @admin.display(description="application", ordering="application__name")
    def application_shown(self, obj):
        return clipped(obj.application.name, 12)

    @admin.display(description="health")
    def health_shown(self, obj):
        return health_summary(obj, width=34)

    @admin.display(description="state")
    def health(self, obj):
        return health_summary(obj)

    @admin.display(description="latest 20")
    def recent_deliveries(self, obj):
        return deliveries_table(obj)

    @admin.display(description="secret")
    def secret_hint(self, obj):
        return masked(obj.secret)

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Through the service, as the API does: re-enabling or a new URL starts afresh, and
        # only the changed fields are written (the health fields are the workers').
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in SUBSCRIPTION_FIELDS}
        subscription_update(subscription=Subscription.objects.get(pk=obj.pk), **changed)


class DeliveryAttemptInline(HistoryInline):
    model = DeliveryAttempt
    fields = ["number", "at", "status_code", "duration_ms", "error_kind", "error_detail", "probe",
              "response_excerpt"]
    readonly_fields = fields

    @admin.display(description="attempted at")
    def at(self, attempt):
        return to_the_millisecond(attempt.attempted_at)


def search_delivery(queryset, term: str):
    """A delivery's id, or its event's or message's id, exactly. The events are looked up
    first, so each side of the OR is an index lookup."""
    term = term.strip().lower()
    if not term:
        return queryset
    events = list(MessageEvent.objects.filter(id=term).values_list("id", flat=True)) + \
        list(MessageEvent.objects.filter(message_id=term).values_list("id", flat=True))
    return queryset.filter(id=term) | queryset.filter(event_id__in=events)


@admin.register(Delivery)
class DeliveryAdmin(HistoryAdmin):
    # No id column: a delivery's id is for searching, not reading; its time links to it.
    list_display = ["created_at", "subscription_shown", "event_shown", "status", "tries", "last_code", "next_attempt"]
    sortable_by = ["created_at"]
    ordering = ["-created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "=event__id", "=event__message__id"]
    search_help_text = "A delivery, event or message id, exactly."
    # Fetched for the page's rows after it is cut, not joined before: no index orders
    # deliveries by time, and sorting the whole join is far slower than sorting the table.
    list_select_related = False
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now"]
    fields = ["id", "subscription_shown", "event_shown", "message_shown", "status", "attempts",
              "last_status_code", "last_error", "due_at", "leased_until", "created_at", "updated_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("subscription", "event")

    def get_search_results(self, request, queryset, search_term):
        return search_delivery(queryset, search_term), False

    @admin.display(description="subscription")
    def subscription_shown(self, delivery):
        return link_to(Subscription, delivery.subscription_id, delivery.subscription.url, width=20)

    @admin.display(description="next attempt")
    def next_attempt(self, delivery):
        return to_the_second(delivery.due_at)

    @admin.display(description="tries")
    def tries(self, delivery):
        return delivery.attempts

    @admin.display(description="HTTP")
    def last_code(self, delivery):
        """The status code of the latest attempt."""
        return delivery.last_status_code or "-"

    @admin.display(description="event")
    def event_shown(self, delivery):
        """The event's code, linked to its message."""
        return link_to(Message, delivery.event.message_id, delivery.event.status_code)

    @admin.display(description="message")
    def message_shown(self, delivery):
        return link_to(Message, delivery.event.message_id, width=SHORT_ID)

    @admin.action(description="Retry the selected deliveries now")
    def retry_now(self, request, queryset):
        count = deliveries_retry(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} deliveries will be attempted again.", messages.SUCCESS)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(HistoryAdmin):
    list_display = ["at", "delivery_shown", "number_shown", "http", "ms", "error_kind", "error_shown", "probe"]
    sortable_by = ["at"]
    ordering = ["-attempted_at"]
    list_filter = ["error_kind", "probe", "attempted_at"]
    search_fields = ["=delivery__id"]
    search_help_text = "A delivery id, exactly."
    fields = ["at", "delivery_shown", "number", "status_code", "duration_ms", "error_kind", "error_detail",
              "probe", "response_excerpt"]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        return (queryset.filter(delivery_id=term) if term else queryset), False

    @admin.display(description="attempted at", ordering="attempted_at")
    def at(self, attempt):
        return to_the_millisecond(attempt.attempted_at)

    @admin.display(description="delivery")
    def delivery_shown(self, attempt):
        return link_to(Delivery, attempt.delivery_id, width=SHORT_ID)

    @admin.display(description="#")
    def number_shown(self, attempt):
        return attempt.number

    @admin.display(description="HTTP")
    def http(self, attempt):
        return attempt.status_code or "-"

    @admin.display(description="ms")
    def ms(self, attempt):
        return attempt.duration_ms

    @admin.display(description="error detail")
    def error_shown(self, attempt):
        return clipped(attempt.error_detail, 20) or "-"
