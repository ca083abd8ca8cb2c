"""Per-process caches of the two lookups every API request makes: an API key by its public
prefix (with its application), and a channel by its name.

Each was a query per request, a third of a single POST's time (issue 12). An entry lives
RELAY_LOOKUP_CACHE_SECONDS (default 5; 0 turns the caches off). A change saved through the
ORM (a key revoked, an application or a channel changed, disabled or deleted) empties the
caches of the process that saved it at once, and again when its transaction commits, so
no request of that process sees the old row afterwards; other processes (the other
gunicorn workers, other machines) see it once their entry expires, within the TTL. A
`QuerySet.update()` sends no signal: it too is seen within the TTL.

Only rows that exist are cached: an unknown key or channel is looked up every time, so
garbage cannot fill the cache. Callers get a copy of the cached instance, never the shared
one, so nothing a request sets on it leaks into the next.
"""

import copy
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .models import ApiKey, Application, Channel

MAX_ENTRIES = 10_000  # past this, an entry evicts everything: rows, not requests, fill it


def ttl_seconds() -> float:
    return settings.RELAY_LOOKUP_CACHE_SECONDS


class TtlCache:
    """A dict whose entries expire; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, value: Any, ttl: float) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (self.clock() + ttl, value)

    def clear(self) -> None:
        self._entries.clear()


keys = TtlCache()
channels = TtlCache()


def api_key_by_prefix(prefix: str) -> ApiKey | None:
    """The unrevoked key with this prefix, its application loaded; None if there is none.
    The caller still checks the secret part (ApiKey.matches)."""
    ttl = ttl_seconds()
    key = keys.get(prefix) if ttl > 0 else None
    if key is None:
        key = ApiKey.objects.select_related("application").filter(prefix=prefix, revoked_at__isnull=True).first()
        if key is None:
            return None
        if ttl > 0:
            keys.put(prefix, key, ttl)
    return _copy_key(key)


def channel_by_name(name: str) -> Channel | None:
    ttl = ttl_seconds()
    channel = channels.get(name) if ttl > 0 else None
    if channel is None:
        channel = Channel.objects.filter(name=name).first()
        if channel is None:
            return None
        if ttl > 0:
            channels.put(name, channel, ttl)
    return copy.copy(channel)


def _copy_key(key: ApiKey) -> ApiKey:
    # A model's copy has its own state and related-object cache: copy the application too.
    copied = copy.copy(key)
    copied.application = copy.copy(key.application)
    return copied


def forget_all(*, using: str = "default", **_: Any) -> None:
    """Empty both caches now and again once the current transaction commits (a request of
    this process in between could cache the row as it was before the commit)."""
    _clear_both()
    transaction.on_commit(_clear_both, using=using)


def _clear_both() -> None:
    keys.clear()
    channels.clear()


for _model in (ApiKey, Application, Channel):
    post_save.connect(forget_all, sender=_model, dispatch_uid=f"lookups-{_model.__name__}-save")
    post_delete.connect(forget_all, sender=_model, dispatch_uid=f"lookups-{_model.__name__}-delete")
