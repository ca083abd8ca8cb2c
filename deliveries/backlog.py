"""The webhook backlog, read from the database when Prometheus scrapes: pending deliveries,
those due now, and the age of the oldest (the oldest event not yet delivered).

It names every subscription, so PostgreSQL reads the pending deliveries through
delivery_sub_status (subscription, status, ...) instead of every delivery ever made.
"""

from datetime import datetime

from django.db.models import Count, Min, Q

from comms.metrics import Reading

from .models import Delivery, Subscription


def readings(now: datetime) -> list[Reading]:
    subscriptions = list(Subscription.objects.values_list("id", flat=True))
    totals = Delivery.objects.filter(subscription_id__in=subscriptions, status=Delivery.Status.PENDING).aggregate(
        pending=Count("id"), due=Count("id", filter=Q(due_at__lte=now)), oldest=Min("created_at"))
    age = max((now - totals["oldest"]).total_seconds(), 0.0) if totals["oldest"] else 0.0
    return [
        Reading("relay_webhook_deliveries_pending", "Webhook deliveries not yet succeeded or given up.",
                samples=[((), totals["pending"])]),
        Reading("relay_webhook_deliveries_due", "Pending webhook deliveries whose next attempt is due now.",
                samples=[((), totals["due"])]),
        Reading("relay_webhook_deliveries_oldest_pending_age_seconds", "Age of the oldest pending webhook "
                "delivery's event (0: none pending).", samples=[((), age)]),
    ]
