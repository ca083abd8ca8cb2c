from django import forms
from django.contrib import admin, messages

from .health import state_of
from .models import Delivery, DeliveryAttempt, Subscription
from .services import SUBSCRIPTION_FIELDS, deliveries_retry, subscription_update
from .signing import masked
from .urlguard import RefusedURL, check_url


class SubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")

    def clean_url(self):
        try:
            check_url(self.cleaned_data["url"])
        except RefusedURL as exc:
            raise forms.ValidationError(str(exc)) from exc
        return self.cleaned_data["url"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["id", "application", "url", "state", "failing_since", "next_probe_at", "disabled_reason",
                    "created_at"]
    list_filter = ["active", "application"]
    search_fields = ["=id", "url"]
    # The secret is never shown in full: only its first characters.
    exclude = ["secret", "previous_secret"]
    readonly_fields = ["secret_hint", "previous_secret_expires_at", "state", "failing_since",
                       "unreachable_streak", "backing_off_since", "next_probe_at", "disabled_at",
                       "disabled_reason", "created_at", "updated_at"]

    @admin.display(description="state")
    def state(self, obj):
        return state_of(obj).value

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Through the service, as the API does: re-enabling or a new URL starts afresh, and
        # only the changed fields are written (the health fields are the workers').
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in SUBSCRIPTION_FIELDS}
        subscription_update(subscription=Subscription.objects.get(pk=obj.pk), **changed)

    @admin.display(description="secret")
    def secret_hint(self, obj):
        return masked(obj.secret)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["number", "attempted_at", "status_code", "duration_ms", "error_kind", "error_detail", "probe",
              "response_excerpt"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "subscription", "event", "status", "attempts", "last_status_code",
                    "due_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["=id", "=event__id", "=event__message__id"]
    list_select_related = ["subscription", "event"]
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry the selected deliveries now")
    def retry_now(self, request, queryset):
        count = deliveries_retry(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} deliveries will be attempted again.", messages.SUCCESS)
