"""The fault cases. Each makes its own application (so its checks see only its own messages
and webhooks), injects one fault into the running platform, and checks that every message
reaches DELIVERED, none is sent twice and every webhook lands.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from deliveries.models import DeliveryAttempt
from tests.hanging import Hanging

from .harness import (
    OutagePoller,
    Report,
    Submitter,
    Tenant,
    check_answers,
    check_delivered,
    db,
    p95,
    submit_batches,
    wait_until,
)
from .processes import Platform
from .receiver import WebhookReceiver
from .servers import PostgresCluster, RedisServer

CHANNEL = "fault-sim"
# receiptDelay: receipts ride a countdown, so a fault can catch them in flight.
CHANNEL_CONFIG = {"receiptDelay": 1}


@dataclass
class Suite:
    platform: Platform
    pg: PostgresCluster
    redis: RedisServer
    receiver: WebhookReceiver
    report: Report
    make_tenant: object  # name -> Tenant

    def tenant(self, name: str) -> Tenant:
        return self.make_tenant(name)


def statuses(tenant: Tenant) -> Counter:
    return Counter(db(lambda: list(tenant.messages().values_list("status", flat=True))))


def case_smoke(s: Suite) -> None:
    """The platform works before anything is broken (else every FAIL below means nothing)."""
    case = LABELS["smoke"]
    t = s.tenant("smoke")
    start = time.monotonic()
    ids = submit_batches(t, CHANNEL, 20)
    check_delivered(s.report, case, t, s.receiver, ids=ids, since=start, since_what="submission", timeout=60)


def case_kill_send_worker(s: Suite, n: int = 300) -> None:
    """SIGKILL to worker-send's process group while it works through a backlog: the
    messages it had claimed wait out their lease, its prefetched tasks are gone with it;
    the sweeper publishes them again and the restarted worker sends each attempt once."""
    case = LABELS["kill"]
    t = s.tenant("kill")
    ids: list[str] = []
    submitter = threading.Thread(target=lambda: ids.extend(submit_batches(t, CHANNEL, n, size=100)), daemon=True)
    submitter.start()

    def in_flight() -> tuple[int, int]:
        """(claimed and not yet SENT, past QUEUED)"""
        rows = db(lambda: list(t.messages().values_list("status", "leased_until")))
        now = timezone.now()
        claimed = sum(1 for status, until in rows if status == "QUEUED" and until and until > now)
        return claimed, sum(1 for status, _ in rows if status != "QUEUED")

    # Kill while a chunk is claimed but not yet recorded SENT, once the stream is under way.
    def mid_chunk() -> bool:
        claimed, past_queued = in_flight()
        return claimed > 0 and past_queued >= n // 10

    caught = wait_until(mid_chunk, 30, 0.005)
    s.platform.processes["worker-send"].kill()
    killed = time.monotonic()
    claimed, _ = in_flight()
    at_kill = statuses(t)
    submitter.join(60)
    # The poll and the kill race the worker: the chunk seen claimed may be recorded SENT
    # (its receipts not yet published) by the time the kill lands. Either way a recovery
    # path is exercised: the lease for claimed messages, the receipt poll for SENT ones.
    s.report.note(case, f"killed {'just after a chunk was seen claimed' if caught is not None else 'WITHOUT seeing a claimed chunk'}; "
                        f"after the kill: statuses {dict(at_kill)}, {claimed} claimed and not SENT")
    time.sleep(2)  # the rest of the backlog waits in the queue meanwhile
    s.platform.start("worker-send")
    restarted = time.monotonic()
    s.report.note(case, f"worker-send restarted {restarted - killed:.1f} s after the kill; statuses "
                        f"{dict(statuses(t))}")
    s.report.check(case, f"{n} messages accepted around the kill", len(ids) == n, f"{len(ids)}/{n}")
    check_delivered(s.report, case, t, s.receiver, ids=ids, since=restarted, since_what="the restart")


def case_flush_broker(s: Suite, n: int = 200) -> None:
    """FLUSHALL with send tasks queued (worker-send stopped, so they wait in Redis) and the
    webhook tasks of their QUEUED events: the rows are the outbox, the sweepers publish
    again what the broker lost."""
    case = LABELS["flush"]
    t = s.tenant("flush")
    s.platform.processes["worker-send"].stop()
    ids = submit_batches(t, CHANNEL, n, size=50)
    time.sleep(0.5)
    client = s.redis.client()
    queued = {q: client.llen(q) for q in settings.RELAY_QUEUES}
    client.flushall()
    flushed = time.monotonic()
    s.report.note(case, f"flushed with tasks queued {queued}; keys after the flush {client.dbsize()}")
    s.platform.start("worker-send")
    s.report.check(case, "send tasks were queued when the broker was flushed", queued.get("send", 0) > 0,
                   f"{queued.get('send', 0)} send task(s) flushed")
    check_delivered(s.report, case, t, s.receiver, ids=ids, since=flushed, since_what="the flush")


def _outage(s: Suite, case: str, t: Tenant, n: int, *, stop, start, lead: float, down: float,
            all_503_while_down: bool, quiet: bool = False) -> None:
    """Submit n single messages (Idempotency-Key, retried until accepted) from 3 clients;
    `lead` s in, `stop()` a server for `down` s while one more client polls the API."""
    (first,) = submit_batches(t, CHANNEL, 1)
    submitter = Submitter(t, CHANNEL, n, threads=3, pace=0.05, prefix=case.split()[0]).start()
    time.sleep(lead)
    before = statuses(t)
    poller = OutagePoller(t, CHANNEL, first).start()
    marks = _log_marks(s)
    began = time.monotonic()
    stop()
    stopped = time.monotonic()
    time.sleep(down)
    restarting = time.monotonic()
    start()
    back = time.monotonic()
    s.report.note(case, f"stopped in {stopped - began:.1f} s, started {restarting - stopped:.1f} s later, "
                        f"answering again {back - stopped:.1f} s after it stopped; statuses as it went down "
                        f"{dict(before)}")
    time.sleep(3.0)
    seen = poller.stop()
    # A process that died of the outage is a failure of its own; a supervisor (systemd,
    # runplatform) would start it again, so do that and go on checking the messages.
    if quiet:
        storm = _tracebacks_since(s, marks)
        s.report.check(case, "the outage is logged quietly: no traceback from any platform process",
                       not storm, f"tracebacks by process: {storm}" if storm else "0 tracebacks")
    dead = s.platform.dead()
    s.report.check(case, "every platform process survived the outage", not dead,
                   "; ".join(f"{name} died: {s.platform.processes[name].last_error()}" for name in dead))
    if dead:
        s.platform.revive()
        s.report.note(case, f"restarted {dead} {time.monotonic() - back:.1f} s after the server came back")
    finished = submitter.join(120)
    s.report.check(case, f"all {n} submissions accepted in the end (retried after 503)",
                   finished and len(submitter.accepted) == n,
                   f"{len(submitter.accepted)}/{n} accepted")
    after = [x for x in submitter.seen if x.at - x.took > back]
    s.report.note(case, f"the last submission accepted {max(submitter.accepted.values(), default=back) - back:.1f} s "
                        f"after the server came back; answers after it came back: {len(after)}, slowest "
                        f"{max((x.took for x in after), default=0):.2f} s")
    check_answers(s.report, case, submitter.seen + seen, (began, back), (stopped, restarting),
                  all_503_while_down=all_503_while_down)
    check_delivered(s.report, case, t, s.receiver, ids=set(submitter.accepted) | {first} | poller.created,
                    since=back, since_what="the server came back")


def _log_marks(s: Suite) -> dict[str, int]:
    return {name: p.log_path.stat().st_size for name, p in s.platform.processes.items() if p.log_path.exists()}


def _tracebacks_since(s: Suite, marks: dict[str, int]) -> dict[str, int]:
    """Tracebacks each process logged after `marks` (a lost database is one warning line per
    task or request, never a traceback: comms/outages.py)."""
    counts = {}
    for name, process in s.platform.processes.items():
        with open(process.log_path, errors="replace") as log:
            log.seek(marks.get(name, 0))
            found = log.read().count("Traceback")
        if found:
            counts[name] = found
    return counts


def case_restart_postgres(s: Suite, n: int = 240) -> None:
    """PostgreSQL stopped for 5 s and started again while messages are submitted and
    processed: the API answers 503 unavailable meanwhile, never 500, and the work resumes."""
    case = LABELS["postgres"]
    t = s.tenant("pgrestart")
    _outage(s, case, t, n, stop=s.pg.stop, start=s.pg.start, lead=3.0, down=5.0,
            all_503_while_down=True, quiet=True)


def case_restart_redis(s: Suite, n: int = 240) -> None:
    """Redis stopped for 5 s and started again, empty (no persistence), with messages in
    flight: what it held is lost, the rows are the outbox, the sweepers publish it again."""
    case = LABELS["redis"]
    t = s.tenant("redisrestart")
    _outage(s, case, t, n, stop=s.redis.stop, start=s.redis.start, lead=2.0, down=5.0,
            all_503_while_down=False)


def case_receiver_down(s: Suite, n: int = 150, down: float = 10.0) -> None:
    """The receiver's port closed while messages move; their webhooks fail to connect and
    the subscription backs off; once it listens again every webhook arrives."""
    case = LABELS["receiver"]
    t = s.tenant("rxdown")
    s.receiver.stop()
    went_down = time.monotonic()
    ids = submit_batches(t, CHANNEL, n, size=50)
    delivered = wait_until(lambda: statuses(t)["DELIVERED"] == n, 60)
    time.sleep(max(0.0, down - (time.monotonic() - went_down)))
    sub = t.subscription_ids[f"/{t.name}"]
    state = t.session().get(f"{t.base}/subscriptions/{sub}", timeout=30).json().get("state")
    s.receiver.start()
    back = time.monotonic()
    refused = db(lambda: DeliveryAttempt.objects.filter(delivery__subscription_id=sub)
                 .exclude(error_kind="").values_list("error_kind").annotate(n=Count("id")).order_by())
    s.report.note(case, f"down {back - went_down:.1f} s; messages DELIVERED meanwhile: "
                        f"{'yes' if delivered is not None else 'no'}; subscription state {state}; "
                        f"failed attempts by kind {dict(refused)}")
    s.report.check(case, "webhook attempts failed while the port was closed", bool(refused),
                   f"{dict(refused)}")
    check_delivered(s.report, case, t, s.receiver, ids=ids, since=back, since_what="the receiver came back")


def case_hanging_endpoint(s: Suite, n_a: int = 150, n_b: int = 100, n_base: int = 60) -> None:
    """Application A subscribes a healthy endpoint and one that accepts and never answers;
    while A's traffic holds that endpoint's connections open, application B's healthy
    subscription must keep getting its webhooks about as fast as it did alone."""
    case = LABELS["hanging"]
    hang = Hanging()
    a, b = s.tenant("hang-a"), s.tenant("hang-b")
    hang_sub = a.subscribe(f"{hang.url}/hang", "/hang", None)
    bound_open = settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIPTION
    try:
        b_path = f"/{b.name}"

        def latencies(accepted: dict[str, float]) -> list[float]:
            arrived = s.receiver.first_arrival(b_path, "DELIVERED")
            return [arrived[i] - at if i in arrived else float("inf") for i, at in accepted.items()]

        base = Submitter(b, CHANNEL, n_base, threads=2, pace=0.05, prefix="base").start()
        base.join(60)
        wait_until(lambda: all(x < float("inf") for x in latencies(base.accepted)), 60)
        base_p95 = p95(latencies(base.accepted))
        bound = max(2 * base_p95, base_p95 + 2.0)

        load_start = time.monotonic()
        a_ids = submit_batches(a, CHANNEL, n_a, size=50)
        hung = wait_until(lambda: hang.open["/hang"] >= bound_open, 20, 0.1)
        s.report.note(case, f"{hang.open['/hang']} connections hanging at A's endpoint "
                            f"{'' if hung is None else f'{hung:.1f} s '}after A's {n_a} messages")
        load_b = Submitter(b, CHANNEL, n_b, threads=2, pace=0.05, prefix="load").start()
        load_b.join(120)
        wait_until(lambda: all(x < float("inf") for x in latencies(load_b.accepted)), 90)
        load = latencies(load_b.accepted)
        got = sum(1 for x in load if x < float("inf"))
        load_p95 = p95(load)
        s.report.check(case, "B's healthy subscription gets its DELIVERED webhooks promptly while A's "
                             "endpoint hangs", got == n_b and load_p95 <= bound,
                       f"{got}/{n_b} received, p95 {load_p95:.2f} s (alone {base_p95:.2f} s, bound {bound:.2f} s)")
        check_delivered(s.report, case, b, s.receiver, ids=set(base.accepted) | set(load_b.accepted),
                        since=load_start, since_what="A's load began")
        check_delivered(s.report, case, a, s.receiver, ids=a_ids, since=load_start, since_what="A's load began")
        state = a.session().get(f"{a.base}/subscriptions/{hang_sub}", timeout=30).json().get("state")
        s.report.check(case, f"the hanging endpoint never holds more than {bound_open} connections",
                       0 < hang.max_open["/hang"] <= bound_open,
                       f"at most {hang.max_open['/hang']} open at once, {len(hang.arrivals['/hang'])} requests; "
                       f"subscription state {state}")
    finally:
        hang.release()
        # Left behind, it would go on probing a port nobody answers.
        a.session().delete(f"{a.base}/subscriptions/{hang_sub}", timeout=30)


LABELS = {
    "smoke": "0 smoke",
    "kill": "1 kill worker-send",
    "flush": "2 broker FLUSHALL",
    "postgres": "3 PostgreSQL restart",
    "redis": "4 Redis restart",
    "receiver": "5 webhook receiver down",
    "hanging": "6 hanging endpoint",
}
CASES = {
    "smoke": case_smoke,
    "kill": case_kill_send_worker,
    "flush": case_flush_broker,
    "postgres": case_restart_postgres,
    "redis": case_restart_redis,
    "receiver": case_receiver_down,
    "hanging": case_hanging_endpoint,
}
