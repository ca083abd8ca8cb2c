"""The worker's Celery settings that the reliability and speed of tasks depend on."""

from celery.fixups.django import DjangoWorkerFixup

from config.celery import app


def test_workers_keep_database_connections_across_tasks():
    # Without CELERY_DB_REUSE_MAX, Celery's Django fixup closes every connection around every
    # task: a new PostgreSQL connection (and server process) per task.
    assert DjangoWorkerFixup(app).db_reuse_max >= 1000


def test_late_acks_and_lost_worker_rejection_keep_tasks_of_a_killed_worker():
    assert (app.conf.task_acks_late, app.conf.task_reject_on_worker_lost) == (True, True)
    assert app.conf.worker_prefetch_multiplier == 1
