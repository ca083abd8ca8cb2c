from datetime import UTC

import django_filters

from ..models import Message
from ..status import Status


class InstantFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 instant, compared in UTC: Python accepts offsets up to ±23:59, PostgreSQL
    only those of real time zones, so an offset such as +18:03 is converted, not passed on."""

    def filter(self, qs, value):
        return super().filter(qs, value.astimezone(UTC) if value else value)


class MessageFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    channel = django_filters.CharFilter(field_name="channel__name")
    receiver = django_filters.CharFilter()
    createdAfter = InstantFilter(field_name="created_at", lookup_expr="gte")
    createdBefore = InstantFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = ["status", "channel", "receiver", "createdAfter", "createdBefore"]
