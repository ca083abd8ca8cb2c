"""Who hears about recorded events.

Lifecycle calls `events_recorded` inside the transaction that wrote the events, so a
listener that writes rows (the webhook outbox) commits or rolls back with them. Listeners
are registered by app configs; comms does not import the apps that listen to it.
"""

from collections.abc import Callable

# A listener gets the new MessageEvent rows and, per message id, (application id, channel id).
Listener = Callable[[list, dict[str, tuple[int, int]]], None]
_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def events_recorded(events: list, owners: dict[str, tuple[int, int]]) -> None:
    if not events:
        return
    for listener in _listeners:
        listener(events, owners)
