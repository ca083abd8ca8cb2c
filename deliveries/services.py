"""Subscriptions and replays: the writes behind the subscriptions API."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from comms.models import Application
from comms.publish import deliveries_on_commit

from . import health, lifecycle
from .lifecycle import Change, Only
from .models import Delivery, Subscription
from .signing import new_secret
from .urlguard import check_url

SUBSCRIPTION_FIELDS = ("url", "events", "channels", "description", "active", "headers")


def subscription_create(*, application: Application, url: str, **fields) -> Subscription:
    """Raises RefusedURL for a URL into a private network."""
    check_url(url)
    return Subscription.objects.create(application=application, url=url, secret=new_secret(),
                                       **{k: v for k, v in fields.items() if k in SUBSCRIPTION_FIELDS})


def subscription_update(*, subscription: Subscription, **fields) -> Subscription:
    if "url" in fields:
        check_url(fields["url"])
    fresh_start = (fields.get("active") is True and not subscription.active) or \
        fields.get("url", subscription.url) != subscription.url
    changed = [name for name in fields if name in SUBSCRIPTION_FIELDS]
    for name in changed:
        setattr(subscription, name, fields[name])
    with transaction.atomic():
        if fresh_start:
            # Re-enabled or pointed elsewhere: no stale reason, no inherited run of failures
            # or back-off, and what waited goes out now.
            subscription.disabled_at, subscription.disabled_reason = None, ""
            subscription.failing_since = subscription.backing_off_since = subscription.next_probe_at = None
            subscription.unreachable_streak = 0
            changed += [*health.HEALTH_FIELDS]
            deliveries_on_commit(subscription.id)
        # Only what this update changes: the health fields are the workers' to write,
        # and a full save from a stale copy would undo a disable or a back-off.
        subscription.save(update_fields={*changed, "updated_at"})
    return subscription


DELETE_TRIES = 5


def subscription_delete(*, subscription: Subscription) -> None:
    """Delete a subscription with its deliveries and their attempts.

    Deactivated first, in a commit of its own, so fan-out and claims stop adding rows for it;
    then deleted. Django collects the rows to cascade before it deletes them, so an attempt a
    worker records in between breaks the foreign key at commit: the delete is tried again."""
    Subscription.objects.filter(pk=subscription.pk).update(active=False)
    for tries_left in reversed(range(DELETE_TRIES)):
        try:
            with transaction.atomic():
                Subscription.objects.get(pk=subscription.pk).delete()
            return
        except Subscription.DoesNotExist:
            return
        except IntegrityError:
            if not tries_left:
                raise


def subscription_rotate_secret(*, subscription: Subscription, now: datetime | None = None) -> Subscription:
    """A new secret; the old one keeps signing beside it for WEBHOOK_ROTATION_OVERLAP_HOURS."""
    now = now or timezone.now()
    subscription.previous_secret = subscription.secret
    subscription.previous_secret_expires_at = now + timedelta(hours=settings.WEBHOOK_ROTATION_OVERLAP_HOURS)
    subscription.secret = new_secret()
    subscription.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return subscription


# A replay may come from any status: a finished delivery goes again, a pending one goes now.
REPLAY_FROM = frozenset(Delivery.Status)


def deliveries_retry(delivery_ids: list[str], *, now: datetime | None = None) -> int:
    """One more attempt now for each of these deliveries, whatever their state; returns how
    many were set to go. One in flight keeps its claim: the outcome of the attempt under way
    decides what follows it."""
    now = now or timezone.now()
    due_now = Change(Delivery.Status.PENDING, due_at=now)
    with transaction.atomic():
        moved = lifecycle.change_deliveries(changes=dict.fromkeys(delivery_ids, due_now),
                                            only=Only(from_statuses=REPLAY_FROM), now=now)
        # One task per subscription: it takes them oldest first, round by round, and its
        # follow-ups the rest; more would only find the first one's claim in flight.
        for subscription_id in set(moved.values()):
            deliveries_on_commit(subscription_id)
    return len(moved)


def subscription_recover(*, subscription: Subscription, since: datetime) -> int:
    """Send again every failed delivery of this subscription created since `since`."""
    ids = list(subscription.deliveries.filter(status=Delivery.Status.FAILED, created_at__gte=since)
               .values_list("id", flat=True))
    return deliveries_retry(ids)
