"""What becomes of a delivery after an attempt: done, given up, or due again after a delay
from the retry schedule (jittered), or from the endpoint's own Retry-After."""

import random
from datetime import datetime, timedelta

from django.conf import settings

from . import http
from .lifecycle import Change
from .models import Delivery, DeliveryAttempt

# 4xx answers worth another try; every other 4xx is final.
RETRYABLE_4XX = {408, 409, 425, 429}
RETRY_AFTER_STATUSES = {429, 503}


def after_attempt(attempts: int, outcome: http.Outcome, now: datetime, *, subscription_active: bool) -> Change:
    """The change that the `attempts`-th attempt, made `now`, brings its delivery. A retry is
    due at its time exactly: claims take only what is due (see comms.due)."""
    answer = {"attempts": attempts, "last_status_code": outcome.status_code, "last_error": _error_of(outcome)}
    if outcome.ok:
        return Change(Delivery.Status.SUCCEEDED, **answer)
    delay = retry_delay(attempts, outcome) if subscription_active else None
    if delay is None:
        return Change(Delivery.Status.FAILED, **answer)
    return Change(Delivery.Status.PENDING, due_at=now + timedelta(seconds=delay), **answer)


def retry_delay(attempts_made: int, outcome: http.Outcome) -> float | None:
    """Seconds until the next attempt, or None when there is none (final answer, or the
    schedule is spent). The schedule is jittered ±20%; Retry-After wins within bounds."""
    status = outcome.status_code
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return None
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts_made > len(schedule):
        return None
    if status in RETRY_AFTER_STATUSES and outcome.retry_after is not None:
        return min(max(outcome.retry_after, 1.0), settings.WEBHOOK_RETRY_AFTER_MAX)
    return schedule[attempts_made - 1] * random.uniform(0.8, 1.2)


def _error_of(outcome: http.Outcome) -> str:
    if outcome.error_detail:
        return outcome.error_detail
    return f"HTTP {outcome.status_code}" if outcome.error_kind == DeliveryAttempt.ErrorKind.HTTP_STATUS else ""
