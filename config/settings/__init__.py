"""Relay's settings, driven by environment variables, in three parts: Django and the API
(base), the workers (workers) and the operators (operators).

With nothing set, Relay runs embedded: SQLite and a filesystem broker under var/, so a
first run needs no services. Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY,
DEBUG=off and ALLOWED_HOSTS.
"""

from .base import *  # noqa: F403
from .operators import *  # noqa: F403
from .workers import *  # noqa: F403
