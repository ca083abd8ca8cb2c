"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

The official `standardwebhooks` library signs, so what we send is what its `verify` checks.
"""

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_header(signing_secrets: list[str], msg_id: str, timestamp: int, body: str) -> str:
    """One `v1,...` signature per secret, space-separated (two during a rotation window)."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(Webhook(s).sign(msg_id, when, body) for s in signing_secrets)


def masked(secret: str) -> str:
    return f"{secret[:10]}…" if secret else ""
