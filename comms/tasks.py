"""Celery tasks: thin. They take ids and plain JSON, load, and call one service."""

import logging
import os

from celery import shared_task
from django.utils import timezone

from . import receipts, scheduling, sending, sweeper
from .models import Channel
from .outages import OutageTolerantTask

log = logging.getLogger(__name__)


@shared_task(name="comms.send_messages", base=OutageTolerantTask)
def send_messages(message_ids: list[str]) -> None:
    sending.send_attempts(message_ids)


@shared_task(name="comms.start_scheduled", base=OutageTolerantTask)
def start_scheduled(message_ids: list[str]) -> None:
    scheduling.start_due(message_ids, timezone.now())


@shared_task(name="comms.process_receipts", base=OutageTolerantTask)
def process_receipts(channel_name: str, payloads: list[dict], tries: int = 0) -> None:
    channel = Channel.objects.filter(name=channel_name).first()
    if channel is None:
        log.warning("%d receipt(s) for unknown channel %s dropped", len(payloads), channel_name)
        return
    receipts.receipts_process(channel=channel, payloads=payloads, tries=tries)


@shared_task(name="comms.tasks.sweep", base=OutageTolerantTask, retry_on_outage=False)
def sweep() -> None:
    sweeper.sweep_due_work()


@shared_task(name="comms.noop")
def noop(tally_path: str) -> None:
    """The benchmark's reference: a task that does next to nothing (one appended byte, so
    the benchmark can count what ran)."""
    fd = os.open(tally_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
