"""Who hears about recorded events, and what they add to them.

Lifecycle asks each listener, before it writes new events, for its `Outbox`: the rows it
wants written with them (the webhook deliveries), which go out in the same statement as the
events and so commit or roll back with them, and what to run once they have committed.
Listeners are registered by app configs; comms does not import the apps that listen to it.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Outbox:
    rows: Sequence = ()
    after_commit: Callable[[], None] | None = None


# A listener gets the new MessageEvent rows and, per message id, (application id, channel id).
Listener = Callable[[list, dict[str, tuple[int, int]]], Outbox]
_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def outboxes(events: list, owners: dict[str, tuple[int, int]]) -> list[Outbox]:
    if not events:
        return []
    return [listener(events, owners) for listener in _listeners]
