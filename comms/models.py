import hashlib
import hmac
import secrets

from django.db import models
from django.db.models import Q

from .ids import new_id
from .status import ErrorCode, EventCode, Status

KEY_PREFIX = "rly"


class Application(models.Model):
    """A client of the API. It sees, and hears about, only its own messages."""

    name = models.CharField(max_length=100, unique=True)
    is_admin = models.BooleanField(default=False, help_text="May manage channels.")
    # Empty: no limit. Over either, the API answers 429 and creates nothing.
    api_requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="API requests allowed per minute; empty for no limit.")
    daily_message_quota = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages accepted per UTC day; empty for no limit.")
    created_at = models.DateTimeField(auto_now_add=True)

    # DRF treats the authenticated principal as the request's user.
    is_authenticated = True

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A bearer key, stored as its SHA-256 (keys are random, so no slow hash is needed)
    and found by its public prefix."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{KEY_PREFIX}_{self.prefix}_…"

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def issue(cls, application: Application) -> tuple["ApiKey", str]:
        prefix = secrets.token_hex(6)
        raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        key = cls.objects.create(application=application, prefix=prefix, key_hash=cls.hash(raw))
        return key, raw

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.key_hash, self.hash(raw_key))


class Channel(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    type = models.CharField(max_length=32)
    config = models.JSONField(default=dict, blank=True)
    max_attempts = models.PositiveIntegerField(default=3)
    retry_delay = models.FloatField(default=5.0, help_text="Seconds before the first retry; doubles each time.")
    enabled = models.BooleanField(default=True)
    # Held across every worker (comms.pacing); empty: as fast as the provider takes them.
    rate_limit = models.FloatField(null=True, blank=True,
                                   help_text="Messages per second, across all workers; empty for no limit.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def retry_delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.retry_delay * (2 ** max(attempt - 1, 0))


class Message(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    # No index of their own: message_app_created and message_provider_ref lead with them.
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="messages",
                                    db_index=False)
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="messages", db_index=False)
    sender = models.CharField(max_length=255, blank=True, default="")
    receiver = models.CharField(max_length=320)
    content = models.JSONField(default=dict)
    context = models.JSONField(default=dict, blank=True)
    # Written only by comms.lifecycle.
    status = models.CharField(max_length=20, choices=Status.choices)
    attempts = models.PositiveIntegerField(default=0)
    # The sequence number of the last event recorded for this message.
    event_seq = models.PositiveIntegerField(default=0)
    send_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    fallback_to = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fallback_of"
    )
    # NULL, not "", when absent: the unique constraint ignores NULLs.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    provider_ref = models.CharField(max_length=255, blank=True, default="")
    # When the message's next step falls due (see comms.due): its next attempt (QUEUED,
    # DELIVERY_RETRIED), the look at its sendAt (SCHEDULED), the check for a missing receipt
    # (SENT). NULL: nothing is due.
    due_at = models.DateTimeField(null=True, blank=True)
    # While a worker holds a claim on the attempt: nobody else sends it, a cancel cannot take it.
    leased_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="message_idempotency_key_per_application",
            ),
        ]
        indexes = [
            # The sweeper's query: only rows with work due are in this index.
            models.Index(
                fields=["due_at"],
                condition=Q(due_at__isnull=False),
                name="message_due_at",
            ),
            models.Index(fields=["application", "-created_at"], name="message_app_created"),
            models.Index(fields=["application", "status", "-created_at"], name="message_app_status"),
            models.Index(fields=["channel", "provider_ref"], name="message_provider_ref"),
        ]

    def __str__(self) -> str:
        return self.id


class MessageEvent(models.Model):
    """One change of state of a message, exactly what the webhooks carry."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    # No index of its own: event_sequence_per_message leads with it.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events", db_index=False)
    sequence = models.PositiveIntegerField()
    status_code = models.CharField(max_length=24, choices=EventCode.choices)
    error_code = models.CharField(max_length=32, choices=ErrorCode.choices, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # The provider's own code, for operators; never sent to applications.
    raw_code = models.CharField(max_length=100, blank=True, default="")
    fallback_to = models.CharField(max_length=32, blank=True, default="")
    attempt = models.PositiveIntegerField(default=0)
    env = models.JSONField(null=True, blank=True)
    link = models.URLField(max_length=2000, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["message", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["message", "sequence"], name="event_sequence_per_message"),
        ]

    def __str__(self) -> str:
        return f"{self.status_code} #{self.sequence}"


class Receipt(models.Model):
    """A provider receipt as it arrived, and what became of it."""

    class Outcome(models.TextChoices):
        APPLIED = "applied"
        IGNORED = "ignored"
        DEFERRED = "deferred"
        UNKNOWN_MESSAGE = "unknown_message"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="receipts")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="receipts"
    )
    payload = models.JSONField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    detail = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["channel", "-received_at"], name="receipt_channel_time")]

    def __str__(self) -> str:
        return f"{self.channel_id}: {self.outcome}"
