"""Refuse webhook URLs that reach into private networks (SSRF), at create and at send time."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class RefusedURL(ValueError):
    pass


def check_url(url: str) -> list[str]:
    """Raise RefusedURL unless every address the host resolves to is public; return those
    addresses, to connect to in order (none when private networks are allowed: any will do).

    Checked again before each send, since DNS can change after the subscription was made,
    and the send connects to the address checked here rather than resolving the name again
    (a name that rebinds between the two would otherwise reach the private address).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedURL("the URL must be http(s) with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RefusedURL(f"the URL's port is not a valid port ({exc})") from exc
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return []
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedURL(f"the host {parts.hostname!r} does not resolve") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not address.is_global or address.is_multicast:
            raise RefusedURL(
                f"the host {parts.hostname!r} resolves to a non-public address ({address})"
            )
    if not addresses:
        raise RefusedURL(f"the host {parts.hostname!r} does not resolve")
    return list(dict.fromkeys(str(a) for a in addresses))
