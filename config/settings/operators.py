"""The operators' settings: quotas per application, metrics, the health console."""

from .base import REST_FRAMEWORK, TESTING, VAR_DIR, env
from .workers import BROKER_IS_REDIS, CELERY_BEAT_SCHEDULE, CELERY_BROKER_URL, CELERY_TASK_ROUTES

# --- Quotas per application ---------------------------------------------------------------
# comms.quotas counts API requests and messages in this `limits` storage: Redis (the whole
# fleet) when the broker is Redis, else this process's memory. README: "Quotas per application".
RELAY_LIMITS_STORAGE_URL = env.str("RELAY_LIMITS_STORAGE_URL",
                                   default=CELERY_BROKER_URL if BROKER_IS_REDIS else "memory://")
RELAY_LIMITS_TIMEOUT = env.float("RELAY_LIMITS_TIMEOUT", default=0.5)  # then fail open, logged
RELAY_LIMITS_RETRY_SECONDS = env.float("RELAY_LIMITS_RETRY_SECONDS", default=5.0)  # then ask again
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["comms.api.throttling.ApplicationRequestRate"]

# --- Metrics ------------------------------------------------------------------------------
# /metrics is off (404) while this is empty; set, it requires `Authorization: Bearer <token>`.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Where the Relay processes of this host keep their counters (see comms.metrics).
PROMETHEUS_MULTIPROC_DIR = env.str(
    "PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / ("test-metrics" if TESTING else "metrics")))

# --- Console ------------------------------------------------------------------------------
# The health console's per-minute rollup (console.rollup): refreshed by beat, topped up by
# each page; every refresh rolls again this many minutes before where the last one stopped,
# so rows committed late are counted. The rollup keeps this many hours.
CONSOLE_REROLL_MINUTES = env.int("CONSOLE_REROLL_MINUTES", default=5)
CONSOLE_ROLLUP_HOURS = env.int("CONSOLE_ROLLUP_HOURS", default=48)
CELERY_TASK_ROUTES["console.refresh_rollup"] = {"queue": "sweeps"}
CELERY_BEAT_SCHEDULE["console-rollup"] = {
    "task": "console.refresh_rollup",
    "schedule": env.float("CONSOLE_REFRESH_INTERVAL", default=60.0),
}
