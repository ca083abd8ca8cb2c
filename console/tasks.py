from celery import shared_task

from comms.outages import OutageTolerantTask

from . import rollup


# Beat runs it again soon anyway: an outage is only logged, not retried.
@shared_task(name="console.refresh_rollup", base=OutageTolerantTask, retry_on_outage=False, ignore_result=True)
def refresh_rollup() -> None:
    """Keep the console's rollup close to now, and drop what it no longer keeps."""
    rollup.refresh()
    rollup.prune()
