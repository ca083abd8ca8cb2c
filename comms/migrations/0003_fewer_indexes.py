"""Every index is written on every insert and on most updates of a hot row: keep only those
a query uses.

- The foreign keys' own indexes duplicate the leading column of a composite index
  (message_app_created, message_provider_ref, event_sequence_per_message).
- On PostgreSQL Django adds a `varchar_pattern_ops` twin (`..._like`) to every indexed
  CharField, for LIKE 'prefix%' queries; ids are only ever compared whole.
"""

import django.db.models.deletion
from django.db import migrations, models

DROP_LIKE_INDEXES = """
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT indexname FROM pg_indexes
           WHERE tablename IN ('comms_message', 'comms_messageevent') AND indexname LIKE '%\\_like'
  LOOP
    EXECUTE 'DROP INDEX ' || quote_ident(r.indexname);
  END LOOP;
END $$;
"""


def drop_like_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_LIKE_INDEXES, params=None)


class Migration(migrations.Migration):

    dependencies = [("comms", "0002_due_at_and_lease")]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="application",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="messages", to="comms.application"),
        ),
        migrations.AlterField(
            model_name="message",
            name="channel",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="messages", to="comms.channel"),
        ),
        migrations.AlterField(
            model_name="messageevent",
            name="message",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="events", to="comms.message"),
        ),
        migrations.RunPython(drop_like_indexes, migrations.RunPython.noop),
    ]
