from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from comms.accounts import application_create


class Command(BaseCommand):
    help = "Create an application and print its API key alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--admin", action="store_true", help="may manage channels")

    def handle(self, *args, name, admin, **options):
        try:
            application, raw_key = application_create(name=name, is_admin=admin)
        except IntegrityError as exc:
            raise CommandError(f"an application named {name!r} exists already") from exc
        kind = "admin application" if admin else "application"
        self.stdout.write(f"Created {kind} {application.name!r}. Its API key (shown once):")
        self.stdout.write(raw_key)
