"""Email through an ESP, with django-anymail: its backend sends, its tracking view reads the
ESP's webhooks. Nothing here parses an ESP's payloads or checks its signatures; Anymail does,
and its normalized events are mapped onto ours by table.

Settings are per channel, never global: the channel's `credentials` (the ESP's Anymail
settings, e.g. `{"server_token": ...}` for Postmark or `{"api_key": ...}` for SendGrid) and
`apiBaseUrl` go to the backend as keyword arguments, and `webhookSecret` (Anymail's basic-auth
"user:password") with the credentials to the tracking view, so two channels can use two
accounts of one ESP.
"""

import importlib
from functools import cache

from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailWebhookValidationFailure,
)
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend

from ..headers import retry_after_seconds
from ..status import ErrorCode
from .base import ConfigError, ProviderError, ReceiptEvent, ReceiptRefused

# Anymail's event types -> our receipt kinds; everything else (queued, sent, deferred,
# complained, unsubscribed, ...) is recorded on the receipt and changes nothing.
EVENTS = {"delivered": "DELIVERED", "bounced": "FAILED", "rejected": "FAILED", "failed": "FAILED",
          "opened": "READ", "clicked": "INTERACTED"}
# Anymail's reject reasons -> our error codes; an ESP's failure is final (it has retried).
REJECTS = {"invalid": ErrorCode.INVALID_RECEIVER, "bounced": ErrorCode.RECEIVER_UNREACHABLE,
           "timed_out": ErrorCode.RECEIVER_UNREACHABLE, "blocked": ErrorCode.REJECTED_BY_CHANNEL,
           "spam": ErrorCode.CONTENT_REJECTED, "unsubscribed": ErrorCode.REJECTED_BY_CHANNEL}
# The event fields a receipt keeps (Anymail's name -> ours).
FIELDS = {"event_type": "event", "message_id": "messageRef", "recipient": "recipient",
          "reject_reason": "rejectReason", "description": "description", "mta_response": "mtaResponse",
          "user_agent": "userAgent", "click_url": "clickUrl"}


@cache
def tracking_view(esp: str) -> type | None:
    """Anymail's tracking webhook view for this ESP, or None if Anymail has no such ESP."""
    try:
        module = importlib.import_module(f"anymail.webhooks.{esp}")
    except ImportError:
        return None
    views = sorted(name for name in dir(module) if name.endswith("TrackingWebhookView"))
    return getattr(module, views[0]) if views and esp != "base" else None


def clean_config(config: dict) -> dict:
    esp = config["backend"]
    if tracking_view(esp) is None or importlib.util.find_spec(f"anymail.backends.{esp}") is None:
        raise ConfigError(f"backend {esp!r} is neither smtp nor an ESP django-anymail ships")
    credentials = config.setdefault("credentials", {})
    if not isinstance(credentials, dict) or not all(isinstance(v, str | int | bool) for v in credentials.values()):
        raise ConfigError("credentials must be an object of the ESP's Anymail settings (strings)")
    for key in ("webhookSecret", "apiBaseUrl"):
        if key in config and not isinstance(config[key], str):
            raise ConfigError(f"{key} must be a string")
    unknown = set(config) - {"backend", "from", "credentials", "webhookSecret", "apiBaseUrl"}
    if unknown:
        raise ConfigError(f"unknown settings for an ESP channel: {sorted(unknown)}")
    return config


def _settings(config: dict) -> dict:
    return {key.lower(): value for key, value in config.get("credentials", {}).items()}


def connection(config: dict) -> BaseEmailBackend:
    options = _settings(config)
    if config.get("apiBaseUrl"):
        options["api_url"] = config["apiBaseUrl"]
    try:
        return get_connection(f"anymail.backends.{config['backend']}.EmailBackend", fail_silently=False, **options)
    except AnymailConfigurationError as exc:
        raise ConfigError(str(exc)) from exc


