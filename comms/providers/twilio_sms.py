"""SMS and WhatsApp through Twilio's official SDK.

Each message is created with a StatusCallback at the channel's receipts URL under
RELAY_PUBLIC_URL; callbacks are authenticated with the SDK's RequestValidator against that
public URL (never the request's Host, which a proxy rewrites). Twilio's statuses and error
codes map onto ours by table, at send time and in callbacks alike. `apiBaseUrl` points the
SDK at a Twilio-compatible API (a regional edge, SignalWire, a local double).
"""

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from ..status import ErrorCode
from .addressing import merged, phone_number_errors, sms_body_errors, sms_sender_errors
from .base import ConfigError, Provider, ProviderError, ReceiptEvent

# Twilio error code -> (our code, permanent). Temporary ones are retried on the channel's
# schedule; permanent ones fail the message at once and start its fallback.
ERRORS = {
    20429: (ErrorCode.RATE_LIMITED, False),
    20003: (ErrorCode.CHANNEL_UNAVAILABLE, False),  # the channel's credentials: an operator mends it
    21211: (ErrorCode.INVALID_RECEIVER, True),
    21408: (ErrorCode.REJECTED_BY_CHANNEL, True),
    21610: (ErrorCode.REJECTED_BY_CHANNEL, True),  # the receiver replied STOP
    21612: (ErrorCode.RECEIVER_UNREACHABLE, True),
    21614: (ErrorCode.INVALID_RECEIVER, True),
    30001: (ErrorCode.CHANNEL_UNAVAILABLE, False),
    30002: (ErrorCode.REJECTED_BY_CHANNEL, True),
    30003: (ErrorCode.RECEIVER_UNREACHABLE, False),
    30004: (ErrorCode.REJECTED_BY_CHANNEL, True),
    30005: (ErrorCode.INVALID_RECEIVER, True),
    30006: (ErrorCode.RECEIVER_UNREACHABLE, True),
    30007: (ErrorCode.CONTENT_REJECTED, True),
    30008: (ErrorCode.CHANNEL_UNKNOWN_ERROR, False),
    63016: (ErrorCode.CONTENT_REJECTED, True),  # WhatsApp: free-form text outside the 24 h window
}
# Callback statuses -> our receipt kinds; the rest (queued, sending, sent, ...) change nothing.
STATUSES = {"delivered": "DELIVERED", "read": "READ", "undelivered": "FAILED", "failed": "FAILED"}
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
TIMEOUT = 15.0


def error_for(code: int | None, http_status: int | None = None, text: str = "") -> ProviderError:
    """Our verdict on a Twilio error code (or, without one, on the HTTP status)."""
    if code in ERRORS:
        kind, permanent = ERRORS[code]
    elif http_status == 429:
        kind, permanent = ErrorCode.RATE_LIMITED, False
    elif http_status is not None and 400 <= http_status < 500:
        kind, permanent = ErrorCode.REJECTED_BY_CHANNEL, True  # a request Twilio will never take
    else:
        kind, permanent = ErrorCode.CHANNEL_UNKNOWN_ERROR, False
    raw = str(code) if code is not None else f"http {http_status}"
    return ProviderError(kind, text[:300] or "", permanent=permanent, raw_code=raw)


class TwilioProvider(Provider):
    type = "twilio"
    SECRET_KEYS = ("authToken",)
    # Tests give the SDK a double through here; None is the SDK's own HTTP client.
    http_client = None

    @classmethod
    def clean_config(cls, config: dict, previous: dict | None = None) -> dict:
        config = dict(super().clean_config(config))
        if not isinstance(config.get("accountSid"), str) or not ACCOUNT_SID.match(config["accountSid"]):
            raise ConfigError("accountSid must be a Twilio account SID: AC and 32 hex digits")
        if not isinstance(config.get("authToken"), str) or len(config["authToken"]) < 16:
            raise ConfigError("authToken is required: the account's auth token")
        sources = [key for key in ("from", "messagingServiceSid") if config.get(key)]
        if len(sources) != 1:
            raise ConfigError("give exactly one of from (a number) or messagingServiceSid")
        if "messagingServiceSid" in sources and not SERVICE_SID.match(str(config["messagingServiceSid"])):
            raise ConfigError("messagingServiceSid must be MG and 32 hex digits")
        if "from" in sources and not isinstance(config["from"], str):
            raise ConfigError("from must be a phone number as a string")
        if not isinstance(config.setdefault("whatsapp", False), bool):
            raise ConfigError("whatsapp must be true or false")
        base = config.get("apiBaseUrl")
        if base is not None and (not isinstance(base, str) or urlsplit(base).scheme not in ("http", "https")
                                 or not urlsplit(base).hostname):
            raise ConfigError("apiBaseUrl must be an http(s) URL")
        unknown = set(config) - {"accountSid", "authToken", "from", "messagingServiceSid", "whatsapp", "apiBaseUrl"}
        if unknown:
            raise ConfigError(f"unknown Twilio settings: {sorted(unknown)}")
        return config

    def _client(self) -> Client:
        config = self.channel.config
        client = Client(config["accountSid"], config["authToken"],
                        http_client=self.http_client or TwilioHttpClient(timeout=TIMEOUT))
        if config.get("apiBaseUrl"):
            client.api.base_url = config["apiBaseUrl"]
        return client

    @classmethod
    def message_errors(cls, config, *, receiver, sender, content):
        prefix = "whatsapp:" if config.get("whatsapp") else ""
        return merged(
            phone_number_errors("receiver", receiver, prefix=prefix),
            sms_sender_errors("sender", sender, prefix=prefix) if sender else {},
            sms_body_errors(content),
        )

    def _address(self, number: str) -> str:
        whatsapp = self.channel.config.get("whatsapp")
        return f"whatsapp:{number}" if whatsapp and not number.startswith("whatsapp:") else number

    def callback_url(self) -> str:
        return f"{settings.RELAY_PUBLIC_URL.rstrip('/')}/api/v1/receipts/{self.channel.name}"

    def send(self, message, *, attempt: int) -> str:
        config = self.channel.config
        params = {"to": self._address(message.receiver), "body": (message.content or {}).get("text", ""),
                  "status_callback": self.callback_url()}
        if message.sender or config.get("from"):
            params["from_"] = self._address(message.sender or config["from"])
        else:
            params["messaging_service_sid"] = config["messagingServiceSid"]
        try:
            return self._client().messages.create(**params).sid
        except TwilioRestException as exc:
            raise error_for(exc.code, exc.status, exc.msg) from exc
        except (TwilioException, OSError) as exc:  # no answer: the network, a timeout
            raise ProviderError(ErrorCode.CHANNEL_UNAVAILABLE, f"Twilio: {exc}"[:300],
                                raw_code=type(exc).__name__) from exc

    # --- status callbacks --------------------------------------------------------------------

    def authenticate_receipt(self, body: bytes, headers: Mapping[str, str]) -> bool:
        params = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        validator = RequestValidator(self.channel.config.get("authToken", ""))
        return validator.validate(self.callback_url(), params, headers.get("X-Twilio-Signature", ""))

    def parse_receipt(self, payload: dict) -> list[ReceiptEvent]:
        sid, status = payload.get("MessageSid") or payload.get("SmsSid"), payload.get("MessageStatus")
        if not sid or not status:
            raise ValueError("a Twilio status callback names MessageSid and MessageStatus")
        kind = STATUSES.get(status, "NOTED")
        code = payload.get("ErrorCode")
        error = error_for(int(code) if str(code).isdigit() else None) if kind == "FAILED" else None
        return [ReceiptEvent(kind=kind, provider_ref=sid, error=error)]
