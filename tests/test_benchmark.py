"""The benchmark's code paths, run small so they cannot rot (nothing here is timed)."""

import json
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.migrations.executor import MigrationExecutor

from comms.bench.receiver import shape_problem
from comms.bench.runner import _percentile

pytestmark = pytest.mark.integration


@pytest.mark.django_db(transaction=True)
def test_a_small_benchmark_run_checks_the_whole_pipeline_and_writes_every_key(tmp_path):
    out = tmp_path / "bench.json"

    call_command("benchmark", messages=20, noop_tasks=20, clients=2, no_progress=True, json=out)

    results = json.loads(out.read_text())
    for key in ("celery_noop_tasks_per_s", "ingest_batch_messages_per_s", "ingest_single_requests_per_s",
                "lifecycle_messages_per_s", "webhooks_per_s", "ratio_lifecycle_to_noop", "worker_rss_mb"):
        assert results[key] > 0, key
    for key in ("ceiling_requests_per_s", "single_post_ceiling_ratio"):
        assert results[key] > 0, key
    assert set(results["latency_ms"]) == {"p50", "p95", "p99"}
    assert results["ok"] is True and results["problems"] == []


def test_the_receiver_flags_a_payload_with_a_null_field():
    payload = {"id": "a" * 32, "statusCode": "SENT", "messageId": "b" * 32, "channelName": "c",
               "context": {}, "timeStamp": "2026-01-01T00:00:00+0000", "errorCode": None}
    headers = {"webhook-id": "a" * 32, "content-type": "application/json", "user-agent": "x"}

    assert shape_problem(payload, headers) == "a null field"


def test_the_receiver_accepts_the_designed_shape():
    payload = {"id": "a" * 32, "statusCode": "SENT", "messageId": "b" * 32, "channelName": "c",
               "context": {"k": 1}, "timeStamp": "2026-01-01T00:00:00+0000", "sequence": 2}
    headers = {"webhook-id": "a" * 32, "content-type": "application/json", "user-agent": "x"}

    assert shape_problem(payload, headers) == ""


def test_percentiles_of_a_known_series():
    values = [float(v) for v in range(1, 101)]

    assert (_percentile(values, 50), _percentile(values, 99)) == (50.5, 99.01)


@pytest.mark.django_db
def test_the_benchmark_refuses_an_unmigrated_database_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(MigrationExecutor, "migration_plan",
                        lambda self, targets: [(SimpleNamespace(app_label="comms", name="0099_next"), False)])

    with pytest.raises(CommandError, match=r"1 unapplied migration\(s\) \(comms.0099_next\): run `python manage.py migrate`"):
        call_command("benchmark", "--messages", "1")
