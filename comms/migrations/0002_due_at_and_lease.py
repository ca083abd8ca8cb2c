"""`next_attempt_at` meant four things; `due_at` means one (see comms.due).

The old column put a grace on top of due times (a published row waited a grace for its
task, a retry was unclaimable until a grace after it fell due, a scheduled message was
looked at a grace after its sendAt) and a grace plus a lease on top of claimed rows. The
new one holds the due time itself, and a claim's lease lives in `leased_until` (formerly
`claimed_until`, which already marked it). Existing rows are carried over by taking those
margins off again, so no row is claimed early and none waits longer than it did.
"""

from datetime import timedelta

from django.conf import settings
from django.db import migrations, models
from django.db.models import F, Q

SENDABLE = ["QUEUED", "DELIVERY_RETRIED"]


def carry_over(apps, schema_editor):
    Message = apps.get_model("comms", "Message")
    grace = timedelta(seconds=settings.RELAY_DISPATCH_GRACE)
    lease = timedelta(seconds=settings.RELAY_CLAIM_LEASE)
    due = Message.objects.filter(due_at__isnull=False)
    # A claim set next_attempt_at a grace past claimed_until. A sendable row without that
    # mark was published, or republished by the sweeper after its claim lapsed (which left
    # claimed_until behind): due a grace before its old value, with no lease. Done first, so
    # the claimed rows below are still recognisable.
    claimed = Q(leased_until__isnull=False, due_at=F("leased_until") + grace)
    due.filter(status__in=SENDABLE).exclude(claimed).update(due_at=F("due_at") - grace, leased_until=None)
    # Claimed: due when claimed; the lease is in leased_until.
    due.filter(claimed, status__in=SENDABLE).update(due_at=F("due_at") - grace - lease)
    # Scheduled within the lookahead: looked at a grace after sendAt; now due at sendAt.
    due.filter(status="SCHEDULED", send_at__isnull=False, due_at__gt=F("send_at")).update(due_at=F("send_at"))
    # Statuses that wait for nothing have nothing due.
    due.exclude(Q(status__in=[*SENDABLE, "SCHEDULED", "SENT"])).update(due_at=None)


class Migration(migrations.Migration):

    dependencies = [("comms", "0001_initial")]

    operations = [
        migrations.RemoveIndex(model_name="message", name="message_due_work"),
        migrations.RenameField(model_name="message", old_name="next_attempt_at", new_name="due_at"),
        migrations.RenameField(model_name="message", old_name="claimed_until", new_name="leased_until"),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(condition=Q(due_at__isnull=False), fields=["due_at"], name="message_due_at"),
        ),
    ]
