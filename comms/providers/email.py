"""Email, sent with Django's email framework (`EmailMultiAlternatives`): over SMTP, or through
any ESP django-anymail ships (see esp).

One connection per channel and task, opened on the first message and reused for the rest.
Over SMTP the server's acceptance is SENT; with no receipt to come, DELIVERED follows at once
unless `acceptedIsDelivered` is false, and replies map by table: 5xx is permanent, 4xx and
lost connections are temporary. Through an ESP, its message id is the reference and its
tracking webhooks bring the rest. Relay's message id travels in `X-Relay-Message-Id` (and over
SMTP in the Message-ID), so an operator can trace a bounce back to its message.
"""

import smtplib
import ssl
from collections.abc import Iterable

from anymail.exceptions import AnymailError
from django.core.mail import EmailMultiAlternatives, get_connection

from ..status import ErrorCode
from .addressing import email_address_errors, email_size_errors, merged
from .base import ConfigError, LocalReceipts, Provider, ProviderError, ReceiptEvent, ReceiptRefused, Sent
from .esp import clean_config as esp_clean_config
from .esp import connection as esp_connection
from .esp import error_for as esp_error_for
from .esp import parse_receipt as esp_parse_receipt
from .esp import receipt_payloads as esp_receipt_payloads
from .esp import reference as esp_reference

SECURITY_PORTS = {"starttls": 587, "ssl": 465, "none": 25}

# (SMTP stage, reply class) -> (our code, permanent). A refused recipient is the receiver's
# problem; a refused sender or message is the channel's verdict on this message; anything
# else (greeting, TLS, login) is the channel's own trouble, retried until an operator mends it.
REPLIES = {
    ("rcpt", 5): (ErrorCode.INVALID_RECEIVER, True),
    ("rcpt", 4): (ErrorCode.RECEIVER_UNREACHABLE, False),
    ("mail", 5): (ErrorCode.REJECTED_BY_CHANNEL, True),
    ("data", 5): (ErrorCode.REJECTED_BY_CHANNEL, True),
}
STAGES = [(smtplib.SMTPRecipientsRefused, "rcpt"), (smtplib.SMTPSenderRefused, "mail"),
          (smtplib.SMTPDataError, "data")]
# Failures with no reply at all, most specific first: all temporary.
TRANSPORT = [
    (TimeoutError, ErrorCode.CHANNEL_TIMEOUT),
    (ssl.SSLError, ErrorCode.CHANNEL_UNAVAILABLE),
    (smtplib.SMTPNotSupportedError, ErrorCode.CHANNEL_UNAVAILABLE),  # e.g. no STARTTLS offered
    (OSError, ErrorCode.CHANNEL_UNAVAILABLE),  # refused, reset, disconnected (SMTPException is one)
]


