"""Every recorded event becomes a delivery per matching subscription of its application.

Runs inside the transaction that records the events (a comms hook), so deliveries are an
outbox: they commit with their events or not at all, and the send tasks go out after commit.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from comms.models import Message

from .dispatch import publish_on_commit
from .models import Delivery, Subscription


def fan_out(events: list) -> list[Delivery]:
    messages = {
        row["id"]: row
        for row in Message.objects.filter(id__in={e.message_id for e in events})
        .values("id", "application_id", "channel__name")
    }
    subscriptions: dict[int, list[Subscription]] = defaultdict(list)
    for sub in Subscription.objects.filter(
        application_id__in={m["application_id"] for m in messages.values()}, active=True
    ).only("id", "application_id", "events", "channels"):
        subscriptions[sub.application_id].append(sub)
    if not subscriptions:
        return []
    now = timezone.now()
    # Published now: the row is the sweeper's again if nobody claims it within the grace.
    due = now + timedelta(seconds=settings.RELAY_DISPATCH_GRACE)
    deliveries = [
        Delivery(subscription_id=sub.id, event_id=event.id, next_attempt_at=due,
                 created_at=now, updated_at=now)
        for event in events
        for sub in subscriptions[messages[event.message_id]["application_id"]]
        if sub.wants(event.status_code, messages[event.message_id]["channel__name"])
    ]
    Delivery.objects.bulk_create(deliveries)
    publish_on_commit([d.id for d in deliveries])
    return deliveries
