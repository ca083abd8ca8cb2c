"""The workers' settings: Celery, the lifecycle's timing, send rates and webhooks."""

from pathlib import Path

import environ

from .base import DEBUG, TESTING, VAR_DIR, env

# --- Celery -------------------------------------------------------------------------------
# The test suite gets its own embedded broker, so a running dev platform never eats its tasks.
BROKER_DIR = Path(env.str("RELAY_BROKER_DIR", default=str(VAR_DIR / ("test-broker" if TESTING else "broker"))))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    # kombu's own filesystem transport lets a consumer read a half-written message and stop
    # the worker (kombu #1551). An explicit transport outranks the URL's scheme in kombu, so
    # it is set here only, never beside a Redis URL.
    CELERY_BROKER_TRANSPORT = "config.fsbroker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        # kombu defaults this to ./control, i.e. wherever the process happens to start.
        "control_folder": str(BROKER_DIR / "control"),
        "polling_interval": 0.1,
    }
else:
    # Countdowns stay below RELAY_MAX_COUNTDOWN (minutes), far inside this window, so Redis
    # never hands a waiting countdown task out twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
CELERY_TASK_SOFT_TIME_LIMIT = 30
CELERY_TASK_TIME_LIMIT = 40
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# One queue per stage, so no send or receipt ever waits behind a webhook, and a stage's
# workers scale on their own (the Procfile's worker-* lines); the embedded `worker` consumes
# them all. Every task is routed by name; an unrouted one would sit in a queue nobody reads.
RELAY_QUEUES = ("send", "receipts", "webhooks", "sweeps")
CELERY_TASK_DEFAULT_QUEUE = "send"
CELERY_TASK_ROUTES = {
    "comms.send_messages": {"queue": "send"},
    "comms.start_scheduled": {"queue": "send"},
    "comms.noop": {"queue": "send"},
    "comms.process_receipts": {"queue": "receipts"},
    "deliveries.send_deliveries": {"queue": "webhooks"},
    "comms.tasks.sweep": {"queue": "sweeps"},
    "deliveries.sweep": {"queue": "sweeps"},
}
# Beat's own state, under var/ like the rest (RELAY_VAR_DIR), so two platforms started from
# one checkout do not share it.
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep-due-work": {
        "task": "comms.tasks.sweep",
        "schedule": env.float("RELAY_SWEEP_INTERVAL", default=15.0),
    },
    "sweep-due-deliveries": {
        "task": "deliveries.sweep",
        "schedule": env.float("RELAY_SWEEP_INTERVAL", default=15.0),
    },
}

# --- Relay --------------------------------------------------------------------------------
# The public base URL providers are told to call back (Twilio signs exactly this URL, so
# behind a proxy it must be the outside address, not what the request's Host says).
RELAY_PUBLIC_URL = env.str("RELAY_PUBLIC_URL", default="http://localhost:8000")
# A claimed attempt is the claimer's for this long; it must outlast the task's hard limit.
RELAY_CLAIM_LEASE = env.float("RELAY_CLAIM_LEASE", default=45.0)
# Dispatched work not claimed within this long is dispatched again by the sweeper.
RELAY_DISPATCH_GRACE = env.float("RELAY_DISPATCH_GRACE", default=20.0)
# Retries due within this many seconds ride a Celery countdown; later ones wait in the
# database for the sweeper (long countdowns are held unacknowledged in worker memory).
RELAY_MAX_COUNTDOWN = env.float("RELAY_MAX_COUNTDOWN", default=300.0)
# Scheduled messages due within this many seconds get a countdown to their sendAt; later
# ones wait in the database, and the sweeper takes them a grace after they come within the
# lookahead: it must exceed RELAY_DISPATCH_GRACE + RELAY_SWEEP_INTERVAL for them to start on time.
RELAY_SCHEDULE_LOOKAHEAD = env.float("RELAY_SCHEDULE_LOOKAHEAD", default=120.0)
# How long each process keeps an API key (with its application) and a channel it looked up
# (comms.lookups); a change saved elsewhere is seen within this long. 0 turns them off.
RELAY_LOOKUP_CACHE_SECONDS = env.float("RELAY_LOOKUP_CACHE_SECONDS", default=5.0)
# Message ids per send task: one broker round-trip and one claim query for many messages.
RELAY_SEND_CHUNK = env.int("RELAY_SEND_CHUNK", default=50)
# Where channels' send rates are kept (comms.pacing): Redis, for the whole fleet, when the
# broker is Redis; else a directory of locked files, for the processes of this machine.
BROKER_IS_REDIS = CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
RELAY_PACING_URL = env.str("RELAY_PACING_URL", default=CELERY_BROKER_URL if BROKER_IS_REDIS
                           else str(VAR_DIR / ("test-pacing" if TESTING else "pacing")))
