from django import forms
from django.contrib import admin, messages

# Registered by importing them: the history pages, read-only.
from . import admin_events, admin_messages  # noqa: F401
from .models import ApiKey, Application, Channel
from .providers import PROVIDERS, ConfigError, provider_class
from .providers.secrets import generated


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["prefix", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        # Keys are issued by `createapp`, which shows the raw key once.
        return False


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ["name", "is_admin", "api_requests_per_minute", "daily_message_quota", "created_at"]
    fields = ["name", "is_admin", "api_requests_per_minute", "daily_message_quota", "created_at"]
    readonly_fields = ["created_at"]
    search_fields = ["name"]
    inlines = [ApiKeyInline]


class ChannelForm(forms.ModelForm):
    """The same rules as the API and `createchannel`: a known type, a config its provider accepts."""

    type = forms.ChoiceField(choices=[(t, t) for t in sorted(PROVIDERS)])

    class Meta:
        model = Channel
        fields = ["name", "type", "config", "max_attempts", "retry_delay", "rate_limit", "enabled"]

    made_secrets: set[str] = set()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # secrets are never rendered: saved back masked, they are kept
            self.initial["config"] = provider_class(self.instance.type).shown(self.instance.config)

    def clean(self):
        cleaned = super().clean()
        if "type" in cleaned and "config" in cleaned:
            previous = self.instance.config if self.instance.pk else None
            provider = provider_class(cleaned["type"])
            try:
                given = cleaned["config"]
                cleaned["config"] = provider.configure(given, previous)
                self.made_secrets = generated(given, previous, cleaned["config"], provider.SECRET_KEYS)
            except ConfigError as exc:
                self.add_error("config", str(exc))
        return cleaned


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "type", "enabled", "max_attempts", "retry_delay", "rate_limit", "updated_at"]
    list_filter = ["type", "enabled"]
    search_fields = ["name"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        for key in sorted(form.made_secrets):  # the one time a secret Relay made is shown
            self.message_user(request, f"{key} of {obj.name}: {obj.config[key]} (shown this once)",
                              messages.WARNING)
