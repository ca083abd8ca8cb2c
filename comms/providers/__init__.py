from .base import ConfigError, Provider, ProviderError, ReceiptEvent, ReceiptRefused, Sent
from .email import EmailProvider
from .http_gateway import HttpGatewayProvider
from .simulator import SimulatorProvider
from .twilio_sms import TwilioProvider

PROVIDERS: dict[str, type[Provider]] = {
    cls.type: cls for cls in [SimulatorProvider, HttpGatewayProvider, EmailProvider, TwilioProvider]
}


def provider_class(channel_type: str) -> type[Provider]:
    try:
        return PROVIDERS[channel_type]
    except KeyError:
        raise ConfigError(f"unknown channel type {channel_type!r}; known: {sorted(PROVIDERS)}") from None


def provider_for(channel) -> Provider:
    return provider_class(channel.type)(channel)


__all__ = [
    "PROVIDERS", "ConfigError", "Provider", "ProviderError", "ReceiptEvent", "ReceiptRefused", "Sent",
    "provider_class", "provider_for",
]