RELAY_BATCH_MAX = 1000
# The largest `context`, serialized: it is echoed in every webhook of every subscriber.
RELAY_MAX_CONTEXT_BYTES = env.int("RELAY_MAX_CONTEXT_BYTES", default=16384)
# The largest email body accepted, subject, text and html together (UTF-8 bytes).
RELAY_MAX_EMAIL_BYTES = env.int("RELAY_MAX_EMAIL_BYTES", default=1_000_000)
# A receipt that beats its attempt's SENT record is tried again this often, this many times.
RELAY_RECEIPT_RETRIES = env.int("RELAY_RECEIPT_RETRIES", default=5)
RELAY_RECEIPT_RETRY_DELAY = env.float("RELAY_RECEIPT_RETRY_DELAY", default=1.0)
if RELAY_SCHEDULE_LOOKAHEAD <= RELAY_DISPATCH_GRACE + CELERY_BEAT_SCHEDULE["sweep-due-work"]["schedule"]:
    raise environ.ImproperlyConfigured(
        "RELAY_SCHEDULE_LOOKAHEAD must exceed RELAY_DISPATCH_GRACE + RELAY_SWEEP_INTERVAL")
if RELAY_CLAIM_LEASE <= CELERY_TASK_TIME_LIMIT:
    raise environ.ImproperlyConfigured("RELAY_CLAIM_LEASE must outlast the task time limit (40 s)")

# --- Webhooks -----------------------------------------------------------------------------
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=DEBUG)
# Seconds between attempts: the first retry 5 s after the first attempt, and so on.
WEBHOOK_RETRY_SCHEDULE = [
    float(s) for s in env.list("WEBHOOK_RETRY_SCHEDULE", default=["5", "300", "1800", "7200", "18000", "36000", "36000"])
]
WEBHOOK_RETRY_AFTER_MAX = env.float("WEBHOOK_RETRY_AFTER_MAX", default=3600.0)
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=5.0)
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=15.0)
WEBHOOK_DISABLE_AFTER_DAYS = env.float("WEBHOOK_DISABLE_AFTER_DAYS", default=5.0)
WEBHOOK_ROTATION_OVERLAP_HOURS = env.float("WEBHOOK_ROTATION_OVERLAP_HOURS", default=24.0)
WEBHOOK_SEND_CHUNK = env.int("WEBHOOK_SEND_CHUNK", default=20)
# Attempts one subscription may have in flight at once, across every worker: a hanging
# endpoint holds at most this many connections (and webhook worker threads).
WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION = env.int("WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", default=20)
# Deliveries one round of a healthy subscription may carry, posted over at most the bound's
# lanes: more per round shares its claim, load and record among more webhooks. A failing or
# backed-off subscription's round carries no more than it has lanes.
WEBHOOK_ROUND_MAX = env.int("WEBHOOK_ROUND_MAX", default=100)
# The circuit breaker: after this many attempts in a row that time out or cannot connect,
# the subscription backs off as a whole and sends one probe per interval until one lands.
WEBHOOK_BREAKER_THRESHOLD = env.int("WEBHOOK_BREAKER_THRESHOLD", default=5)
WEBHOOK_BREAKER_PROBE_INTERVAL = env.float("WEBHOOK_BREAKER_PROBE_INTERVAL", default=30.0)
# Threads of each worker-webhooks process (its --concurrency in the Procfile), which size its
# pool for outbound requests.
WEBHOOK_WORKER_THREADS = env.int("WEBHOOK_WORKER_THREADS", default=16)
# A round of webhook requests is recorded this long after it began at the latest: an answer
# later than that counts as a timeout. It must end well inside the claim's lease.
WEBHOOK_ROUND_SECONDS = WEBHOOK_CONNECT_TIMEOUT + WEBHOOK_TIMEOUT + 2.0
if WEBHOOK_ROUND_SECONDS >= RELAY_CLAIM_LEASE - 5:
    raise environ.ImproperlyConfigured(
        "WEBHOOK_CONNECT_TIMEOUT + WEBHOOK_TIMEOUT must stay well below RELAY_CLAIM_LEASE")
if min(WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION, WEBHOOK_BREAKER_THRESHOLD, WEBHOOK_ROUND_MAX) < 1:
    raise environ.ImproperlyConfigured(
        "WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION, WEBHOOK_BREAKER_THRESHOLD and WEBHOOK_ROUND_MAX must be at least 1")
