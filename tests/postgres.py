"""Helpers for tests that race two real PostgreSQL transactions."""

from django.db import connection


def backends_waiting_for_a_lock() -> int:
    """Other sessions of this database now blocked on a row or table lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]
