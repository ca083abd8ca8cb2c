import json

from django.core.management.base import BaseCommand, CommandError

from comms.accounts import channel_upsert
from comms.models import Channel
from comms.providers import provider_class
from comms.providers.secrets import generated


class Command(BaseCommand):
    help = "Create a channel, or update the given settings of an existing one."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--type", help="provider type, e.g. simulator (required to create)")
        parser.add_argument("--max-attempts", type=int)
        parser.add_argument("--retry-delay", type=float, help="seconds before the first retry")
        parser.add_argument("--rate-limit", type=float,
                            help="messages per second across all workers (0: no limit)")
        parser.add_argument("--config", help="provider settings as a JSON object")
        parser.add_argument("--disable", action="store_true")
        parser.add_argument("--enable", action="store_true")

    def handle(self, *args, **options):
        config = None
        if options["config"] is not None:
            try:
                config = json.loads(options["config"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--config is not valid JSON: {exc}") from exc
        enabled = True if options["enable"] else (False if options["disable"] else None)
        previous = Channel.objects.filter(name=options["name"]).values_list("config", flat=True).first()
        try:
            channel, created = channel_upsert(
                name=options["name"], type=options["type"], config=config,
                max_attempts=options["max_attempts"], retry_delay=options["retry_delay"],
                rate_limit=options["rate_limit"], enabled=enabled,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        provider = provider_class(channel.type)
        # Secrets are shown masked, but for one Relay has just made (the only time it is shown).
        made = generated(config or {}, previous, channel.config, provider.SECRET_KEYS)
        self.stdout.write(
            f"{'Created' if created else 'Updated'} channel {channel.name} ({channel.type}): "
            f"maxAttempts={channel.max_attempts} retryDelay={channel.retry_delay}s "
            f"rateLimit={f'{channel.rate_limit:g}/s' if channel.rate_limit else 'none'} "
            f"enabled={channel.enabled} config={json.dumps(provider.shown(channel.config, reveal=made), ensure_ascii=False)}"
        )
