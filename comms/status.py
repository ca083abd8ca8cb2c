"""The status vocabulary and the one table of allowed transitions."""

from django.db import models


class Status(models.TextChoices):
    # Internal: a fallback waiting for its predecessor to fail. It emits no event.
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERY_RETRIED = "DELIVERY_RETRIED"
    DELIVERED = "DELIVERED"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    READ = "READ"
    INTERACTED = "INTERACTED"
    DELETED = "DELETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class EventCode(models.TextChoices):
    """What a webhook's statusCode may say: every status but PENDING, plus event-only codes."""

    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERY_RETRIED = "DELIVERY_RETRIED"
    DELIVERED = "DELIVERED"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    READ = "READ"
    INTERACTED = "INTERACTED"
    DELETED = "DELETED"
    CANCELLED = "CANCELLED"
    FAILED_CANCELLATION = "FAILED_CANCELLATION"
    EXPIRED = "EXPIRED"


class ErrorCode(models.TextChoices):
    CHANNEL_UNKNOWN_ERROR = "CHANNEL_UNKNOWN_ERROR", "The channel suffered an internal error"
    REJECTED_BY_CHANNEL = "REJECTED_BY_CHANNEL", "The channel rejected the message"
    INVALID_RECEIVER = "INVALID_RECEIVER", "The receiver address is not valid for this channel"
    RECEIVER_UNREACHABLE = "RECEIVER_UNREACHABLE", "The receiver could not be reached"
    CHANNEL_TIMEOUT = "CHANNEL_TIMEOUT", "The channel did not answer in time"
    CHANNEL_UNAVAILABLE = "CHANNEL_UNAVAILABLE", "The channel is unavailable"
    CONTENT_REJECTED = "CONTENT_REJECTED", "The channel refused the content"
    RATE_LIMITED = "RATE_LIMITED", "The channel is rate limiting us"
    EXPIRED = "EXPIRED", "The message was not sent before it expired"


S = Status

# target status -> the statuses it may be reached from. Feedback (READ, INTERACTED,
# DELETED) only ever moves forward; outcomes are final except for feedback after DELIVERED.
ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    S.SCHEDULED: frozenset({S.PENDING}),
    S.QUEUED: frozenset({S.PENDING, S.SCHEDULED}),
    # An attempt is handed to the provider from the queue or after a failed attempt.
    S.SENT: frozenset({S.QUEUED, S.DELIVERY_RETRIED}),
    # A failure reported by a receipt (from SENT) or raised by the provider at once.
    S.DELIVERY_RETRIED: frozenset({S.SENT, S.QUEUED, S.DELIVERY_RETRIED}),
    S.DELIVERY_FAILED: frozenset({S.SENT, S.QUEUED, S.DELIVERY_RETRIED}),
    S.DELIVERED: frozenset({S.SENT}),
    S.READ: frozenset({S.SENT, S.DELIVERED}),
    S.INTERACTED: frozenset({S.SENT, S.DELIVERED, S.READ}),
    S.DELETED: frozenset({S.SENT, S.DELIVERED, S.READ, S.INTERACTED}),
    S.CANCELLED: frozenset({S.PENDING, S.SCHEDULED, S.QUEUED, S.DELIVERY_RETRIED}),
    S.EXPIRED: frozenset({S.SCHEDULED, S.QUEUED, S.DELIVERY_RETRIED}),
}

# Statuses from which the message is, or will be, given to a provider.
SENDABLE = frozenset({S.QUEUED, S.DELIVERY_RETRIED})
# Statuses that wait for something (an attempt, sendAt, a receipt): only they have a due time.
WAITING = frozenset({S.SCHEDULED, S.QUEUED, S.DELIVERY_RETRIED, S.SENT})
FINAL = frozenset({S.DELIVERY_FAILED, S.CANCELLED, S.EXPIRED, S.DELETED})


def can_transition(current: str, target: str) -> bool:
    return current in ALLOWED_FROM.get(target, frozenset())
