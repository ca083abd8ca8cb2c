import secrets
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from console import rollup, seeding


class Command(BaseCommand):
    help = ("Fill the database (PostgreSQL) with a day of message history: messages spread over the "
            "last 24 hours, their events, webhook deliveries and attempts; then roll the console up.")

    def add_arguments(self, parser):
        parser.add_argument("--messages", type=int, default=100_000)

    def handle(self, *args, messages: int, **options):
        if connection.vendor != "postgresql":
            raise CommandError("seedhistory needs PostgreSQL (it generates rows with generate_series)")
        if messages < 1:
            raise CommandError("--messages must be at least 1")
        now, started = timezone.now(), time.monotonic()
        with transaction.atomic():
            made = seeding.seed(messages, now, secrets.token_hex(4))
        seeding.vacuum()
        self.stdout.write(", ".join(f"{n:,} {name}" for name, n in made.items())
                          + f" in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        rollup.refresh(timezone.now(), since=rollup.kept_since(now))
        self.stdout.write(f"rollup refreshed in {time.monotonic() - started:.1f} s")
