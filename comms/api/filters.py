import django_filters

from ..models import Message
from ..status import Status


class MessageFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    channel = django_filters.CharFilter(field_name="channel__name")
    receiver = django_filters.CharFilter()
    createdAfter = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    createdBefore = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = ["status", "channel", "receiver", "createdAfter", "createdBefore"]