def reference(email) -> str:
    """The ESP's id for a message Anymail handed over; a ProviderError when the ESP refused
    its recipient or gave no id (never a SENT without a reference)."""
    statuses = email.anymail_status.status or set()
    if statuses and statuses <= {"invalid", "rejected"}:
        raise refused(statuses)
    if not email.anymail_status.message_id:
        raise ProviderError(ErrorCode.CHANNEL_UNKNOWN_ERROR, "The ESP gave no message id",
                            raw_code=f"anymail {','.join(sorted(statuses))}")
    return str(email.anymail_status.message_id)


def refused(statuses: set[str]) -> ProviderError:
    """An invalid address is the receiver's; a rejected one, the ESP's suppression list."""
    kind = ErrorCode.INVALID_RECEIVER if "invalid" in statuses else ErrorCode.REJECTED_BY_CHANNEL
    return ProviderError(kind, f"The ESP refused the recipient ({', '.join(sorted(statuses))})",
                         permanent=True, raw_code=f"anymail {','.join(sorted(statuses))}")


def error_for(exc: AnymailError) -> ProviderError:
    """Our verdict on a failed send, by what Anymail reports of it."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, AnymailRecipientsRefused):
        message = getattr(exc, "email_message", None)
        return refused(getattr(getattr(message, "anymail_status", None), "status", None) or {"rejected"})
    if isinstance(exc, AnymailInvalidAddress):
        kind, permanent = ErrorCode.INVALID_RECEIVER, True
    elif status == 429:
        kind, permanent = ErrorCode.RATE_LIMITED, False
    elif status in (401, 403) or isinstance(exc, AnymailConfigurationError):
        kind, permanent = ErrorCode.CHANNEL_UNAVAILABLE, False  # the channel's credentials
    elif isinstance(exc, AnymailAPIError) and status is not None and 400 <= status < 500:
        kind, permanent = ErrorCode.REJECTED_BY_CHANNEL, True
    else:
        kind, permanent = ErrorCode.CHANNEL_UNAVAILABLE, False  # the ESP's trouble, or the network
    raw = f"http {status}" if status else type(exc).__name__
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}  # requests' (not every ESP's SDK)
    asked = retry_after_seconds(headers.get("Retry-After"))
    return ProviderError(kind, str(exc).splitlines()[0][:300] if str(exc) else "", permanent=permanent, raw_code=raw,
                         retry_after=asked)


def receipt_payloads(config: dict, request) -> list[dict]:
    """The ESP's webhook, verified and parsed by Anymail's own view for it, as receipts.
    Where basic auth is the ESP's only security, a channel without `webhookSecret` takes none."""
    view_class = tracking_view(config["backend"])
    if view_class.warn_if_no_basic_auth and not config.get("webhookSecret"):
        raise ReceiptRefused
    view = view_class(webhook_secret=config.get("webhookSecret") or [], **_settings(config))
    try:
        view.run_validators(request)
    except AnymailWebhookValidationFailure as exc:
        raise ReceiptRefused from exc
    try:
        events = view.parse_events(request)
    except (KeyError, TypeError, AttributeError, AnymailError) as exc:
        raise ValueError(f"the {config['backend']} webhook cannot be read: {exc}") from exc
    return [{ours: getattr(event, theirs) for theirs, ours in FIELDS.items()
             if getattr(event, theirs, None) not in (None, "")} for event in events]


def parse_receipt(payload: dict) -> list[ReceiptEvent]:
    if not payload.get("messageRef") or not payload.get("event"):
        raise ValueError("an ESP receipt names its event and the ESP's message id")
    kind = EVENTS.get(payload["event"], "NOTED")
    error = None
    if kind == "FAILED":
        reason = payload.get("rejectReason") or "other"
        error = ProviderError(REJECTS.get(reason, ErrorCode.CHANNEL_UNKNOWN_ERROR),
                              str(payload.get("description") or payload.get("mtaResponse") or "")[:300],
                              permanent=True, raw_code=f"{payload['event']}:{reason}")
    return [ReceiptEvent(
        kind=kind, provider_ref=str(payload["messageRef"]), error=error,
        env={"userAgent": payload["userAgent"]} if kind == "READ" and payload.get("userAgent") else None,
        link=str(payload.get("clickUrl") or "") if kind == "INTERACTED" else "",
    )]
