"""Fixtures shared by the suite: applications with keys, channels, an API client, and a
recorder for published tasks, so unit tests run tasks by calling them, never eagerly."""

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from comms import pacing, publish
from comms.accounts import application_create, channel_upsert
from config.celery import app as celery_app
from tests.receiver import Receiver
from tests.timing import Clock


@pytest.fixture(autouse=True)
def _fresh_pacing():
    """Channel ids come back in every test: no test waits on an earlier one's send turns."""
    pacing.forget()


@pytest.fixture
def app_and_key(db):
    return application_create(name="acme")


@pytest.fixture
def application(app_and_key):
    return app_and_key[0]


@pytest.fixture
def other_app_and_key(db):
    return application_create(name="globex")


@pytest.fixture
def admin_app_and_key(db):
    return application_create(name="ops", is_admin=True)


def _client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def api(app_and_key):
    return _client(app_and_key[1])


@pytest.fixture
def other_api(other_app_and_key):
    return _client(other_app_and_key[1])


@pytest.fixture
def admin_api(admin_app_and_key):
    return _client(admin_app_and_key[1])


@pytest.fixture
def channel(db):
    return channel_upsert(name="sim", type="simulator", max_attempts=3, retry_delay=10)[0]


@pytest.fixture
def backup_channel(db):
    return channel_upsert(name="backup", type="simulator", max_attempts=1, retry_delay=1)[0]


class Published:
    """Tasks published during a test, by their short name (send_messages for
    comms.send_messages): [(args, options), ...]."""

    def __init__(self):
        self.calls: dict[str, list[tuple[tuple, dict]]] = {}

    def record(self, name, args, **options):
        short = name.rsplit(".", 1)[1]
        self.calls.setdefault(short, []).append((tuple(args), options))

    def of(self, name) -> list[tuple[tuple, dict]]:
        return self.calls.get(name, [])

    def sent_ids(self) -> list[str]:
        return [i for args, _ in self.of("send_messages") for i in args[0]]

    def clear(self):
        self.calls.clear()


@pytest.fixture
def published(monkeypatch):
    """Record instead of publishing. Tasks are published after commit, and a test's own
    transaction never commits: wrap the code in django_capture_on_commit_callbacks(execute=True)
    to record what would be published."""
    recorder = Published()
    monkeypatch.setattr(publish, "publish", recorder.record)
    return recorder


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Call a task function or service as a worker would, and commit, so what it publishes
    after commit is recorded (with `published`)."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def clock(monkeypatch):
    """Frozen time every module reads through django.utils.timezone.now."""
    frozen = Clock(timezone.now().replace(microsecond=0))
    monkeypatch.setattr(timezone, "now", frozen)
    return frozen


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 (see tests/receiver.py), stopped after the test."""
    with Receiver() as running:
        yield running


@pytest.fixture
def local_receivers_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def worker():
    """A real Celery worker in this process (threads, every stage queue) on the configured
    broker; tests using it need django_db(transaction=True)."""
    # Tasks left in the broker by an earlier, interrupted run would reference rows of
    # another database: start from an empty queue.
    with celery_app.connection_for_write() as conn:
        for queue in settings.RELAY_QUEUES:
            conn.default_channel.queue_purge(queue)
    with start_worker(
        celery_app, pool="threads", concurrency=4, perform_ping_check=False,
        loglevel="WARNING", shutdown_timeout=10, queues=list(settings.RELAY_QUEUES),
    ) as running:
        yield running
