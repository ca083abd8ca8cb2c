"""The message backlog, read from the database when Prometheus scrapes: what waits in
each channel, by status, and for how long the oldest of each has.

One query, grouped by channel and status. It names every application, so PostgreSQL reads
the waiting messages through message_app_status (application, status, ...) instead of
scanning a table of finished ones.
"""

from datetime import datetime

from django.db.models import Count, Min, Q

from .metrics import Reading
from .models import Application, Channel, Message
from .status import Status

# In the order a message passes them; SENT is waiting for its receipt.
WAITING = (Status.SCHEDULED, Status.QUEUED, Status.DELIVERY_RETRIED, Status.SENT)
LABELS = ("channel", "status")


def readings(now: datetime) -> list[Reading]:
    channels = dict(Channel.objects.values_list("id", "name"))
    applications = list(Application.objects.values_list("id", flat=True))
    rows = (Message.objects.filter(application_id__in=applications, status__in=WAITING)
            .values("channel_id", "status")
            .annotate(waiting=Count("id"), due=Count("id", filter=Q(due_at__lte=now)), since=Min("updated_at")))
    found = {(row["channel_id"], row["status"]): row for row in rows}
    waiting = Reading("relay_messages_waiting", "Messages waiting, by channel and status: SCHEDULED (for sendAt), "
                      "QUEUED and DELIVERY_RETRIED (for an attempt), SENT (for a receipt).", LABELS)
    due = Reading("relay_messages_due", "Waiting messages whose next step is due now (an attempt, a start, a "
                  "receipt check), by channel and status.", LABELS)
    oldest = Reading("relay_messages_oldest_age_seconds", "How long the oldest waiting message has been in its "
                     "status, by channel and status (0: none waits).", LABELS)
    for channel_id, name in sorted(channels.items(), key=lambda item: item[1]):
        for status in WAITING:
            row = found.get((channel_id, status))
            labels = (name, status.value)
            waiting.samples.append((labels, row["waiting"] if row else 0))
            due.samples.append((labels, row["due"] if row else 0))
            oldest.samples.append((labels, max((now - row["since"]).total_seconds(), 0.0) if row else 0.0))
    return [waiting, due, oldest]
