"""Who hears about recorded events.

Lifecycle calls `events_recorded` inside the transaction that wrote the events, so a
listener that writes rows (the webhook outbox) commits or rolls back with them. Listeners
are registered by app configs; comms does not import the apps that listen to it.
"""

from collections.abc import Callable

_listeners: list[Callable[[list], None]] = []


def listen(listener: Callable[[list], None]) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def events_recorded(events: list) -> None:
    if not events:
        return
    for listener in _listeners:
        listener(events)
