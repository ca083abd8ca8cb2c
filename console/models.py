"""The console's rollup: counts per minute, small enough to sum a day of them per page.

Rows are derived from the history (messages, their events, webhook attempts) and can be
thrown away and rolled again at any time (console.rollup); nothing else writes them.
"""

from django.db import models

from comms.models import Channel
from deliveries.models import Subscription

# The pseudo event code under which a minute's new messages are counted.
ACCEPTED = "ACCEPTED"

# Upper bounds (seconds) of the accept→DELIVERED latency buckets; the last bucket is open.
LATENCY_BOUNDS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)


class StatusMinute(models.Model):
    """How many events of one status code a channel's messages had in one minute (and, under
    ACCEPTED, how many messages it was given)."""

    minute = models.DateTimeField()
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=24)
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "channel", "code"], name="status_minute_once")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} {self.code}: {self.count}"


class LatencyMinute(models.Model):
    """DELIVERED events of one minute and channel by accept→DELIVERED latency bucket: a median
    over any range of minutes is read from the summed buckets."""

    minute = models.DateTimeField()
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    bucket = models.PositiveSmallIntegerField(help_text="Index into LATENCY_BOUNDS; len() is the open bucket.")
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "channel", "bucket"], name="latency_minute_once")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} bucket {self.bucket}: {self.count}"


class WebhookMinute(models.Model):
    """A subscription's webhook attempts of one minute, by outcome (2xx or not)."""

    minute = models.DateTimeField()
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="+")
    succeeded = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "subscription"], name="webhook_minute_once")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M}: {self.succeeded} ok, {self.failed} failed"


class RollupMark(models.Model):
    """One row: the minute up to which the rollup was last rolled. Its row lock makes two
    refreshes take turns instead of counting a minute twice."""

    rolled_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rolled until {self.rolled_until}"
