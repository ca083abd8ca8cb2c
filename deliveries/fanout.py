"""Every recorded event becomes a delivery per matching subscription of its application.

A comms hook: the deliveries are written in the statement that writes their events, so they
are an outbox (they commit with their events or not at all), and the tasks go out after
commit. On PostgreSQL the matching itself is part of that statement (an INSERT ... SELECT
from the subscriptions), so accepting a message takes one round trip, not a SELECT of the
subscriptions first; elsewhere the subscriptions are read and matched here, by
Subscription.wants. tests/test_webhook_fanout.py holds the two to the same answers.
"""

from collections import defaultdict

from django.db import connection
from django.utils import timezone

from comms.hooks import Outbox
from comms.models import Channel, Message, MessageEvent

from .dispatch import publish_new_work
from .models import Delivery, Subscription

_MATCHING = f"""
INSERT INTO {Delivery._meta.db_table}
  (id, subscription_id, event_id, status, attempts, due_at, leased_until, last_status_code,
   last_error, created_at, updated_at)
SELECT replace(gen_random_uuid()::text, '-', ''), s.id, e.id, %(pending)s, 0, %(now)s, NULL, NULL,
       '', %(now)s, %(now)s
FROM {MessageEvent._meta.db_table} e
JOIN {Message._meta.db_table} m ON m.id = e.message_id
JOIN {Subscription._meta.db_table} s ON s.application_id = m.application_id AND s.active
JOIN {Channel._meta.db_table} c ON c.id = m.channel_id
WHERE e.id = ANY(%(events)s)
  AND (s.events = '[]'::jsonb OR s.events @> jsonb_build_array(e.status_code))
  AND (s.channels = '[]'::jsonb OR s.channels @> jsonb_build_array(c.name))
RETURNING subscription_id, id
"""


def fan_out(events: list, owners: dict[str, tuple[int, int]]) -> Outbox:
    """A delivery per event and matching subscription, for comms to write with the events;
    after commit, tasks for those subscriptions that can take them. `owners` maps each
    event's message id to (application id, channel id). New deliveries are due now: the
    sweeper's if still unclaimed a grace later."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        params = {"events": [e.id for e in events], "now": now, "pending": Delivery.Status.PENDING.value}
        return Outbox(statement=(_MATCHING, params), after_commit=publish_new_work)
    deliveries = [Delivery(subscription_id=sub.id, event_id=event.id, due_at=now, created_at=now, updated_at=now)
                  for event, sub in matches(events, owners)]
    pairs = [(d.subscription_id, d.id) for d in deliveries]
    return Outbox(deliveries, after_commit=lambda _: publish_new_work(pairs))


def matches(events: list, owners: dict[str, tuple[int, int]]) -> list[tuple]:
    """(event, subscription) for each subscription that wants the event, read and matched here."""
    subscriptions: dict[int, list[Subscription]] = defaultdict(list)
    for sub in Subscription.objects.filter(
        application_id__in={app for app, _ in owners.values()}, active=True
    ).only("id", "application_id", "events", "channels"):
        subscriptions[sub.application_id].append(sub)
    if not subscriptions:
        return []
    # Names only matter to a subscription that picks channels; most take them all.
    picky = any(sub.channels for subs in subscriptions.values() for sub in subs)
    channel_names = dict(Channel.objects.filter(id__in={c for _, c in owners.values()})
                         .values_list("id", "name")) if picky else {}
    found = []
    for event in events:
        application_id, channel_id = owners[event.message_id]
        found += [(event, sub) for sub in subscriptions[application_id]
                  if sub.wants(event.status_code, channel_names.get(channel_id, ""))]
    return found
