"""Small formatters for the console: ages, percentages and durations an operator reads at a glance."""

from datetime import datetime

from django import template

register = template.Library()


@register.filter
def age(moment: datetime | None, now: datetime) -> str:
    """How long ago: "45 s", "12 min", "3 h 5 min", "2 d 4 h"; "—" for nothing."""
    if moment is None:
        return "—"
    return seconds(max((now - moment).total_seconds(), 0.0))


@register.filter
def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    minutes = int(value // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def percent(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} %" if 99 < value < 100 else f"{value:.1f} %"


@register.filter
def num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"
