"""Write-only secrets in a channel's config: masked in every read, kept when an update omits
them (or sends back the mask it was shown), and shown in full once when Relay made them.

A provider names its secret keys as paths: "password", or "credentials.*" for every value of
a nested object (an ESP's API keys).
"""

from collections.abc import Collection

MASK = "••••"


def mask(value) -> str:
    """`••••1a2b`: enough to tell two secrets apart, never enough to use one."""
    text = str(value)
    return MASK + text[-4:] if len(text) >= 12 else MASK


def _locations(config: dict, paths: Collection[str]):
    """(container, key) of every secret present in `config`."""
    for path in paths:
        head, _, rest = path.partition(".")
        if rest == "*":
            nested = config.get(head)
            if isinstance(nested, dict):
                yield from ((nested, key) for key in nested)
        elif head in config:
            yield config, head


def _copy(config: dict, paths: Collection[str]) -> dict:
    """A copy deep enough that the secrets' containers are the copy's own."""
    copied = dict(config)
    for path in paths:
        head, _, rest = path.partition(".")
        if rest == "*" and isinstance(copied.get(head), dict):
            copied[head] = dict(copied[head])
    return copied


def masked(config: dict, paths: Collection[str], *, reveal: Collection[str] = ()) -> dict:
    """The config as it may be shown: each secret masked but those in `reveal`."""
    shown = _copy(config, paths)
    for container, key in _locations(shown, paths):
        if key not in reveal and container[key] not in (None, ""):
            container[key] = mask(container[key])
    return shown


def kept(config: dict, previous: dict | None, paths: Collection[str]) -> dict:
    """`config` with every secret it omits, or gives as its mask, taken from `previous`."""
    if not isinstance(config, dict) or not previous:
        return config
    merged = _copy(config, paths)
    for path in paths:
        head, _, rest = path.partition(".")
        if rest == "*":
            before = previous.get(head)
            if isinstance(before, dict) and head not in merged:
                merged[head] = dict(before)
            after = merged.get(head)
            if isinstance(before, dict) and isinstance(after, dict):
                for key, value in before.items():
                    if key not in after or after[key] == mask(value):
                        after[key] = value
        elif head in previous and (head not in merged or merged[head] == mask(previous[head])):
            merged[head] = previous[head]
    return merged


def generated(config: dict, previous: dict | None, cleaned: dict, paths: Collection[str]) -> set[str]:
    """Top-level secrets that Relay made for this config (neither given nor kept)."""
    given = config if isinstance(config, dict) else {}
    return {path for path in paths if "." not in path and path in cleaned
            and path not in given and path not in (previous or {})}
