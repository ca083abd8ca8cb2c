import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from comms.accounts import DEMO_NAME, admin_application_create, demo_bootstrap
from comms.supervisor import Supervisor


def bind_address(given: str | None) -> str:
    """Where the web process listens: loopback while DEBUG is on (the debug pages and the demo
    key must not reach the network) unless an address is given, everywhere otherwise."""
    return given or ("127.0.0.1" if settings.DEBUG else "0.0.0.0")


class Command(BaseCommand):
    help = (
        "Migrate, create the demo application and channel on an empty database, then run "
        "web, worker and beat from the Procfile until interrupted, restarting any that dies."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="set up, then exit")
        parser.add_argument("--admin-key", action="store_true",
                            help="also create an admin application (it may manage channels) and print its key")
        parser.add_argument("--bind", help="the address web listens on (default: 127.0.0.1 with DEBUG on)")

    def handle(self, *args, port, no_serve, admin_key=False, bind=None, **options):
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
        if admin_key:
            admin, raw_admin_key = admin_application_create()
            self.stdout.write(f"Admin application '{admin.name}' (may manage channels).")
            self.stdout.write(f"Admin API key: {raw_admin_key}")
        self.stdout.flush()
        if no_serve:
            return
        # The Procfile names gunicorn and celery: find them beside this interpreter.
        bin_dir = os.path.dirname(sys.executable)
        env = {**os.environ, "BIND": bind_address(bind), "PORT": str(port),
               "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
        supervisor = Supervisor(Path(settings.BASE_DIR) / "Procfile", ["web", "worker", "beat"], env,
                                out=self.stdout)
        supervisor.run()
