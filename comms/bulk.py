"""Inserting many new rows at once: one INSERT per table, all sent in one round trip.

Django's bulk_create prepares every value through its field machinery, which for a batch
of a thousand messages costs more than the database does. On PostgreSQL the rows are
adapted by psycopg2 itself (`mogrify`, in C) and JSON is dumped once per value; elsewhere
(SQLite) bulk_create is fast enough and does the same job.
"""

import json
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from django.db import connection
from django.db.models import Field, JSONField, Model


def insert(*batches: Sequence[Model]) -> None:
    """Insert each batch of new model instances (all of one model per batch), in order."""
    batches = [batch for batch in batches if batch]
    if connection.vendor != "postgresql":
        for batch in batches:
            type(batch[0]).objects.bulk_create(batch)
        return
    with connection.cursor() as cursor:
        mogrify = cursor.cursor.mogrify
        statements = [_insert_statement(batch, mogrify) for batch in batches]
        if statements:
            cursor.execute(";".join(statements))


def _insert_statement(batch: Sequence[Model], mogrify) -> str:
    meta = type(batch[0])._meta
    # A serial primary key is the database's to number.
    fields = [f for f in meta.concrete_fields if not (f is meta.auto_field and batch[0].pk is None)]
    readers = [_reader(f) for f in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = b", ".join(mogrify(row, [read(obj) for read in readers]) for obj in batch)
    # The statement goes out without parameters, so nothing in it is read as a placeholder.
    return f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES " + values.decode()


def _reader(field: Field) -> Callable[[Model], Any]:
    """How to read a field's value to insert, decided once per batch, not per value."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda obj: field.pre_save(obj, add=True)  # as bulk_create does
    attname = field.attname
    if isinstance(field, JSONField):
        return lambda obj: None if (value := getattr(obj, attname)) is None else json.dumps(value)
    return attrgetter(attname)
