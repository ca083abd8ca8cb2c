"""What a channel provider is: a transport for attempts and a reader of receipts.

A provider class maps its own vocabulary onto ours with tables, not branches. Subclasses
implement `send`; those with receipts implement `parse_receipt`; the rest has defaults.
"""

import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import parse_qsl

from ..jsonstore import loads
from ..status import ErrorCode
from .secrets import kept, masked

if TYPE_CHECKING:
    from ..models import Channel, Message


RAW_CODE_MAX = 100  # MessageEvent.raw_code


class ProviderError(Exception):
    """An attempt failed. `permanent` failures are not retried. `retry_after`: the seconds
    the provider asked us to wait (a RATE_LIMITED answer's Retry-After), when it said."""

    def __init__(self, code: ErrorCode, message: str = "", *, permanent: bool = False,
                 raw_code: str = "", retry_after: float | None = None):
        super().__init__(message or code.label)
        self.retry_after = retry_after
        self.code = ErrorCode(code)
        self.message = message or self.code.label
        self.permanent = permanent
        self.raw_code = raw_code[:RAW_CODE_MAX]  # a provider's code is theirs: any length


class ConfigError(ValueError):
    """A channel's config does not fit its provider."""


class ReceiptRefused(Exception):
    """An inbound receipt request does not come from the channel's provider (401)."""


@dataclass(frozen=True)
class ReceiptEvent:
    """One thing a receipt says about one message.

    `kind` is DELIVERED, FAILED (with `error`), READ, INTERACTED or DELETED. The message is
    named by our id or by the provider's reference; `attempt`, when known, keeps a late
    receipt of an earlier attempt from touching a later one.
    """

    kind: str
    message_id: str = ""
    provider_ref: str = ""
    attempt: int | None = None
    error: ProviderError | None = None
    env: dict | None = None
    link: str = ""


@dataclass(frozen=True)
class Sent:
    message: "Message"
    attempt: int
    provider_ref: str


@dataclass(frozen=True)
class LocalReceipts:
    """Receipts a provider gives back itself, with no request from outside (the simulator's
    callbacks, an SMTP server's acceptance). The caller has them processed `delay` seconds
    from now, on the receipts queue, as if they had been posted to the channel's receipts URL."""

    payloads: list[dict]
    delay: float | None = None


class Provider:
    type: ClassVar[str]
    # Config keys that are write-only (see secrets): "password", or "credentials.*".
    SECRET_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, channel: "Channel"):
        self.channel = channel

    @classmethod
    def configure(cls, config: dict, previous: dict | None = None) -> dict:
        """What a create or update stores: the secrets it omits (or gives back masked)
        kept from `previous`, then validated by clean_config. Raises ConfigError."""
        return cls.clean_config(kept(config, previous, cls.SECRET_KEYS), previous)

    @classmethod
    def shown(cls, config: dict, *, reveal: Collection[str] = ()) -> dict:
        """The config as the API, the admin and commands may show it: secrets masked."""
        return masked(config, cls.SECRET_KEYS, reveal=reveal)

    @classmethod
    def clean_config(cls, config: dict, previous: dict | None = None) -> dict:
        """Validate a channel config, returning it normalised; raise ConfigError if wrong.
        `previous` is the channel's current config, when it is being replaced."""
        if not isinstance(config, dict):
            raise ConfigError("config must be a JSON object")
        return config

    @classmethod
    def message_errors(cls, config: dict, *, receiver: str, sender: str, content: dict) -> dict:
        """What in a message this channel cannot carry, keyed like the API's fields (see
        addressing); empty when it fits. Checked at acceptance."""
        return {}

    def send(self, message: "Message", *, attempt: int) -> str:
        """Hand one attempt to the provider and return its reference for it.

        `attempt` is stable across re-claims of the same attempt: pass it on as an
        idempotency key where the provider supports one. Raise ProviderError on failure.
        """
        raise NotImplementedError

    def receipts_after_sent(self, sent: list[Sent]) -> LocalReceipts | None:
        """Receipts this provider gives back itself for attempts whose SENT has committed."""
        return None

    def close(self) -> None:
        """Called when a task is done with this provider (a connection it kept, say)."""

    def receipt_timeout(self, message: "Message") -> float | None:
        """Seconds after SENT to ask `poll` about a message still waiting for a receipt
        (None: never)."""
        return None

    def poll(self, messages: Iterable["Message"]) -> LocalReceipts | None:
        """Ask the provider again about messages whose receipt is overdue; what it says
        now, if it can say it at once."""
        return None

    def receipt_payloads(self, request) -> list[dict]:
        """The receipts an inbound request to the channel's receipts URL carries.

        Raises ReceiptRefused unless it comes from this provider, ValueError if it cannot be
        read. By default the body is authenticated as a whole, and is one JSON (or, from
        providers that post forms, form-encoded) receipt; a provider whose own library reads
        its webhooks overrides this.
        """
        body = request.body
        if not self.authenticate_receipt(body, request.headers):
            raise ReceiptRefused
        if request.content_type == "application/x-www-form-urlencoded":  # Twilio's callbacks
            return [dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))]
        return [loads(body.decode("utf-8"))]

    def authenticate_receipt(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether an inbound receipt request really comes from this provider."""
        return False

    def split_receipt(self, payload: dict) -> list[dict]:
        """A bulk callback as the receipts it carries, each recorded, applied and (if it
        comes too early) retried on its own; by default a payload is one receipt."""
        return [payload]

    def parse_receipt(self, payload: dict) -> list[ReceiptEvent]:
        """Turn a receipt's payload into our events; raise ValueError if it is malformed."""
        raise ValueError(f"channel type {self.type} takes no receipts")


class HmacReceipts:
    """Receipts signed as `X-Relay-Signature: sha256=<hex HMAC-SHA256 of the body>`, keyed
    by the channel's `receiptSecret` (generated when the channel is configured)."""

    SIGNATURE_HEADER = "X-Relay-Signature"
    SECRET_KEYS = ("receiptSecret",)

    @staticmethod
    def with_receipt_secret(config: dict, previous: dict | None = None) -> dict:
        """A config without a receiptSecret keeps the channel's current one (a provider
        signing with it must not start failing because other settings changed), or gets
        a new one."""
        secret = config.get("receiptSecret")
        if secret is None:
            secret = (previous or {}).get("receiptSecret") or secrets.token_urlsafe(32)
            return {**config, "receiptSecret": secret}
        if not isinstance(secret, str) or len(secret) < 16:
            raise ConfigError("receiptSecret must be a string of at least 16 characters")
        return config

    @staticmethod
    def sign(secret: str, body: bytes) -> str:
        return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    def authenticate_receipt(self, body: bytes, headers: Mapping[str, str]) -> bool:
        secret = self.channel.config.get("receiptSecret")
        given = headers.get(self.SIGNATURE_HEADER, "")
        return bool(secret) and hmac.compare_digest(self.sign(secret, body), given)
