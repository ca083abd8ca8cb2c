"""List filters, as strict as the request bodies: a parameter given is a parameter checked."""

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from ..models import Message
from ..status import Status
from .fields import RFC3339_MESSAGE, is_rfc3339


class RFC3339Field(IsoDateTimeField):
    def to_python(self, value):
        if value not in self.empty_values and not is_rfc3339(value):
            raise forms.ValidationError(RFC3339_MESSAGE, code="invalid")
        return super().to_python(value.upper() if isinstance(value, str) else value)


class InstantFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 instant, compared in UTC: Python accepts offsets up to ±23:59, PostgreSQL
    only those of real time zones, so an offset such as +18:03 is converted, not passed on."""

    field_class = RFC3339Field

    def filter(self, qs, value):
        return super().filter(qs, value.astimezone(UTC) if value else value)


class StrictFilterSet(django_filters.FilterSet):
    """django-filter reads `?status=` as no filter at all; a client that sends a parameter
    empty has a bug worth a 400."""

    def is_valid(self):
        valid = super().is_valid()
        empty = [name for name in self.filters if self.data.get(name) == ""]
        for name in empty:
            self.form.add_error(name, "Must not be empty: leave the parameter out not to filter by it.")
        return valid and not empty


class MessageFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    channel = django_filters.CharFilter(field_name="channel__name")
    receiver = django_filters.CharFilter()
    createdAfter = InstantFilter(field_name="created_at", lookup_expr="gte")
    createdBefore = InstantFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = ["status", "channel", "receiver", "createdAfter", "createdBefore"]
