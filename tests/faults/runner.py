"""Start throwaway servers and the platform, run the cases, report, clean up."""

import argparse
import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .processes import Platform, environment
from .receiver import WebhookReceiver
from .servers import PostgresCluster, RedisServer, spare_port

ORDER = ("smoke", "kill", "flush", "postgres", "redis", "receiver", "hanging")


class Cleanup:
    """Runs the registered steps once, last registered first, whatever ends the run:
    a return, an exception, SIGTERM (CI's timeout), SIGINT, or interpreter exit."""

    def __init__(self):
        self.steps: list[tuple[str, object]] = []
        self.done = False
        atexit.register(self.run)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        # Once: a second stop request (CI often signals the script and its group) must not
        # interrupt the cleanup the first one started.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    def add(self, what: str, step) -> None:
        self.steps.append((what, step))

    def run(self) -> None:
        if self.done:
            return
        self.done = True
        for what, step in reversed(self.steps):
            try:
                step()
            except Exception as exc:
                print(f"  cleanup: {what} failed: {exc}", file=sys.stderr)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("cases", nargs="*", metavar="CASE",
                        help=f"cases to run, in the suite's order (default: all of {', '.join(ORDER)})")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory even on success")
    args = parser.parse_args(argv)
    unknown = set(args.cases) - set(ORDER)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {', '.join(ORDER)}")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    chosen = [c for c in ORDER if c in args.cases] if args.cases else list(ORDER)
    if "smoke" not in chosen:
        chosen.insert(0, "smoke")
    wall = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="relay-faults-"))
    logs = work / "logs"
    logs.mkdir()
    cleanup = Cleanup()
    keep = {"logs": True}  # until the run ends well: a setup that fails keeps its logs
    cleanup.add("work directory", lambda: keep["logs"] or shutil.rmtree(work, ignore_errors=True))

    pg_port, redis_port, web_port = spare_port(), spare_port(), spare_port()
    while len({pg_port, redis_port, web_port}) < 3:
        redis_port, web_port = spare_port(), spare_port()
    cluster = os.environ.get("RELAY_FAULT_CLUSTER") or f"relayfault{pg_port}"
    pg = PostgresCluster(cluster, pg_port)
    redis = RedisServer(redis_port, logs / "redis.log")
    receiver = WebhookReceiver()
    print(f"fault suite: PostgreSQL {pg.version} cluster {cluster} on {pg_port}, Redis on {redis_port}, "
          f"web on {web_port}; logs in {logs}", flush=True)

    cleanup.add("PostgreSQL cluster", pg.drop)
    cleanup.add("PostgreSQL log", lambda: shutil.copy(pg.log_path(), logs / "postgresql.log"))
    pg.create()
    cleanup.add("Redis", redis.stop)
    redis.start()
    cleanup.add("receiver", receiver.stop)
    receiver.start()

    env = environment(database_url=pg.url, broker_url=redis.url, web_port=web_port, var_dir=work / "var")
    os.environ.update(env)
    import django

    django.setup()
    # Django is set up for the throwaway database: only now can the ORM-using modules load.
    from .cases import CASES, CHANNEL, CHANNEL_CONFIG, LABELS, Suite
    from .harness import Report, make_tenant

    platform = Platform(env=env, work_dir=work, log_dir=logs, web_port=web_port)
    cleanup.add("platform processes", platform.stop_all)
    report = Report()
    setup_started = time.monotonic()
    platform.release()
    platform.manage("createchannel", CHANNEL, "--type", "simulator", "--max-attempts", "3",
                    "--retry-delay", "1", "--config", json.dumps(CHANNEL_CONFIG))
    platform.start()
    print(f"platform up in {time.monotonic() - setup_started:.1f} s "
          f"({', '.join(platform.processes)})", flush=True)
    suite = Suite(platform=platform, pg=pg, redis=redis, receiver=receiver, report=report,
                  make_tenant=lambda name: make_tenant(platform, receiver, name))

    timings = {}
    for name in chosen:
        case_start = time.monotonic()
        print(f"\n--- {LABELS[name]}: {' '.join((CASES[name].__doc__ or '').split())}", flush=True)
        try:
            CASES[name](suite)
        except Exception:
            report.check(LABELS[name], "the case ran to completion", False, traceback.format_exc().strip().splitlines()[-1])
            traceback.print_exc()
        if not receiver.up:
            receiver.start()
        dead = platform.dead()
        report.check(LABELS[name], "every platform process still running after the case", not dead,
                     f"died: {dead}; logs in {logs}" if dead else "")
        if dead:
            platform.revive()
        timings[name] = time.monotonic() - case_start
        print(f"      ({name} took {timings[name]:.1f} s)", flush=True)

    with receiver.lock:
        bad = list(receiver.bad)
    report.check("all", "every webhook request verified by standardwebhooks", not bad,
                 f"{len(bad)} bad" + (f", first: {bad[0]}" if bad else ""))

    failed = report.failed
    total = time.monotonic() - wall
    print(f"\nSUMMARY {len(report.results) - len(failed)} passed, {len(failed)} failed in {total:.1f} s "
          f"({', '.join(f'{k} {v:.0f}s' for k, v in timings.items())})")
    for case, check, _, detail in failed:
        print(f"  FAILED [{case}] {check}  {detail}")
    keep["logs"] = bool(failed) or args.keep_logs
    if keep["logs"]:
        print(f"logs kept in {logs}")
    return 1 if failed else 0
