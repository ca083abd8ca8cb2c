"""Applications, their keys, and channels: the bootstrap services."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from .lookups import api_key_by_prefix
from .models import ApiKey, Application, Channel
from .providers import provider_class


@transaction.atomic
def application_create(*, name: str, is_admin: bool = False) -> tuple[Application, str]:
    """Create an application and its first key; the raw key is returned once, never stored."""
    application = Application.objects.create(name=name, is_admin=is_admin)
    _, raw_key = ApiKey.issue(application)
    return application, raw_key


def application_for_key(raw_key: str) -> Application | None:
    parts = raw_key.split("_")
    if len(parts) < 3:
        return None
    key = api_key_by_prefix(parts[1])  # cached per process for a few seconds (comms.lookups)
    if key is None or not key.matches(raw_key):
        return None
    return key.application


def channel_upsert(*, name: str, type: str | None = None, config: dict | None = None,
                   max_attempts: int | None = None, retry_delay: float | None = None,
                   rate_limit: float | None = None, enabled: bool | None = None) -> tuple[Channel, bool]:
    """Create a channel, or update the given fields of an existing one (a rate_limit of 0
    removes the channel's limit). Raises ConfigError."""
    try:
        validate_slug(name)  # it travels in URLs: /channels/<name>, /receipts/<name>
    except ValidationError as exc:
        raise ValueError(f"channel name {name!r}: letters, digits, '-' and '_' only") from exc
    channel = Channel.objects.filter(name=name).first()
    created = channel is None
    previous_config = None if created else channel.config
    if created:
        if not type:
            raise ValueError("a new channel needs a type")
        channel = Channel(name=name, type=type)
    if type:
        channel.type = type
    if config is not None:
        channel.config = config
    channel.config = provider_class(channel.type).configure(channel.config, previous_config)
    if max_attempts is not None:
        if max_attempts < 1:
            raise ValueError("max attempts must be at least 1")
        channel.max_attempts = max_attempts
    if retry_delay is not None:
        if retry_delay < 0:
            raise ValueError("retry delay must be ≥ 0")
        channel.retry_delay = retry_delay
    if rate_limit is not None:
        if rate_limit < 0:
            raise ValueError("rate limit must be ≥ 0 (0: no limit)")
        channel.rate_limit = rate_limit or None
    if enabled is not None:
        channel.enabled = enabled
    channel.save()
    return channel, created


DEMO_NAME = "demo"


def demo_bootstrap() -> str | None:
    """On an empty database: a demo application (not an admin: it sends and subscribes, but
    cannot change channels) and a simulator channel. Returns the new key."""
    if Application.objects.exists():
        return None
    channel_upsert(name=DEMO_NAME, type="simulator", max_attempts=3, retry_delay=2)
    _, raw_key = application_create(name=DEMO_NAME)
    return raw_key


def admin_application_create() -> tuple[Application, str]:
    """A new admin application (it may manage channels), named admin, admin-2, ..."""
    taken = set(Application.objects.filter(name__startswith="admin").values_list("name", flat=True))
    name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, len(taken) + 3))) if n not in taken)
    return application_create(name=name, is_admin=True)
