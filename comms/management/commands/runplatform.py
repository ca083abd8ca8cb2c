import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from comms.accounts import DEMO_NAME, demo_bootstrap


class Command(BaseCommand):
    help = (
        "Migrate, create the demo application and channel on an empty database, then run "
        "web, worker and beat from the Procfile (honcho) until interrupted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="set up, then exit")

    def handle(self, *args, port, no_serve, **options):
        call_command("migrate", interactive=False, verbosity=0)
        raw_key = demo_bootstrap()
        base = f"http://localhost:{port}"
        if raw_key:
            self.stdout.write(f"Created the '{DEMO_NAME}' application and simulator channel.")
            self.stdout.write(f"API key: {raw_key}")
        else:
            raw_key = "<your api key>"
            self.stdout.write(
                "The database has applications already; its keys were shown when they were "
                "made. A new one: python manage.py createapp NAME [--admin]"
            )
        self.stdout.write(
            "Send a message:\n"
            f"  curl -s -X POST {base}/api/v1/messages -H 'Authorization: Bearer {raw_key}' "
            "-H 'Content-Type: application/json' "
            f"-d '{{\"channel\": \"{DEMO_NAME}\", \"receiver\": \"+447700900123\", "
            "\"content\": {\"text\": \"Hello from Relay\"}}'\n"
            f"Then: curl -s {base}/api/v1/messages/<id> -H 'Authorization: Bearer {raw_key}'\n"
            f"Docs: {base}/api/docs/  Health: {base}/healthz"
        )
        self.stdout.flush()
        if no_serve:
            return
        os.chdir(settings.BASE_DIR)
        # The Procfile names gunicorn and celery: find them beside this interpreter.
        bin_dir = os.path.dirname(sys.executable)
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        os.execvp(
            sys.executable,
            [sys.executable, "-m", "honcho", "start", "--port", str(port), "web", "worker", "beat"],
        )
