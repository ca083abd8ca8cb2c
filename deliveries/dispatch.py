"""Publishing delivery tasks after commit, and claiming deliveries (see comms.leases)."""

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings

from comms.dispatch import publish_chunks_on_commit
from comms.leases import claim_due

from .models import Delivery


def publish_on_commit(delivery_ids: Sequence[str], *, countdown: float | None = None) -> None:
    from .tasks import send_deliveries

    publish_chunks_on_commit(send_deliveries, delivery_ids, settings.WEBHOOK_SEND_CHUNK, countdown)


def claim(delivery_ids: Sequence[str], now: datetime) -> list[Delivery]:
    claimed = claim_due(Delivery, list(delivery_ids), {Delivery.Status.PENDING}, now,
                        fill_to=settings.WEBHOOK_SEND_CHUNK)
    if not claimed:
        return []
    return list(
        Delivery.objects.filter(id__in=claimed)
        .select_related("subscription", "event__message__channel")
        # What a payload needs; a message's content can be large.
        .defer("event__message__content", "event__message__sender", "event__message__receiver")
        .order_by("event__message_id", "event__sequence")
    )
