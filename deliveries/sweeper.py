"""Republish deliveries whose task was lost or whose claim expired, and long retries."""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from comms.leases import grace

from .dispatch import publish_on_commit
from .models import Delivery

log = logging.getLogger(__name__)


def sweep_due_deliveries(*, now: datetime | None = None, limit: int = 5000) -> int:
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("id", "status")[:limit]
        )
        pending = [i for i, status in due if status == Delivery.Status.PENDING]
        Delivery.objects.filter(id__in=pending).update(next_attempt_at=now + grace())
        Delivery.objects.filter(id__in=[i for i, s in due if s != Delivery.Status.PENDING]).update(
            next_attempt_at=None)
        publish_on_commit(pending)
    if pending:
        log.info("sweep: republished %d deliveries", len(pending))
    return len(pending)
