"""Request and response shapes, camelCase like the payloads. Validation only: the views
hand validated data to services."""

import functools
import json
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from ..lookups import channel_by_name
from ..models import Channel, Message
from ..payloads import event_payload
from ..providers import PROVIDERS, ConfigError, provider_class
from ..providers.secrets import generated
from ..status import ErrorCode, EventCode
from .fields import (
    ReceiverField,
    StrictCharField,
    StrictDateTimeField,
    StrictFloatField,
    StrictIntegerField,
    StrictModelSerializer,
)

MAX_FALLBACK_DEPTH = 5


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[-a-zA-Z0-9_]+$",
                      "description": "A channel's name."})
class ChannelNameField(serializers.Field):
    """A channel by name, from the per-process cache (comms.lookups). A batch passes every
    channel in `context["channels"]`, read once, so all its items see the same channels."""

    default_error_messages = {
        "unknown": "Unknown channel '{name}'.",
        "disabled": "Channel '{name}' is disabled.",
        "invalid": "A channel name (a string) is required.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str) or not data:
            self.fail("invalid")
        channels = self.context.get("channels")
        channel = channels.get(data) if channels is not None else channel_by_name(data)
        if channel is None:
            self.fail("unknown", name=data)
        if not channel.enabled:
            self.fail("disabled", name=data)
        return channel

    def to_representation(self, value):
        return value.name


def checked_context(value: dict) -> dict:
    """A context no larger, serialized, than RELAY_MAX_CONTEXT_BYTES."""
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > settings.RELAY_MAX_CONTEXT_BYTES:
        raise serializers.ValidationError(
            f"At most {settings.RELAY_MAX_CONTEXT_BYTES} bytes serialized (this one is {size}): "
            "it is echoed in every webhook.")
    return value


class ContentSerializer(serializers.Serializer):
    text = StrictCharField(max_length=100_000, trim_whitespace=False)
    html = StrictCharField(required=False, max_length=500_000, trim_whitespace=False)
    subject = StrictCharField(required=False, max_length=998, trim_whitespace=False)


class FallbackField(serializers.DictField):
    """A nested message, validated by MessageInputSerializer itself (validate_fallback)."""


class MessageItemsField(serializers.ListField):
    """A batch's items: plain objects here, each validated by one shared MessageInputSerializer."""


class MessageInputSerializer(serializers.Serializer):
    channel = ChannelNameField()
    receiver = ReceiverField(max_length=320)
    sender = StrictCharField(required=False, allow_blank=True, max_length=255)
    content = ContentSerializer()
    context = serializers.DictField(required=False)
    sendAt = StrictDateTimeField(source="send_at", required=False, allow_null=True)
    expiresAt = StrictDateTimeField(source="expires_at", required=False, allow_null=True)
    fallback = FallbackField(
        required=False, allow_null=True,
        help_text="Another message of this same shape, started if this one fails or expires.",
    )

    def validate_context(self, value):
        return checked_context(value)

    def validate_fallback(self, value):
        if value is None:
            return None
        depth = self.context.get("depth", 0) + 1
        if depth > MAX_FALLBACK_DEPTH:
            raise serializers.ValidationError(f"A fallback chain has at most {MAX_FALLBACK_DEPTH} links.")
        nested = MessageInputSerializer(data=value, context={**self.context, "depth": depth})
        nested.is_valid(raise_exception=True)
        return nested.validated_data

    def validate(self, attrs):
        send_at, expires_at = attrs.get("send_at"), attrs.get("expires_at")
        if expires_at and send_at and send_at >= expires_at:
            raise serializers.ValidationError({"expiresAt": ["Must be later than sendAt."]})
        if expires_at and expires_at <= timezone.now():
            raise serializers.ValidationError({"expiresAt": ["Must be in the future."]})
        channel = attrs["channel"]
        problems = provider_class(channel.type).message_errors(
            channel.config, receiver=attrs["receiver"], sender=attrs.get("sender", ""), content=attrs["content"])
        if problems:
            raise serializers.ValidationError(problems)
        return attrs


# Documented as what they are validated as (the classes exist only now: the shape is recursive).
extend_schema_field(MessageInputSerializer)(FallbackField)
extend_schema_field(MessageInputSerializer(many=True))(MessageItemsField)


class BatchInputSerializer(serializers.Serializer):
    messages = MessageItemsField(
        child=serializers.DictField(), min_length=1, max_length=settings.RELAY_BATCH_MAX
    )
    context = serializers.DictField(required=False)

    def validate_context(self, value):
        return checked_context(value)

    def validate(self, attrs):
        """The batch's context is merged under each message's own: the sum must fit too."""
        shared = attrs.get("context") or {}
        errors = {}
        for index, item in enumerate(attrs["messages"]):
            try:
                checked_context({**shared, **(item.get("context") or {})})
            except serializers.ValidationError as exc:
                errors[str(index)] = {"context": exc.detail}
        if errors:
            raise serializers.ValidationError({"messages": errors})
        return attrs

    def validate_messages(self, items):
        """All or nothing: errors are keyed by the item's index."""
        channels = {c.name: c for c in Channel.objects.all()}
        # One serializer for every item, as DRF's ListSerializer does: building its fields
        # (a deepcopy of each) per item cost more than validating the item.
        item_serializer = MessageInputSerializer(context={"channels": channels})
        validated, errors = [], {}
        for index, item in enumerate(items):
            try:
                validated.append(item_serializer.run_validation(item))
            except serializers.ValidationError as exc:
                errors[str(index)] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return validated


@extend_schema_field(ContentSerializer)
class StoredContentField(serializers.JSONField):
    """Content as stored (validated on the way in), documented with its shape."""


@extend_schema_field(OpenApiTypes.OBJECT)
class StoredObjectField(serializers.JSONField):
    """A JSON object as stored, documented as an object (a bare JSONField is 'any value')."""


class EventSerializer(serializers.Serializer):
    """An event as webhooks carry it (comms.payloads): fields that do not apply are absent.
    Documentation only: payloads are built by event_payload."""

    id = serializers.CharField()
    statusCode = serializers.ChoiceField(choices=EventCode.choices)
    messageId = serializers.CharField()
    channelName = serializers.CharField()
    errorCode = serializers.ChoiceField(choices=ErrorCode.choices, required=False)
    errorMessage = serializers.CharField(required=False)
    fallbackTo = serializers.CharField(required=False)
    env = serializers.DictField(required=False)
    link = serializers.CharField(required=False)
    context = StoredObjectField()
    timeStamp = serializers.CharField(help_text="%Y-%m-%dT%H:%M:%S%z, e.g. 2021-07-13T20:17:56+0000")
    sequence = serializers.IntegerField(help_text="Per message, from 1: receivers may order events by it.")


class MessageSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.name")
    content = StoredContentField()
    context = StoredObjectField()
    sendAt = serializers.DateTimeField(source="send_at", allow_null=True)
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    fallbackTo = serializers.CharField(
        source="fallback_to_id", required=False,
        help_text="The next message of the chain; absent when there is none.")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Message
        fields = [
            "id", "status", "channel", "sender", "receiver", "content", "context",
            "sendAt", "expiresAt", "attempts", "fallbackTo", "createdAt", "updatedAt",
        ]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get("fallbackTo") is None:
            data.pop("fallbackTo", None)
        return data


class MessageDetailSerializer(MessageSerializer):
    events = serializers.SerializerMethodField()

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "events"]

    @extend_schema_field(EventSerializer(many=True))
    def get_events(self, message):
        return [event_payload(e, message, message.channel.name) for e in message.events.all()]


