"""The platform's own processes, started from the Procfile's lines, on this database."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection


def procfile_command(name: str) -> str:
    for line in (Path(settings.BASE_DIR) / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise KeyError(f"no {name!r} process in the Procfile")


def database_url() -> str:
    """The URL of the database this process is using (the test database under pytest)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Starts Procfile processes with this interpreter's environment; stops them all."""

    def __init__(self, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        bin_dir = os.path.dirname(sys.executable)
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "RELAY_VAR_DIR": str(settings.VAR_DIR),
            "RELAY_BROKER_DIR": str(settings.BROKER_DIR),
            **(extra_env or {}),
        }
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *, port: int | None = None, command: str | None = None) -> subprocess.Popen:
        """Run the Procfile's line for `name` (or `command`) under bash, as honcho would."""
        env = dict(self.env, PORT=str(port or 8000))
        process = subprocess.Popen(
            ["bash", "-c", "exec " + (command or procfile_command(name))], env=env, cwd=settings.BASE_DIR, start_new_session=True,
            stdout=open(self.log_dir / f"{name}.log", "ab"), stderr=subprocess.STDOUT,
        )
        self.running[name] = process
        return process

    def stop(self, name: str) -> None:
        process = self.running.pop(name, None)
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with _quiet():
                os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def tree_pids(self, name: str) -> list[int]:
        """The process and its children (a Celery worker's pool processes)."""
        root = self.running[name].pid
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(root)], capture_output=True, text=True)
        return [root, *[int(p) for p in out.stdout.split()]]


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def peak_rss_mb(pids: list[int]) -> float:
    """The largest peak resident set (VmHWM) among these processes, in MiB."""
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except FileNotFoundError:
            continue
    return peak / 1024

