from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from comms.api.fields import (
    StrictCharField,
    StrictDateTimeField,
    StrictModelSerializer,
    StrictSlugField,
    StrictURLField,
)
from comms.headers import header_problem
from comms.status import EventCode

from ..health import State, state_of
from ..models import Delivery, DeliveryAttempt, Subscription
from ..urlguard import RefusedURL, check_url


@extend_schema_field({"type": "string", "format": "uri", "pattern": "^https?://", "maxLength": 2000,
                      "description": "An http(s) URL the webhooks are posted to."})
class WebhookURLField(StrictURLField):
    pass


class SubscriptionSerializer(StrictModelSerializer):
    url = WebhookURLField(max_length=2000)
    events = serializers.ListField(child=serializers.ChoiceField(choices=EventCode.choices), required=False)
    channels = serializers.ListField(child=StrictSlugField(max_length=100), required=False,
                                     help_text="Channel names; empty means all.")
    headers = serializers.DictField(child=StrictCharField(max_length=1000), required=False)
    disabledAt = serializers.DateTimeField(source="disabled_at", read_only=True, allow_null=True)
    disabledReason = serializers.CharField(source="disabled_reason", read_only=True)
    state = serializers.SerializerMethodField(
        help_text="healthy; failing (its latest attempts failed, since failingSince); backing-off "
                  "(its endpoint stopped answering, since backingOffSince: deliveries wait and one "
                  "probe goes out at nextProbeAt); inactive")
    failingSince = serializers.DateTimeField(source="failing_since", read_only=True, allow_null=True)
    backingOffSince = serializers.DateTimeField(source="backing_off_since", read_only=True, allow_null=True)
    nextProbeAt = serializers.DateTimeField(source="next_probe_at", read_only=True, allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = Subscription
        fields = ["id", "url", "events", "channels", "description", "headers", "active",
                  "disabledAt", "disabledReason", "state", "failingSince", "backingOffSince",
                  "nextProbeAt", "createdAt", "updatedAt"]
        read_only_fields = ["id"]

    @extend_schema_field(serializers.ChoiceField(choices=[state.value for state in State]))
    def get_state(self, subscription) -> str:
        return state_of(subscription).value

    def validate_url(self, value):
        try:
            check_url(value)
        except RefusedURL as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate_headers(self, value):
        problems = [p for p in (header_problem(k, v) for k, v in value.items()) if p]
        if problems:
            raise serializers.ValidationError(problems)
        return value


class SubscriptionWithSecretSerializer(SubscriptionSerializer):
    """Only on create and rotate-secret: the one time the secret is shown."""

    secret = serializers.CharField(read_only=True)

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "secret"]


class AttemptSerializer(serializers.ModelSerializer):
    attemptedAt = serializers.DateTimeField(source="attempted_at")
    statusCode = serializers.IntegerField(source="status_code", allow_null=True,
                                          help_text="The endpoint's HTTP status; null when none came back")
    durationMs = serializers.IntegerField(source="duration_ms")
    responseExcerpt = serializers.CharField(source="response_excerpt")
    errorKind = serializers.CharField(source="error_kind")
    errorDetail = serializers.CharField(source="error_detail")
    probe = serializers.BooleanField(help_text="sent while the subscription was backing off")

    class Meta:
        model = DeliveryAttempt
        fields = ["number", "attemptedAt", "statusCode", "durationMs", "responseExcerpt",
                  "errorKind", "errorDetail", "probe"]


class DeliverySerializer(serializers.ModelSerializer):
    eventId = serializers.CharField(source="event_id")
    statusCode = serializers.ChoiceField(source="event.status_code", choices=EventCode.choices)
    messageId = serializers.CharField(source="event.message_id")
    nextAttemptAt = serializers.DateTimeField(source="due_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    attemptLog = AttemptSerializer(source="attempt_log", many=True)

    class Meta:
        model = Delivery
        fields = ["id", "eventId", "statusCode", "messageId", "status", "attempts",
                  "nextAttemptAt", "createdAt", "attemptLog"]


class RecoverSerializer(serializers.Serializer):
    since = StrictDateTimeField()
