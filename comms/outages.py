"""A lost database or broker: an outage to wait out, not a bug to report.

The API answers it 503 (api/middleware.py); a task that meets it is retried later with one
warning line instead of a traceback per task. A ProgrammingError or an IntegrityError is a
bug or bad data and is never taken for an outage.
"""

import logging
from collections.abc import Callable

from celery import Task
from django.db import InterfaceError, OperationalError, transaction
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

OUTAGES = (OperationalError, InterfaceError, KombuOperationalError, RedisConnectionError, ConnectionError)
FIRST_RETRY_SECONDS = 5
LONGEST_RETRY_SECONDS = 60
# 5, 10, 20, 40, then every 60 s: about 18 minutes in all. Work a task gives up stays due in
# the database, where the sweeper finds it.
MAX_RETRIES = 20


def describe(exc: BaseException) -> str:
    """The exception in one line: its type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def after_commit(publish: Callable[[], None]) -> None:
    """Run `publish` once the transaction commits. An outage it meets there (the broker gone,
    or the database gone right after the commit) is one warning line: the rows are committed,
    so the sweeper publishes their work. Anything else is logged with its traceback, as
    Django's robust on_commit does, without failing the request or task that committed."""

    def run() -> None:
        try:
            publish()
        except OUTAGES as exc:
            log.warning("publishing after commit met an outage (%s); the sweeper picks the work up",
                        describe(exc))

    transaction.on_commit(run, robust=True)


class OutageTolerantTask(Task):
    """A task that meets an outage is retried with a doubling countdown, logged as one warning.
    With `retry_on_outage = False` (periodic sweeps, which beat runs again anyway) it is
    only logged. If the broker cannot take the retry either, the work waits in the database."""

    abstract = True
    retry_on_outage = True

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except OUTAGES as exc:
            return self._ride_out(exc)

    def _ride_out(self, exc: BaseException):
        retries = self.request.retries or 0
        if not self.retry_on_outage or self.request.called_directly:
            log.warning("%s met an outage (%s); the next run picks its work up", self.name, describe(exc))
            return None
        if retries >= MAX_RETRIES:
            log.error("%s met an outage %d times (%s); its work waits for the sweeper",
                      self.name, retries + 1, describe(exc))
            return None
        countdown = min(FIRST_RETRY_SECONDS * 2 ** retries, LONGEST_RETRY_SECONDS)
        log.warning("%s met an outage (%s); retry %d in %d s", self.name, describe(exc), retries + 1, countdown)
        try:
            raise self.retry(countdown=countdown, max_retries=MAX_RETRIES)
        except OUTAGES as publish_exc:
            log.warning("%s could not be queued again (%s); its work waits for the sweeper",
                        self.name, describe(publish_exc))
            return None
