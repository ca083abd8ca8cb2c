"""The health console: one admin page (staff only, by admin.site.admin_view in config.urls)."""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from . import report, rollup


def console(request):
    now = timezone.now()
    # Top the rollup up to this minute: the periodic task leaves at most its interval to roll.
    rollup.refresh(now, reroll_minutes=rollup.PAGE_REROLL_MINUTES)
    context = {**admin.site.each_context(request), "title": "Health console", **report.build(now)}
    return TemplateResponse(request, "console/console.html", context)
