import json as jsonlib
import os
import platform
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection
from django.db.migrations.executor import MigrationExecutor

from comms.bench.runner import Bench
from comms.outages import describe

ROWS = [
    ("celery_noop_tasks_per_s", "bare no-op Celery tasks / s (reference)"),
    ("ingest_batch_messages_per_s", "messages accepted / s, batches of 1,000"),
    ("ceiling_requests_per_s", "minimal DRF insert view (ceiling) / s"),
    ("ingest_single_requests_per_s", "single POST /messages / s"),
    ("single_post_ceiling_ratio", "single POST / ceiling (goal ≥ 0.6)"),
    ("lifecycle_messages_per_s", "messages accept → DELIVERED, 3 webhooks each / s"),
    ("webhooks_per_s", "signed webhooks received / s"),
    ("ratio_lifecycle_to_noop", "lifecycle / noop (goal ≥ 0.5)"),
    ("worker_rss_mb", "peak worker RSS, MiB (goal < 150)"),
]


def check_database_ready() -> None:
    """A clear error, not a traceback from the middle of a run, when the database is out of
    reach or not migrated."""
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except OperationalError as exc:
        raise CommandError(f"cannot reach the database ({describe(exc)}): check DATABASE_URL") from None
    if pending:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in pending[:3])
        raise CommandError(
            f"the database has {len(pending)} unapplied migration(s) ({names}{', ...' if len(pending) > 3 else ''}): "
            "run `python manage.py migrate` (or `release`) first")


class Command(BaseCommand):
    help = "Measure Relay end to end on the configured database and broker (see README, Performance)."

    def add_arguments(self, parser):
        parser.add_argument("--messages", type=int, default=2000)
        parser.add_argument("--clients", type=int, default=8, help="concurrent clients for single POSTs")
        parser.add_argument("--noop-tasks", type=int, default=2000)
        parser.add_argument("--json", type=Path, help="write the results here")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, messages, clients, noop_tasks, json: Path | None, no_progress, **options):
        if messages < 1:
            raise CommandError("--messages must be at least 1")
        check_database_ready()
        bench = Bench(messages=messages, clients=clients, noop_tasks=noop_tasks, progress=not no_progress)
        results = bench.run()
        results["machine"] = {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "database": connection.vendor, "broker": settings.CELERY_BROKER_URL.split(":")[0],
        }
        self._table(results)
        if json:
            json.write_text(jsonlib.dumps(results, indent=2))
            self.stdout.write(f"wrote {json}")
        if not results["ok"]:
            raise CommandError("the pipeline is broken: " + "; ".join(results["problems"]))

    def _table(self, results):
        self.stdout.write(f"\nRelay benchmark: {results['messages']} messages")
        for key, label in ROWS:
            self.stdout.write(f"  {label:<52} {results.get(key)}")
        latency = results.get("latency_ms", {})
        self.stdout.write(f"  {'latency accept → DELIVERED webhook, ms (p50/p95/p99)':<52} "
                          f"{latency.get('p50')} / {latency.get('p95')} / {latency.get('p99')}"
                          "  (goal p99 < 150)")
