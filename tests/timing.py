"""Time for the tests: durations from settings, and a clock to freeze."""

from datetime import datetime, timedelta

from django.conf import settings


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def grace() -> timedelta:
    return seconds(settings.RELAY_DISPATCH_GRACE)


def lease() -> timedelta:
    return seconds(settings.RELAY_CLAIM_LEASE)


class Clock:
    """Stands in for django.utils.timezone.now; tests move `now` by hand."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now
