"""The benchmark behind `manage.py benchmark`: processes, a webhook receiver, phases."""
