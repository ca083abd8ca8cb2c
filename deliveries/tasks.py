from celery import shared_task

from . import sending, sweeper


@shared_task(name="deliveries.send_deliveries")
def send_deliveries(delivery_ids: list[str]) -> None:
    sending.send_deliveries(delivery_ids)


@shared_task(name="deliveries.sweep")
def sweep() -> None:
    sweeper.sweep_due_deliveries()