@functools.cache
def _shared(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One instance per process. Building a serializer's fields (a deepcopy of each declared
    field; a ModelSerializer's introspection of its model besides) cost more than using them:
    ~0.6 ms of a single POST. Safe to share: run_validation and to_representation keep no
    state on the instance, and these serializers use no context."""
    return serializer_class()


def message_input(data: Any) -> dict:
    """`data` validated as one message, with the errors MessageInputSerializer(data=data)
    .is_valid(raise_exception=True) raises."""
    try:
        return _shared(MessageInputSerializer).run_validation(data)
    except serializers.ValidationError as exc:
        if isinstance(exc.detail, list):  # a null body: what is_valid says of it
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [
                serializers.ErrorDetail("No data provided", code="null")]}) from None
        raise


def message_resource(message: Message) -> dict:
    """The message resource (MessageSerializer), from the instance as it is: no query when
    its channel is loaded, as the one a message was created with is."""
    return _shared(MessageSerializer).to_representation(message)


class BatchResultSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True)


class ChannelSerializer(StrictModelSerializer):
    type = serializers.ChoiceField(choices=sorted(PROVIDERS))
    maxAttempts = StrictIntegerField(source="max_attempts", min_value=1, max_value=100, default=3)
    retryDelay = StrictFloatField(source="retry_delay", min_value=0, max_value=86_400, default=5.0)
    rateLimit = StrictFloatField(source="rate_limit", min_value=0.001, max_value=10_000, allow_null=True, default=None)
    config = serializers.DictField(required=False, default=dict)

    class Meta:
        model = Channel
        fields = ["name", "type", "config", "maxAttempts", "retryDelay", "rateLimit", "enabled"]
        # A name taken is a conflict (409, see ChannelViewSet), not bad input.
        extra_kwargs = {"name": {"validators": []}}

    def validate(self, attrs):
        channel_type = attrs.get("type") or (self.instance.type if self.instance else None)
        previous = self.instance.config if self.instance else None
        config = attrs.get("config", previous or {})
        provider = provider_class(channel_type)
        try:
            attrs["config"] = provider.configure(config, previous)
        except ConfigError as exc:
            raise serializers.ValidationError({"config": [str(exc)]}) from exc
        # A secret Relay makes is shown once, in the answer to the request that made it.
        self._made_secrets = generated(config, previous, attrs["config"], provider.SECRET_KEYS)
        return attrs

    def to_representation(self, channel):
        data = super().to_representation(channel)
        data["config"] = provider_class(channel.type).shown(
            channel.config, reveal=getattr(self, "_made_secrets", ()))
        return data
