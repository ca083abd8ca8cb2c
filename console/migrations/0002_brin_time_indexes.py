"""BRIN indexes on the event and attempt times, for the rollup's time-range scans.

Rows arrive in time order, so a BRIN index (a few pages for millions of rows) narrows a
scan of a few minutes to a few block ranges, at almost no cost per insert; a btree index
would cost every insert of the two busiest tables. A range is summarized once it fills
(autosummarize asks autovacuum to do it at once, not at the table's next vacuum); until then
it is scanned, which is only ever the newest rows. PostgreSQL only: on SQLite the embedded
tables are small and scanned."""

from django.db import migrations

INDEXES = [
    ("console_event_created_brin", "comms_messageevent", "created_at"),
    ("console_attempt_time_brin", "deliveries_deliveryattempt", "attempted_at"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, table, column in INDEXES:
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING brin ({column}) "
                                  "WITH (pages_per_range = 32, autosummarize = on)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, _, _ in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0001_rollup"),
        ("comms", "0004_operator_limits"),
        ("deliveries", "0004_delivery_due_at"),
    ]

    operations = [migrations.RunPython(create, drop)]