def error_for(exc: Exception) -> ProviderError:
    """Our verdict on an SMTP failure, by table."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, reply = exc.smtp_code, exc.smtp_error
    else:
        kind = next(kind for cls, kind in TRANSPORT if isinstance(exc, cls))
        return ProviderError(kind, f"SMTP: {exc}"[:300], raw_code=type(exc).__name__)
    stage = next((name for cls, name in STAGES if isinstance(exc, cls)), "other")
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    default = (ErrorCode.CHANNEL_UNAVAILABLE, False)
    kind, permanent = REPLIES.get((stage, code // 100), default)
    return ProviderError(kind, f"SMTP {code} {text}"[:300], permanent=permanent, raw_code=f"smtp {code}")


class EmailProvider(Provider):
    type = "email"
    SECRET_KEYS = ("password", "webhookSecret", "credentials.*")

    @classmethod
    def message_errors(cls, config, *, receiver, sender, content):
        return merged(
            email_address_errors("receiver", receiver),
            email_address_errors("sender", sender, display_name=True) if sender else {},
            email_size_errors(content),
        )

    @classmethod
    def clean_config(cls, config: dict, previous: dict | None = None) -> dict:
        config = dict(super().clean_config(config))
        if not isinstance(config.get("backend"), str) or not config["backend"]:
            raise ConfigError("backend is required: smtp, or an ESP's Anymail name (postmark, sendgrid, ...)")
        if not isinstance(config.get("from"), str) or "@" not in config["from"]:
            raise ConfigError("from is required: an email address")
        if config["backend"] != "smtp":
            return esp_clean_config(config)
        for key in ("host", "from"):
            if not isinstance(config.get(key), str) or not config[key].strip():
                raise ConfigError(f"{key} is required: a non-empty string")
        if "@" not in config["from"]:
            raise ConfigError("from must be an email address")
        security = config.setdefault("security", "starttls")
        if security not in SECURITY_PORTS:
            raise ConfigError(f"security must be one of {sorted(SECURITY_PORTS)}")
        port = config.setdefault("port", SECURITY_PORTS[security])
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError("port must be a whole number from 1 to 65535")
        timeout = config.setdefault("timeout", 30)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 300:
            raise ConfigError("timeout must be a number of seconds, above 0 and at most 300")
        for key in ("username", "password"):
            if key in config and not isinstance(config[key], str):
                raise ConfigError(f"{key} must be a string")
        if not isinstance(config.setdefault("acceptedIsDelivered", True), bool):
            raise ConfigError("acceptedIsDelivered must be true or false")
        unknown = set(config) - {"backend", "host", "port", "security", "username", "password", "timeout",
                                 "from", "acceptedIsDelivered"}
        if unknown:
            raise ConfigError(f"unknown SMTP settings: {sorted(unknown)}")
        return config

    def __init__(self, channel):
        super().__init__(channel)
        self._connection = None

    @property
    def _smtp(self) -> bool:
        return self.channel.config.get("backend") == "smtp"

    def _open(self):
        if self._connection is None and not self._smtp:
            self._connection = esp_connection(self.channel.config)
        if self._connection is None:
            config = self.channel.config
            self._connection = get_connection(
                "django.core.mail.backends.smtp.EmailBackend", fail_silently=False,
                host=config["host"], port=config["port"], timeout=config["timeout"],
                username=config.get("username") or None, password=config.get("password") or None,
                use_tls=config["security"] == "starttls", use_ssl=config["security"] == "ssl",
            )
            self._connection.open()
        return self._connection

    def send(self, message, *, attempt: int) -> str:
        content = message.content or {}
        sender = message.sender or self.channel.config["from"]
        headers = {"X-Relay-Message-Id": message.id}
        if self._smtp:
            headers["Message-ID"] = f"<{message.id}.{attempt}@{sender.rpartition('@')[2].strip('> ')}>"
        email = EmailMultiAlternatives(
            subject=content.get("subject", ""), body=content.get("text", ""), from_email=sender,
            to=[message.receiver], headers=headers,
        )
        if content.get("html"):
            email.attach_alternative(content["html"], "text/html")
        try:
            self._open().send_messages([email])
        except AnymailError as exc:
            raise esp_error_for(exc) from exc
        except OSError as exc:  # smtplib.SMTPException and TimeoutError are OSErrors
            self.close()  # whatever state it was left in, the next message starts afresh
            raise error_for(exc) from exc
        return headers["Message-ID"] if self._smtp else esp_reference(email)

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.close()
            except (smtplib.SMTPException, OSError):
                pass

    # --- no receipt comes from an SMTP server: acceptance is delivery, when so configured ---

    def receipts_after_sent(self, sent: list[Sent]) -> LocalReceipts | None:
        if not self._smtp or not self.channel.config.get("acceptedIsDelivered", True):
            return None
        return LocalReceipts([{"messageId": item.message.id, "attempt": item.attempt, "event": "accepted"}
                              for item in sent])

    def receipt_timeout(self, message) -> float | None:
        # If the DELIVERED that follows acceptance was lost (a flushed broker), say it again.
        return 30.0 if self._smtp and self.channel.config.get("acceptedIsDelivered", True) else None

    def poll(self, messages: Iterable) -> LocalReceipts | None:
        return self.receipts_after_sent([Sent(m, m.attempts, m.provider_ref) for m in messages])

    def receipt_payloads(self, request) -> list[dict]:
        if self._smtp:
            raise ReceiptRefused  # an SMTP channel takes no receipts from outside
        return esp_receipt_payloads(self.channel.config, request)

    def parse_receipt(self, payload: dict) -> list[ReceiptEvent]:
        if not self._smtp:
            return esp_parse_receipt(payload)
        try:
            message_id, attempt = str(payload["messageId"]), int(payload["attempt"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed email receipt: {exc}") from exc
        if payload.get("event") != "accepted" or attempt < 1:
            raise ValueError(f"malformed email receipt: {payload}")
        return [ReceiptEvent(kind="DELIVERED", message_id=message_id, attempt=attempt)]
