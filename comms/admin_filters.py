"""List filters that offer codes as the API and the webhooks write them (DELIVERY_FAILED,
RATE_LIMITED), not the choices' labels, so the sidebar reads like the list beside it."""

from django.contrib import admin
from django.db.models import TextChoices


class CodeFilter(admin.SimpleListFilter):
    field: str
    codes: type[TextChoices]

    def lookups(self, request, model_admin):
        return [(code.value, code.value) for code in self.codes]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


def code_filter(field: str, codes: type[TextChoices], title: str) -> type[CodeFilter]:
    # The parameter is the one Django's own filter uses, so links to filtered lists keep working.
    return type(f"{field.title()}CodeFilter", (CodeFilter,),
                {"field": field, "codes": codes, "title": title, "parameter_name": f"{field}__exact"})
