"""Throwaway PostgreSQL and Redis servers on spare ports, for the fault suite only.

The machine's own PostgreSQL (5432) and Redis (6379) are never touched: the suite creates
its own cluster with pg_createcluster and runs its own redis-server subprocess, and removes
both when it ends, however it ends.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg2
import redis


def spare_port() -> int:
    """A port nothing listens on now: the kernel's pick for a bind to port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-1500:]}")


def postgres_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])
    if not versions:
        raise RuntimeError("no PostgreSQL installed (/etc/postgresql is empty)")
    return versions[-1]


class PostgresCluster:
    """`pg_createcluster <ver> <name> -p <port>` with trust auth on 127.0.0.1; dropped on close.

    Durability is off (fsync, full-page writes): the data is thrown away anyway, and a
    fast server leaves more of the two cores to the platform under test.
    """

    database = "relay_faults"

    def __init__(self, name: str, port: int):
        self.version = postgres_version()
        self.name, self.port = name, port
        self.created = False

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _ctl(self, action: str) -> None:
        run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action])

    def create(self) -> None:
        run(
            ["pg_createcluster", self.version, self.name, "-p", str(self.port),
             "-o", "fsync=off", "-o", "full_page_writes=off",
             "-o", "synchronous_commit=off", "-o", "max_connections=200",
             "--", "--auth=trust"])
        self.created = True
        self.start()
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.database}")
        conn.close()

    def ready(self) -> bool:
        try:
            psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             connect_timeout=1).close()
            return True
        except psycopg2.OperationalError:
            return False

    def start(self) -> None:
        self._ctl("start")
        if not wait_for(self.ready, 30):
            raise RuntimeError(f"PostgreSQL cluster {self.name} did not accept connections")

    def stop(self) -> None:
        """A fast shutdown: every session is ended, new connections are refused."""
        self._ctl("stop")

    def log_path(self) -> str:
        return f"/var/log/postgresql/postgresql-{self.version}-{self.name}.log"

    def drop(self) -> None:
        if not self.created:
            return
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.name], capture_output=True)
        self.created = False


class RedisServer:
    """`redis-server --port <spare> --save "" --appendonly no`: a restart comes back empty."""

    def __init__(self, port: int, log_path: Path):
        self.port, self.log_path = port, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def ready(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.log_path.parent)],
            stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_for(self.ready, 15):
            raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def stop(self) -> None:
        """SIGTERM and wait: with no persistence configured, nothing survives."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
