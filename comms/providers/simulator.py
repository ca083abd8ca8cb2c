"""The simulator: a provider with asynchronous receipts, steered by tokens in the receiver.

`+447700900123#fail2` fails the first two attempts, then delivers. Its receipts travel
the path real ones do: handed back as LocalReceipts, processed on the receipts queue with
payloads this class parses.
"""

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..status import ErrorCode
from .base import ConfigError, HmacReceipts, LocalReceipts, Provider, ProviderError, ReceiptEvent, Sent

_TOKEN = re.compile(r"^(fail)(\d*)$|^(reject|read|delete|click|silent)$")

# Simulator receipt words -> our event kinds.
RECEIPT_KINDS = {
    "delivered": "DELIVERED",
    "undelivered": "FAILED",
    "read": "READ",
    "clicked": "INTERACTED",
    "deleted": "DELETED",
}
READ_ENV = {"os.name": "ios", "client": "relay-simulator"}
# Where a simulated receiver clicks: a link of the simulator's own, never a real site.
CLICK_LINK = "https://simulator.relay.invalid/click"


@dataclass(frozen=True)
class Behaviour:
    fail_first: int = 0  # attempts that fail temporarily; -1 means every attempt
    reject: bool = False
    read: bool = False
    delete: bool = False
    click: bool = False
    silent: bool = False

    @classmethod
    def of(cls, receiver: str) -> "Behaviour":
        flags: dict = {}
        for token in receiver.split("#")[1:]:
            match = _TOKEN.match(token.strip().lower())
            if not match:
                continue
            if match.group(1):
                flags["fail_first"] = int(match.group(2)) if match.group(2) else -1
            else:
                flags[match.group(3)] = True
        return cls(**flags)

    def fails(self, attempt: int) -> bool:
        return self.fail_first == -1 or attempt <= self.fail_first


class SimulatorProvider(HmacReceipts, Provider):
    type = "simulator"

    @classmethod
    def clean_config(cls, config: dict, previous: dict | None = None) -> dict:
        config = cls.with_receipt_secret(super().clean_config(config), previous)
        for key in ("receiptDelay", "failureRate"):
            value = config.get(key, 0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{key} must be a number ≥ 0")
        if config.get("failureRate", 0) > 1:
            raise ConfigError("failureRate must be between 0 and 1")
        unknown = set(config) - {"receiptDelay", "failureRate", "receiptSecret"}
        if unknown:
            raise ConfigError(f"unknown simulator settings: {sorted(unknown)}")
        return config

    @property
    def receipt_delay(self) -> float:
        return float(self.channel.config.get("receiptDelay", 0))

    def send(self, message, *, attempt: int) -> str:
        if Behaviour.of(message.receiver).reject:
            raise ProviderError(ErrorCode.REJECTED_BY_CHANNEL, permanent=True, raw_code="reject")
        return f"sim-{message.id}-{attempt}"

    def receipts_after_sent(self, sent: list[Sent]) -> LocalReceipts | None:
        """Receipts for a batch of attempts come back in one callback, as bulk providers do."""
        payloads = [p for p in (self.receipt_for(i, Behaviour.of(i.message.receiver)) for i in sent) if p]
        return LocalReceipts(payloads, delay=self.receipt_delay or None) if payloads else None

    def receipt_for(self, item: Sent, behaviour: Behaviour) -> dict | None:
        if behaviour.silent:
            return None
        rate = float(self.channel.config.get("failureRate", 0))
        if behaviour.fails(item.attempt) or (rate and random.random() < rate):
            words = ["undelivered"]
        else:
            words = ["delivered"]
            if behaviour.read or behaviour.delete or behaviour.click:
                words.append("read")
            if behaviour.click:
                words.append("clicked")
            if behaviour.delete:
                words.append("deleted")
        return {
            "messageId": item.message.id,
            "attempt": item.attempt,
            "ref": item.provider_ref,
            "events": [{"event": w, "link": CLICK_LINK} if w == "clicked" else {"event": w} for w in words],
        }

    def receipt_timeout(self, message) -> float | None:
        if Behaviour.of(message.receiver).silent:
            return None
        # The simulator "retries its callback" if ours was lost, as real providers do.
        return self.receipt_delay + 30.0

    def poll(self, messages: Iterable) -> LocalReceipts | None:
        return self.receipts_after_sent([Sent(m, m.attempts, m.provider_ref) for m in messages])

    def parse_receipt(self, payload: dict) -> list[ReceiptEvent]:
        try:
            message_id = str(payload["messageId"])
            attempt = int(payload["attempt"])
            words = [str(e["event"]) for e in payload["events"]]
            links = [str(e.get("link") or "") for e in payload["events"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed simulator receipt: {exc}") from exc
        if attempt < 1:
            raise ValueError(f"malformed simulator receipt: attempt {attempt} (attempts count from 1)")
        events = []
        for word, link in zip(words, links, strict=True):
            kind = RECEIPT_KINDS.get(word)
            if kind is None:
                raise ValueError(f"unknown simulator receipt event {word!r}")
            events.append(
                ReceiptEvent(
                    kind=kind,
                    message_id=message_id,
                    attempt=attempt,
                    error=ProviderError(ErrorCode.CHANNEL_UNKNOWN_ERROR, raw_code=word)
                    if kind == "FAILED" else None,
                    env=READ_ENV if kind == "READ" else None,
                    link=link if kind == "INTERACTED" else "",
                )
            )
        return events
