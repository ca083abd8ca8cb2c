import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("relay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Celery's Django fixup closes every database connection before and after every task unless
# CELERY_DB_REUSE_MAX is set: a new PostgreSQL connection (and server process) per task,
# the largest single cost of a short task. Reuse them instead, under Django's own rule
# (CONN_MAX_AGE, CONN_HEALTH_CHECKS) applied around each task as around each web request;
# the fixup still recycles them every this many tasks.
app.conf["CELERY_DB_REUSE_MAX"] = 10_000


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_db_connections(**kwargs) -> None:
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_process_shutdown.connect
def _metrics_process_dead(pid=None, **kwargs) -> None:
    # Sent in the pool process that exits. Imported here: this module loads before the apps.
    from comms import metrics

    metrics.process_dead(pid or os.getpid())
