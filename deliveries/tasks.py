from celery import shared_task

from comms.outages import OutageTolerantTask

from . import sending, sweeper


@shared_task(name="deliveries.send_deliveries", base=OutageTolerantTask)
def send_deliveries(delivery_ids: list[str], subscription_id: str | None = None) -> None:
    # Tasks published before deliveries were grouped by subscription carry no subscription id.
    sending.send_deliveries(delivery_ids, subscription_id=subscription_id)


@shared_task(name="deliveries.sweep", base=OutageTolerantTask, retry_on_outage=False)
def sweep() -> None:
    sweeper.sweep_due_deliveries()
