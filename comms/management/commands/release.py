import os
import signal
import threading

from django.core.management import call_command
from django.core.management.base import BaseCommand


def in_release_phase() -> bool:
    """Platforms with a release phase (Heroku, Dokku) name its dyno `release.N`."""
    return os.environ.get("DYNO", "").startswith("release")


class Command(BaseCommand):
    help = (
        "Prepare a deploy: apply migrations and collect static files. With --hold it then "
        "idles until stopped, so a Procfile runner that stops everything when one process "
        "exits (honcho start) keeps the others running; a platform's release phase (DYNO="
        "release.N) still exits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--hold", action="store_true",
                            help="after the work, idle until SIGTERM or SIGINT (not in a release phase)")

    def handle(self, *args, hold, **options):
        call_command("migrate", interactive=False, verbosity=options["verbosity"])
        call_command("collectstatic", interactive=False, verbosity=0)
        self.stdout.write("release: migrations applied, static files collected")
        if not hold or in_release_phase():
            return
        self.stdout.write("release: done; idling so the other Procfile processes keep running")
        self.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
