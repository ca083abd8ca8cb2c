"""Every recorded event becomes a delivery per matching subscription of its application.

A comms hook: the deliveries are written in the statement that writes their events, so they
are an outbox (they commit with their events or not at all), and the tasks go out after
commit.
"""

from collections import defaultdict

from django.utils import timezone

from comms.hooks import Outbox
from comms.models import Channel

from .dispatch import publish_new_work
from .models import Delivery, Subscription


def fan_out(events: list, owners: dict[str, tuple[int, int]]) -> Outbox:
    """A delivery per event and matching subscription, for comms to write with the events;
    after commit, tasks for those subscriptions that can take them. `owners` maps each
    event's message id to (application id, channel id)."""
    subscriptions: dict[int, list[Subscription]] = defaultdict(list)
    for sub in Subscription.objects.filter(
        application_id__in={app for app, _ in owners.values()}, active=True
    ).only("id", "application_id", "events", "channels"):
        subscriptions[sub.application_id].append(sub)
    if not subscriptions:
        return Outbox()
    # Names only matter to a subscription that picks channels; most take them all.
    picky = any(sub.channels for subs in subscriptions.values() for sub in subs)
    channel_names = dict(Channel.objects.filter(id__in={c for _, c in owners.values()})
                         .values_list("id", "name")) if picky else {}
    # Due now: published after commit, and the sweeper's if still unclaimed a grace later.
    now = timezone.now()
    deliveries = []
    for event in events:
        application_id, channel_id = owners[event.message_id]
        for sub in subscriptions[application_id]:
            if sub.wants(event.status_code, channel_names.get(channel_id, "")):
                deliveries.append(Delivery(subscription_id=sub.id, event_id=event.id, due_at=now,
                                           created_at=now, updated_at=now))
    pairs = [(d.subscription_id, d.id) for d in deliveries]
    return Outbox(deliveries, after_commit=lambda: publish_new_work(pairs))
