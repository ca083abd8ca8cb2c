"""The benchmark's phases, measured in one run on the configured database and broker."""

import json
import secrets
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone
from tqdm import tqdm

from config.celery import app as celery_app

from ..accounts import application_create, channel_upsert
from ..models import Application, Message
from ..status import Status
from .ceiling import ceiling_table_create, ceiling_table_drop
from .posts import compare
from .processes import Processes, free_port, peak_rss_mb, procfile_command, wait_http
from .receiver import Receiver

# The production layout: a worker per stage, from the Procfile (sweeps need no worker here:
# the benchmark runs no beat).
STAGE_WORKERS = ("worker-send", "worker-receipts", "worker-webhooks")
CHANNEL = "bench-sim"
EXPECTED = {"QUEUED", "SENT", "DELIVERED"}
LATENCY_TICK = 0.1  # seconds between the latency phase's batches
NOOP = "comms.noop"
# Both gunicorns (the platform's and the ceiling's) run this many sync workers.
WEB_WORKERS = 2
SINGLE_POST_ROUNDS = 8
HOT_TABLES = ["comms_message", "comms_messageevent", "comms_receipt", "deliveries_delivery",
              "deliveries_deliveryattempt"]


def vacuum_hot_tables() -> None:
    """Start a phase from clean tables. Every claim and status change leaves a dead row
    version behind; autovacuum clears them as it goes, but a PostgreSQL with autovacuum
    off (as on the benchmark machine) keeps them, and earlier runs would slow later ones."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {', '.join(HOT_TABLES)}")


@dataclass
class Bench:
    messages: int
    clients: int = 8
    noop_tasks: int = 2000
    timeout: float = 600.0
    progress: bool = True
    results: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def run(self) -> dict:
        suffix = timezone.now().strftime("%Y%m%d%H%M%S%f")
        channel_upsert(name=CHANNEL, type="simulator", max_attempts=3, retry_delay=1, config={})
        _, bench_key = application_create(name=f"bench-{suffix}")
        self.ingest_app, ingest_key = application_create(name=f"bench-ingest-{suffix}")
        self.receiver = Receiver()
        # Production settings, but for the receiver on this machine's loopback.
        self.procs = Processes(Path(settings.VAR_DIR) / "bench-logs", extra_env={
            "DEBUG": "off", "SECRET_KEY": secrets.token_urlsafe(40),
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "on",
            "WEB_CONCURRENCY": str(WEB_WORKERS),
        })
        try:
            self._start()
            self.bench_api = self._session(bench_key)
            self.ingest_api = self._session(ingest_key)
            self._subscribe()
            self._measure()
        finally:
            self.procs.stop_all()
            self.receiver.stop()
            ceiling_table_drop()
        Application.objects.filter(id=self.ingest_app.id).delete()
        self.results["messages"] = self.messages
        self.results["ok"] = not self.problems
        self.results["problems"] = self.problems[:20]
        return self.results

    def _start(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with celery_app.connection_for_write() as conn:
            for queue in settings.RELAY_QUEUES:
                conn.default_channel.queue_purge(queue)
        self.procs.start("web", port=port)
        wait_http(self.base + "/healthz")
        for worker in STAGE_WORKERS:
            self.procs.start(worker)

    def _measure(self) -> None:
        results = self.results
        results["celery_noop_tasks_per_s"] = self.phase_noop()
        results["ingest_batch_messages_per_s"] = self.phase_ingest_batch()
        results["ceiling_requests_per_s"], results["ingest_single_requests_per_s"] = self.phase_single_posts()
        results["single_post_ceiling_ratio"] = round(
            results["ingest_single_requests_per_s"] / results["ceiling_requests_per_s"], 3)
        Message.objects.filter(application=self.ingest_app).delete()
        vacuum_hot_tables()
        lifecycle, webhooks = self.phase_lifecycle()
        results["lifecycle_messages_per_s"] = lifecycle
        results["webhooks_per_s"] = webhooks
        vacuum_hot_tables()
        results["latency_ms"] = self.phase_latency(lifecycle / 2)
        results["ratio_lifecycle_to_noop"] = round(lifecycle / results["celery_noop_tasks_per_s"], 3)
        results["worker_rss_mb"] = round(
            peak_rss_mb([pid for worker in STAGE_WORKERS for pid in self.procs.tree_pids(worker)]), 1)

    # --- phases -------------------------------------------------------------------------
    def phase_noop(self) -> float:
        tally = Path(tempfile.mkdtemp()) / "noop.tally"
        tally.touch()
        # Warm the workers up so process start-up is not measured.
        celery_app.send_task(NOOP, args=(str(tally),))
        self._wait("warm-up", lambda: tally.stat().st_size, 1)
        tally.write_bytes(b"")
        started = time.monotonic()
        for _ in range(self.noop_tasks):
            celery_app.send_task(NOOP, args=(str(tally),))
        took = self._wait("noop tasks", lambda: tally.stat().st_size, self.noop_tasks)
        return round(self.noop_tasks / (took or (time.monotonic() - started)), 1)

    def phase_ingest_batch(self) -> float:
        # Scheduled a day ahead: accepted and stored exactly like others, but they start no work
        # that would compete with the measurement. They are deleted afterwards.
        count = max(min(self.messages, 10_000), 1)
        send_at = (timezone.now() + timedelta(days=1)).isoformat()
        bodies = [self._batch_body(range(i, min(count, i + 1000)), send_at) for i in range(0, count, 1000)]
        started = time.monotonic()
        for body in tqdm(bodies, desc="ingest batch", unit="req", disable=not self.progress):
            self._expect(self.ingest_api.post(f"{self.base}/api/v1/messages/batch", data=body,
                                              headers={"Content-Type": "application/json"}), 202)
        return round(count / (time.monotonic() - started), 1)

    def phase_single_posts(self) -> tuple[float, float]:
        """Single POSTs of message bodies (scheduled a day ahead) from `clients` concurrent
        clients, to the platform and to its ceiling: a minimal DRF view (comms.bench.ceiling)
        served by the same gunicorn line as `web`. Returns (ceiling, platform) requests/s."""
        web = procfile_command("web")
        if "config.wsgi" not in web:
            raise RuntimeError(f"the Procfile's web line does not serve config.wsgi: {web}")
        ceiling_table_create()
        port = free_port()
        self.procs.start("web-ceiling", port=port, command=web.replace("config.wsgi", "comms.bench.ceiling_wsgi"))
        count = max(min(self.messages, 2000), 1)
        send_at = (timezone.now() + timedelta(days=1)).isoformat()
        bodies = [{"channel": CHANNEL, "receiver": f"+4477009{i:05d}", "content": {"text": "bench"},
                   "sendAt": send_at} for i in range(count)]
        try:
            wait_http(f"http://127.0.0.1:{port}/ceiling")  # a GET is a 405: it answers
            rates = compare({"ceiling": f"http://127.0.0.1:{port}/ceiling", "single": f"{self.base}/api/v1/messages"},
                            bodies, rounds=SINGLE_POST_ROUNDS, clients=self.clients, expect=202,
                            headers={"Authorization": self.ingest_api.headers["Authorization"]},
                            progress=self.progress)
        finally:
            self.procs.stop("web-ceiling")
        return rates["ceiling"], rates["single"]

    def phase_lifecycle(self) -> tuple[float, float]:
        n = self.messages
        self.receiver.drain()
        seen_before = len(self.receiver.got)
        bodies = [self._batch_body(range(i, min(n, i + 1000))) for i in range(0, n, 1000)]
        started = time.time()
        ids: list[str] = []
        for body in bodies:
            response = self.bench_api.post(f"{self.base}/api/v1/messages/batch", data=body,
                                           headers={"Content-Type": "application/json"})
            self._expect(response, 202)
            ids += [m["id"] for m in response.json()["messages"]]
        wanted = set(ids)

        def received():
            return len({r[0] for r in self.receiver.drain()[seen_before:] if r[1] in wanted})

        self._wait("lifecycle webhooks", received, 3 * n)
        records = [r for r in self.receiver.got[seen_before:] if r[1] in wanted]
        self._check_lifecycle(ids, records)
        finished = max((r[3] for r in records), default=time.time())
        took = max(finished - started, 1e-6)
        return round(n / took, 1), round(3 * n / took, 1)

    def phase_latency(self, rate: float) -> dict:
        """Accept → DELIVERED webhook at `rate` messages/s, sent as a small batch every TICK
        seconds: the ingest path of the lifecycle phase whose rate this is half of."""
        count = max(min(self.messages // 4, 1000), 20)
        per_tick = max(1, round(rate * LATENCY_TICK))
        interval = per_tick / max(rate, 0.1)
        self.receiver.drain()
        seen_before = len(self.receiver.got)
        accepted: dict[str, float] = {}
        next_at = time.monotonic()
        bar = tqdm(total=count, desc=f"latency @ {rate:.0f}/s", unit="msg", disable=not self.progress)
        for start in range(0, count, per_tick):
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            t0 = time.time()
            response = self.bench_api.post(f"{self.base}/api/v1/messages/batch", data=self._batch_body(
                range(start, min(count, start + per_tick)), receiver_prefix="+4477008"),
                headers={"Content-Type": "application/json"})
            self._expect(response, 202)
            accepted.update((m["id"], t0) for m in response.json()["messages"])
            bar.update(len(response.json()["messages"]))
        bar.close()

        def delivered():
            return sum(1 for r in self.receiver.drain()[seen_before:]
                       if r[1] in accepted and r[2] == "DELIVERED")

        self._wait("latency webhooks", delivered, count, progress=False)
        done = {r[1]: r[3] for r in self.receiver.got[seen_before:] if r[1] in accepted and r[2] == "DELIVERED"}
        latencies = sorted((done[m] - t0) * 1000 for m, t0 in accepted.items() if m in done)
        if len(latencies) < count:
            self.problems.append(f"latency: {count - len(latencies)} messages not delivered")
        return {f"p{q}": round(_percentile(latencies, q), 1) for q in (50, 95, 99)}

    # --- helpers ------------------------------------------------------------------------
    def _subscribe(self) -> None:
        response = self.bench_api.post(f"{self.base}/api/v1/subscriptions",
                                       json={"url": self.receiver.url + "/bench", "description": "benchmark"})
        self._expect(response, 201)
        self.receiver.add_secret("/bench", response.json()["secret"])

    def _check_lifecycle(self, ids: list[str], records: list[tuple]) -> None:
        codes: dict[str, set[str]] = defaultdict(set)
        for event_id, message_id, code, _, problem in records:
            codes[message_id].add(code)
            if problem:
                self.problems.append(f"webhook {event_id}: {problem}")
        wrong = [m for m in ids if codes.get(m) != EXPECTED]
        if wrong:
            self.problems.append(f"{len(wrong)} messages without exactly QUEUED, SENT, DELIVERED webhooks")
        undelivered = Message.objects.filter(id__in=ids).exclude(status=Status.DELIVERED).count()
        if undelivered:
            self.problems.append(f"{undelivered} messages not DELIVERED")

    def _batch_body(self, indexes, send_at: str | None = None, receiver_prefix: str = "+4477009") -> bytes:
        extra = {"sendAt": send_at} if send_at else {}
        return json.dumps({"messages": [
            {"channel": CHANNEL, "receiver": f"{receiver_prefix}{i:05d}", "content": {"text": "bench"}, **extra}
            for i in indexes
        ]}).encode()

    def _session(self, key: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        return session

    def _expect(self, response: requests.Response, status: int) -> None:
        if response.status_code != status:
            raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}")

    def _wait(self, label: str, count_now, target: int, progress: bool = True) -> float | None:
        started = time.monotonic()
        bar = tqdm(total=target, desc=label, unit="", disable=not (self.progress and progress))
        done = 0
        while time.monotonic() - started < self.timeout:
            done = count_now()
            bar.update(done - bar.n)
            if done >= target:
                bar.close()
                return time.monotonic() - started
            time.sleep(0.02)
        bar.close()
        self.problems.append(f"{label}: {done} of {target} after {self.timeout:.0f}s")
        return None


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
