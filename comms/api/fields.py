"""Request fields that take JSON as the schema types it, and nothing DRF would coerce.

DRF reads `5` as the string "5", `"3"` and `true` as numbers, `"yes"` and `0` as booleans,
and any date Python's `fromisoformat` reads (`2020-01-01`, no offset) as an instant. A client
sending those has a bug worth hearing about, and the schema promises strings, numbers,
booleans and RFC 3339 date-times: these fields hold the API to that.
"""

import re

from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# RFC 3339 section 5.6: full date, T, full time with seconds, and an offset (Z or ±hh:mm).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
RFC3339_MESSAGE = "An RFC 3339 date-time with an offset is required, such as 2026-01-31T09:30:00Z."


def is_rfc3339(value) -> bool:
    return isinstance(value, str) and RFC3339.fullmatch(value) is not None


class StrictCharField(serializers.CharField):
    # Keys of their own: "invalid" is the subclasses' (URLField's, SlugField's) format message.
    default_error_messages = {"wrong_type": "A string is required."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("wrong_type")
        return super().to_internal_value(data)


class StrictURLField(StrictCharField, serializers.URLField):
    pass


class StrictSlugField(StrictCharField, serializers.SlugField):
    pass


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"wrong_type": "true or false is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("wrong_type")
        return data


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"wrong_type": "A whole number is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("wrong_type")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"wrong_type": "A number is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("wrong_type")
        return super().to_internal_value(data)


class StrictDateTimeField(serializers.DateTimeField):
    default_error_messages = {"invalid": RFC3339_MESSAGE}

    def to_internal_value(self, value):
        if not is_rfc3339(value):
            self.fail("invalid")
        return super().to_internal_value(value.upper())  # RFC 3339 allows t and z; Python reads T and Z


class StrictModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose generated fields are the strict ones."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.URLField: StrictURLField,
        models.BooleanField: StrictBooleanField,
        models.IntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.FloatField: StrictFloatField,
        models.DateTimeField: StrictDateTimeField,
    }


# What Python's str.strip() removes, which is what DRF trims: more than JSON Schema's \s (the
# separators \x1c-\x1f, \x85) and less (not \ufeff).
NOT_WHITESPACE = "[^\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 320, "pattern": NOT_WHITESPACE,
                      "description": "Who gets the message: what the channel's type takes (see README)."})
class ReceiverField(StrictCharField):
    """Trimmed, so it must hold more than whitespace (the schema's pattern says so)."""
