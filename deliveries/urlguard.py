"""Refuse webhook URLs that reach into private networks (SSRF), at create and at send time."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class RefusedURL(ValueError):
    pass


def check_url(url: str) -> None:
    """Raise RefusedURL unless every address the host resolves to is public.

    Checked again before each send: DNS can change after the subscription was made.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedURL("the URL must be http(s) with a host")
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedURL(f"the host {parts.hostname!r} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            raise RefusedURL(
                f"the host {parts.hostname!r} resolves to a non-public address ({address})"
            )
