"""Small pieces the history pages are written with: times to the millisecond, long values
clipped with the whole value in a tooltip, links to another row's admin page."""

from datetime import datetime

from django.db.models import Model
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

# Ids in lists: the first 8 characters, as short git hashes; the whole id on hover.
SHORT_ID = 9


def to_the_millisecond(value: datetime | None) -> str:
    """Events of one message often fall within the same second: milliseconds order them."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d}"


def to_the_second(value: datetime | None) -> str:
    return "-" if value is None else f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S}"


def clipped(value, width: int = 30) -> str:
    """At most `width` characters; the whole value in the title, shown on hover."""
    text = "" if value is None else str(value)
    if len(text) <= width:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: width - 1])


def link_to(model: type[Model], pk, text=None, width: int = 40) -> str:
    """A link to the admin page of `model`'s row `pk` (no query: the id is enough), or "-"."""
    if pk is None or pk == "":
        return "-"
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, clipped(pk if text is None else text, width))


def link(obj: Model | None, text=None, width: int = 40) -> str:
    """A link to `obj`'s admin page, or "-" for none."""
    if obj is None:
        return "-"
    return link_to(type(obj), obj.pk, obj if text is None else text, width)


def error_text(code: str, message: str, width: int | None = None) -> str:
    """The code itself (RATE_LIMITED, as the API and webhooks say it) and the message beside it."""
    if not code and not message:
        return "-"
    shown = clipped(message, width) if width else message
    return format_html("<code>{}</code> {}", code or "-", shown)
