"""One settings module, driven by environment variables.

With nothing set, Relay runs embedded: SQLite and a filesystem broker under var/, so a
first run needs no services. Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY,
DEBUG=off and ALLOWED_HOSTS.
"""

import secrets
import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("RELAY_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()


def _dev_secret_key() -> str:
    # A generated key, kept under var/ so sessions survive restarts of the embedded setup.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="") or (_dev_secret_key() if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    # Before the admin: its templates/admin/index.html adds the console's link to the index.
    "console",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "comms",
    "deliveries",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "comms.api.middleware.BodySizeLimitMiddleware",
    "comms.api.middleware.OutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'relay.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the writer, and
    # IMMEDIATE transactions queue writers instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = False
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # collectstatic fills it (release); whitenoise warns if absent
WHITENOISE_USE_FINDERS = True

# Requests larger than this are refused with 413 before they are parsed.
RELAY_MAX_BODY_BYTES = env.int("RELAY_MAX_BODY_BYTES", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = RELAY_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["comms.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["comms.api.permissions.IsApplication"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["comms.api.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "comms.api.schema.RelayAutoSchema",
    "EXCEPTION_HANDLER": "comms.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Relay API",
    "DESCRIPTION": "Send a message through any channel; follow it through signed webhooks.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Separate request and response components: a field read-only in answers (id, status)
    # is not demanded of requests, and one required in requests is not promised in answers.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "comms.api.schema.query_strings_not_empty",
    ],
    "ENUM_NAME_OVERRIDES": {
        "MessageStatusEnum": "comms.status.Status",
        "EventCodeEnum": "comms.status.EventCode",
        "ErrorCodeEnum": "comms.status.ErrorCode",
        "DeliveryStatusEnum": "deliveries.models.Delivery.Status",
    },
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -------------------------------------------------------------------------------
# The test suite gets its own embedded broker, so a running dev platform never eats its tasks.
TESTING = "pytest" in sys.modules
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

# --- Console ---------------------------------------------------------------------------
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
