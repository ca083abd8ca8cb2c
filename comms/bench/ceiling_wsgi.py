"""The WSGI entry of the benchmark's ceiling view: the platform's settings, its own URLs.

The benchmark runs the Procfile's `web` line with `config.wsgi` replaced by this module,
so both are served by the same gunicorn settings.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
settings.ROOT_URLCONF = "comms.bench.ceiling"
application = get_wsgi_application()
