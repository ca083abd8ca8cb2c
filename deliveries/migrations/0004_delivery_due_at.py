"""`Delivery.next_attempt_at` becomes `due_at`, the due time alone (see comms.due).

The old column put margins on top of the due time: a grace on a published delivery and on a
short retry, a grace and a lease on a claimed one. RenameField keeps every value as it is:
those rows are simply due a little later than they were. A published task that comes
before such a row falls due claims nothing, and the sweeper publishes the row again a grace
after it does: at worst a delivery goes out a grace (plus a lease, if its worker died) later
than it would have. None goes out early, and a long retry, which had no margin, keeps its
exact time.

What cannot be carried over as it is: a lease that has run out (a dead worker's claim) is
cleared, so the row is free the moment it is due, and a finished delivery has nothing due.
"""

from django.db import migrations, models
from django.db.models import Q
from django.utils import timezone


def carry_over(apps, schema_editor):
    Delivery = apps.get_model("deliveries", "Delivery")
    Delivery.objects.filter(leased_until__lte=timezone.now()).update(leased_until=None)
    Delivery.objects.exclude(status="pending").filter(due_at__isnull=False).update(due_at=None)


class Migration(migrations.Migration):

    dependencies = [
        ("deliveries", "0003_breaker_and_in_flight_bound"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="delivery", name="delivery_due_work"),
        migrations.RemoveIndex(model_name="delivery", name="delivery_sub_due_work"),
        migrations.RenameField(model_name="delivery", old_name="next_attempt_at", new_name="due_at"),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(condition=Q(due_at__isnull=False), fields=["due_at"], name="delivery_due_work"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(condition=Q(due_at__isnull=False), fields=["subscription", "due_at"],
                               name="delivery_sub_due_work"),
        ),
    ]
