"""Prometheus metrics at /metrics: behind METRICS_TOKEN, counted once per committed change,
the backlog read from the database at scrape time, shared by forked processes."""

import multiprocessing
import os
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from django.db import DatabaseError, transaction

from comms import lifecycle, metrics, outcomes
from comms.lifecycle import Change, EventDetails, Only
from comms.models import Message
from comms.providers import ProviderError
from comms.status import ErrorCode, Status
from deliveries.models import Delivery
from tests.receiver import Answer
from tests.webhooks import move, send_pending, submit, subscribe

pytestmark = pytest.mark.django_db
TOKEN = "s3cret-metrics-token"
RULES = Path(__file__).resolve().parent.parent / "ops" / "prometheus" / "relay-alerts.yml"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(autouse=True)
def token(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.fixture(autouse=True, scope="module")
def _forget_finished_test_runs():
    """The test metrics directory outlives a run (as a host's does a restart): drop the files
    of test processes that have exited, so scrapes do not grow slower run after run."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if directory.name != "test-metrics":
        return  # someone's own directory: not ours to clean
    for path in directory.glob("*_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


@pytest.fixture
def scrape(client):
    """GET /metrics with the token: {(name, ((label, value), ...)): value}."""

    def scrape() -> dict:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        return parse(response.content.decode())

    return scrape


def parse(text: str) -> dict:
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = tuple(sorted(LABEL.findall(match.group(2) or "")))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --- the endpoint ----------------------------------------------------------------------------


def test_metrics_are_off_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_metrics_without_the_right_bearer_token_are_401(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}

    response = client.get("/metrics", **extra)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"relay_" not in response.content


def test_metrics_with_the_token_answer_in_prometheus_text_format(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE relay_messages_waiting gauge" in response.content.decode()
    assert "no-cache" in response["Cache-Control"]


def test_metrics_are_not_in_the_api_schema(client):
    schema = client.get("/api/schema/?format=json").json()

    assert not [path for path in schema["paths"] if "metrics" in path]


# --- counters, once per committed change ------------------------------------------------------


def test_a_message_through_its_lifecycle_is_counted_and_timed(application, channel, scrape, run):
    before = scrape()

    message = run(submit, application, channel)
    run(lifecycle.transition, [message.id], Change(Status.SENT, count_attempt=True))
    run(lifecycle.transition, [message.id], Change(Status.DELIVERED))

    after = scrape()
    assert delta(before, after, "relay_messages_accepted_total", channel="sim") == 1
    assert delta(before, after, "relay_messages_total", channel="sim", status="DELIVERED") == 1
    assert delta(before, after, "relay_message_accept_to_sent_seconds_count", channel="sim") == 1
    assert delta(before, after, "relay_message_sent_to_delivered_seconds_count", channel="sim") == 1
    assert delta(before, after, "relay_message_sent_to_delivered_seconds_bucket", channel="sim", le="+Inf") == 1


def test_the_latency_is_the_time_between_the_events(application, channel, scrape, run, clock):
    message = run(submit, application, channel)
    clock.now += timedelta(seconds=2)
    run(lifecycle.transition, [message.id], Change(Status.SENT, count_attempt=True))
    clock.now += timedelta(seconds=7)
    before = scrape()

    run(lifecycle.transition, [message.id], Change(Status.DELIVERED))

    after = scrape()
    assert delta(before, after, "relay_message_sent_to_delivered_seconds_sum", channel="sim") == 7.0
    assert delta(before, after, "relay_message_sent_to_delivered_seconds_bucket", channel="sim", le="5.0") == 0
    assert delta(before, after, "relay_message_sent_to_delivered_seconds_bucket", channel="sim", le="10.0") == 1


def test_a_transition_run_twice_is_counted_once(application, channel, scrape, run):
    message = run(submit, application, channel)
    run(move, message, Status.SENT)
    before = scrape()

    run(lifecycle.transition, [message.id], Change(Status.DELIVERED))
    run(lifecycle.transition, [message.id], Change(Status.DELIVERED))

    assert delta(before, scrape(), "relay_messages_total", channel="sim", status="DELIVERED") == 1


def test_a_change_rolled_back_is_not_counted(application, channel, scrape, run):
    message = run(submit, application, channel)
    run(move, message, Status.SENT)
    before = scrape()

    def rolled_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            lifecycle.transition([message.id], Change(Status.DELIVERED))
            submit(application, channel)
            raise RuntimeError("the transaction fails")

    run(rolled_back)

    after = scrape()
    assert delta(before, after, "relay_messages_total", channel="sim", status="DELIVERED") == 0
    assert delta(before, after, "relay_messages_accepted_total", channel="sim") == 0
    assert delta(before, after, "relay_message_sent_to_delivered_seconds_count", channel="sim") == 0


def test_nothing_is_counted_before_the_commit(application, channel, scrape, django_capture_on_commit_callbacks):
    before = scrape()

    with django_capture_on_commit_callbacks(execute=False):
        submit(application, channel)

    assert delta(before, scrape(), "relay_messages_accepted_total", channel="sim") == 0


def test_a_refusal_counts_a_provider_error_by_code_and_the_failure(application, channel, scrape, run):
    message = Message.objects.select_related("channel").get(id=run(submit, application, channel).id)
    before = scrape()

    run(outcomes.refused, message, ProviderError(ErrorCode.INVALID_RECEIVER, "no such number", permanent=True),
        attempt=1)
    run(outcomes.refused, message, ProviderError(ErrorCode.INVALID_RECEIVER, "again", permanent=True), attempt=1)

    after = scrape()
    assert delta(before, after, "relay_provider_errors_total", channel="sim", code="INVALID_RECEIVER") == 1
    assert delta(before, after, "relay_messages_total", channel="sim", status="DELIVERY_FAILED") == 1


def test_a_retried_attempt_counts_a_provider_error_but_no_outcome(application, channel, scrape, run):
    message = Message.objects.select_related("channel").get(id=run(submit, application, channel).id)
    before = scrape()

    run(outcomes.refused, message, ProviderError(ErrorCode.CHANNEL_TIMEOUT, "slow"), attempt=1)

    after = scrape()
    assert delta(before, after, "relay_provider_errors_total", channel="sim", code="CHANNEL_TIMEOUT") == 1
    assert delta(before, after, "relay_messages_total", channel="sim", status="DELIVERY_FAILED") == 0


def test_cancelled_and_expired_are_outcomes_too(application, channel, scrape, run):
    first, second = run(submit, application, channel), run(submit, application, channel)
    before = scrape()

    run(lifecycle.transition, [first.id], Change(Status.CANCELLED))
    run(lifecycle.transition, [second.id], Change(Status.EXPIRED, EventDetails(error_code=ErrorCode.EXPIRED)))

    after = scrape()
    assert delta(before, after, "relay_messages_total", channel="sim", status="CANCELLED") == 1
    assert delta(before, after, "relay_messages_total", channel="sim", status="EXPIRED") == 1


@pytest.mark.usefixtures("local_receivers_allowed", "published")
def test_webhook_attempts_are_counted_by_outcome(receiver, application, channel, scrape, run):
    receiver.answer(Answer(200), Answer(500))
    subscribe(application, receiver.url)
    run(submit, application, channel)
    run(submit, application, channel)
    before = scrape()

    run(send_pending)

    after = scrape()
    assert delta(before, after, "relay_webhook_attempts_total", outcome="success") == 1
    assert delta(before, after, "relay_webhook_attempts_total", outcome="http_status") == 1


# --- the backlog, from the database -----------------------------------------------------------


def test_the_backlog_gauges_are_read_from_the_database(application, channel, scrape, run, clock):
    queued = [run(submit, application, channel) for _ in range(3)]
    sent = run(submit, application, channel)
    clock.now += timedelta(seconds=30)
    run(lifecycle.transition, [sent.id], Change(Status.SENT, count_attempt=True), only=Only())
    clock.now += timedelta(seconds=90)

    samples = scrape()

    assert value(samples, "relay_messages_waiting", channel="sim", status="QUEUED") == len(queued)
    assert value(samples, "relay_messages_due", channel="sim", status="QUEUED") == len(queued)
    assert value(samples, "relay_messages_waiting", channel="sim", status="SENT") == 1
    assert value(samples, "relay_messages_oldest_age_seconds", channel="sim", status="QUEUED") == 120
    assert value(samples, "relay_messages_oldest_age_seconds", channel="sim", status="SENT") == 90
    assert value(samples, "relay_messages_waiting", channel="sim", status="SCHEDULED") == 0
    assert ("relay_messages_waiting", (("channel", "sim"), ("status", "SCHEDULED"))) in samples
    assert value(samples, "relay_metrics_database_up") == 1


def test_pending_webhook_deliveries_are_read_from_the_database(application, channel, scrape, run, clock):
    subscribe(application)
    run(submit, application, channel)
    run(submit, application, channel)
    clock.now += timedelta(seconds=45)

    samples = scrape()

    assert value(samples, "relay_webhook_deliveries_pending") == Delivery.objects.filter(status="pending").count() == 2
    assert value(samples, "relay_webhook_deliveries_due") == 2
    assert value(samples, "relay_webhook_deliveries_oldest_pending_age_seconds") == 45


def test_a_backlog_the_database_cannot_give_says_so_and_the_counters_still_answer():
    def broken(now):
        raise DatabaseError("connection lost")

    samples = parse(metrics.exposition([broken])[0].decode())

    assert value(samples, "relay_metrics_database_up") == 0


# --- processes ---------------------------------------------------------------------------------


def _count_in_a_child(label: str) -> None:
    metrics.WEBHOOK_ATTEMPTS.labels(label).inc(3)


def test_a_forked_process_counts_toward_the_same_totals():
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"]
    label = f"fork-probe-{os.getpid()}-{os.urandom(4).hex()}"
    child = multiprocessing.get_context("fork").Process(target=_count_in_a_child, args=(label,))

    child.start()
    child.join(timeout=30)

    assert child.exitcode == 0
    assert value(parse(metrics.exposition([])[0].decode()), "relay_webhook_attempts_total", outcome=label) == 3


def test_gunicorn_tells_metrics_of_an_exited_worker():
    from config import gunicorn

    dead = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / "gauge_livesum_999999999.db"
    dead.write_bytes(b"")

    try:
        gunicorn.child_exit(server=None, worker=SimpleNamespace(pid=999999999))

        assert not dead.exists()
    finally:
        dead.unlink(missing_ok=True)  # an empty file would break every later scrape


def test_a_celery_pool_process_tells_metrics_it_exits():
    from celery import signals

    dead = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / "gauge_liveall_999999998.db"
    dead.write_bytes(b"")

    try:
        signals.worker_process_shutdown.send(sender=None, pid=999999998, exitcode=0)

        assert not dead.exists()
    finally:
        dead.unlink(missing_ok=True)


# --- the sample alert rules ---------------------------------------------------------------------


def test_the_sample_alert_rules_parse_and_use_only_metrics_relay_exports(application, channel, scrape, run):
    run(move, run(submit, application, channel), Status.SENT, Status.DELIVERED)
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]

    used = {name for rule in rules for name in re.findall(r"\brelay_[a-z0-9_]+", rule["expr"])}

    assert rules and all(rule["alert"] and rule["expr"] for rule in rules)
    assert used and used <= {name for name, _ in scrape()} | declared_sample_names()


def declared_sample_names() -> set[str]:
    """What the counters and histograms export once they have counted anything."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    families = [m for m in vars(metrics).values() if isinstance(m, metrics.Counter | metrics.Histogram)]
    return {f"{family._name}{suffix}" for family in families for suffix in suffixes[family._type]}
