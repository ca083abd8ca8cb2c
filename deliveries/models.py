from django.db import models
from django.db.models import Q

from comms.ids import new_id
from comms.models import Application, MessageEvent


class Subscription(models.Model):
    """An application's webhook endpoint, with the events and channels it wants."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="subscriptions")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, blank=True, help_text="Status codes; empty means all.")
    channels = models.JSONField(default=list, blank=True, help_text="Channel names; empty means all.")
    description = models.CharField(max_length=500, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True, help_text="Extra HTTP headers sent with each webhook.")
    active = models.BooleanField(default=True)
    secret = models.CharField(max_length=200)
    # After a rotation the old secret signs too, until this time, so receivers can roll.
    previous_secret = models.CharField(max_length=200, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # The start of the current unbroken run of failed attempts; cleared by any success.
    failing_since = models.DateTimeField(null=True, blank=True)
    # The circuit breaker: attempts in a row that timed out or could not connect. At
    # WEBHOOK_BREAKER_THRESHOLD the endpoint is backed off as a whole: its deliveries wait,
    # and one probe goes out per WEBHOOK_BREAKER_PROBE_INTERVAL until one is answered.
    unreachable_streak = models.PositiveIntegerField(default=0)
    backing_off_since = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["application", "active"], name="subscription_app_active")]

    def __str__(self) -> str:
        return f"{self.application} → {self.url}"

    def wants(self, status_code: str, channel_name: str) -> bool:
        return (not self.events or status_code in self.events) and (
            not self.channels or channel_name in self.channels
        )


class Delivery(models.Model):
    """One event for one subscription, until it lands or is given up."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(MessageEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt falls due (see comms.due); NULL once the delivery is finished.
    due_at = models.DateTimeField(null=True, blank=True)
    # While an attempt is in flight, the claim's end: nobody else claims the row, and no other
    # claim of the subscription starts, until the round is recorded or, if its worker died,
    # until this time.
    leased_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "subscription"], name="delivery_once_per_event"),
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=Q(due_at__isnull=False),
                name="delivery_due_work",
            ),
            models.Index(fields=["subscription", "status", "-created_at"], name="delivery_sub_status"),
            # A subscription's own due work, oldest first: what its claims top up from.
            models.Index(
                fields=["subscription", "due_at"],
                condition=Q(due_at__isnull=False),
                name="delivery_sub_due_work",
            ),
            # Its claim in flight, if any: one at a time per subscription (see claims).
            models.Index(
                fields=["subscription", "leased_until"],
                condition=Q(leased_until__isnull=False),
                name="delivery_sub_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return self.id


class DeliveryAttempt(models.Model):
    class ErrorKind(models.TextChoices):
        TIMEOUT = "timeout"
        CONNECTION = "connection"
        TLS = "tls"
        HTTP_STATUS = "http_status"
        REFUSED_URL = "refused_url"
        INVALID_REQUEST = "invalid_request"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True, default="")
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True, default="")
    error_detail = models.CharField(max_length=300, blank=True, default="")
    # Sent while the subscription was backing off, to find out whether its endpoint is back.
    probe = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"
