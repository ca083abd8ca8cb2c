"""gunicorn's settings for the web process (the Procfile's `web` line: `gunicorn -c python:config.gunicorn`, a module, so it is found from any working directory).

Django is set up in the master, before it forks its workers, so comms.metrics (and with it
prometheus_client, in multiprocess mode) is loaded once and every worker shares its directory.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from comms import metrics  # noqa: E402 (needs the apps set up)


def child_exit(server, worker) -> None:
    """A worker exited (recycled, crashed, killed): its live gauges go, its counters stay."""
    metrics.process_dead(worker.pid)
