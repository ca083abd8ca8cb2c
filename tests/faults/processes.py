"""The platform under test: the Procfile's process types, run as their own process groups.

Every long-running process starts from its Procfile line (`bash -c 'exec <line>'`), in a
work directory of its own with RELAY_VAR_DIR inside it (beat's schedule lands there, never
in the checkout, where another beat may be using it), with the environment pointing at the
throwaway servers. Each is a session leader, so a kill reaches its whole process group
(gunicorn's and prefork celery's children included).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
PROCESS_TYPES = ("web", "worker-send", "worker-receipts", "worker-webhooks", "worker-sweeps", "beat")
# What each process type logs once it can work.
READY = {"web": re.compile(r"Booting worker"), "beat": re.compile(r"beat: Starting")}
WORKER_READY = re.compile(r"\bready\.")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if re.match(r"^[\w-]+:", line))


def environment(*, database_url: str, broker_url: str, web_port: int, var_dir: Path) -> dict[str, str]:
    """Production settings (DEBUG off), with the recovery knobs turned down so that what the
    sweepers pick up is picked up within seconds rather than a minute."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("RELAY_", "WEBHOOK_", "CELERY_", "DB_")):
            del env[name]  # only what is set here: a developer's shell must not change the run
    env.update({
        # The venv of the interpreter running the suite (.ci/faults: the checkout's .venv)
        # provides gunicorn and celery.
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "DEBUG": "off",
        "SECRET_KEY": "relay-fault-suite-" + os.urandom(16).hex(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "RELAY_VAR_DIR": str(var_dir),
        "PORT": str(web_port),
        "BIND": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "RELAY_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        # Sweeps every 2 s; a published send not claimed within 5 s is published again;
        # the claim lease is as short as the settings allow (it must outlast the 40 s
        # task time limit).
        "RELAY_SWEEP_INTERVAL": "2",
        "RELAY_DISPATCH_GRACE": "5",
        "RELAY_CLAIM_LEASE": "42",
        # Webhooks: retries within seconds (8 attempts over ~40 s), probes every 2 s while
        # an endpoint backs off.
        "WEBHOOK_RETRY_SCHEDULE": "1,2,4,8,8,8,8",
        "WEBHOOK_BREAKER_PROBE_INTERVAL": "2",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
        "LOG_LEVEL": "INFO",
    })
    return env


class Process:
    def __init__(self, name: str, command: str, *, env: dict, cwd: Path, log_dir: Path):
        self.name, self.command, self.env, self.cwd = name, command, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.log_offset = 0
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write(f"\n===== fault suite: start #{self.starts} at {time.strftime('%H:%M:%S')}\n")
        self.log_offset = self.log_path.stat().st_size
        self.popen = subprocess.Popen(
            ["bash", "-c", f"exec {self.command}"], cwd=self.cwd, env=self.env,
            stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_since_start(self) -> str:
        with open(self.log_path, errors="replace") as log:
            log.seek(self.log_offset)
            return log.read()

    def last_error(self) -> str:
        """Why it died: the last CRITICAL line it logged since it started, else the last ERROR."""
        lines = self.log_since_start().splitlines()
        for level in (" CRITICAL ", " ERROR "):
            found = [line for line in lines if level in line]
            if found:
                return found[-1][:300]
        return f"exit status {self.popen.poll() if self.popen else None}"

    def wait_ready(self, timeout: float = 60) -> bool:
        pattern = READY.get(self.name, WORKER_READY)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if pattern.search(self.log_since_start()):
                return True
            time.sleep(0.2)
        return False

    def kill(self) -> None:
        """SIGKILL to the whole process group: no warm shutdown, nothing acknowledged."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the leader (celery's warm shutdown, gunicorn's graceful one), then the
        whole group is killed, so no child outlives the suite."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class Platform:
    def __init__(self, *, env: dict, work_dir: Path, log_dir: Path, web_port: int):
        self.env, self.work_dir, self.log_dir = env, work_dir, log_dir
        self.base = f"http://127.0.0.1:{web_port}"
        lines = procfile()
        self.release_command = lines["release"].strip()
        self.processes = {name: Process(name, lines[name].strip(), env=env, cwd=work_dir, log_dir=log_dir)
                          for name in PROCESS_TYPES}

    # --- one-off commands ------------------------------------------------------------------

    def run(self, command: list[str] | str, *, env: dict | None = None, timeout: float = 120) -> str:
        """A one-off command in the checkout (manage.py lives there); its output, or an error."""
        shell = isinstance(command, str)
        result = subprocess.run(command, shell=shell, cwd=ROOT, env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=timeout)
        with open(self.log_dir / "commands.log", "a") as log:
            log.write(f"$ {command}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def manage(self, *args: str) -> str:
        return self.run([sys.executable, "manage.py", *args])

    def release(self) -> None:
        """The Procfile's release line, as a platform's release phase runs it (DYNO=release.1):
        it does its work and exits, even where it would otherwise idle (--hold)."""
        self.run(self.release_command, env={"DYNO": "release.1"}, timeout=120)

    # --- processes ---------------------------------------------------------------------------

    def start(self, *names: str, timeout: float = 60) -> None:
        names = names or PROCESS_TYPES
        for name in names:
            self.processes[name].start()
        for name in names:
            if not self.processes[name].wait_ready(timeout):
                raise RuntimeError(f"{name} did not become ready; see {self.processes[name].log_path}")
        if "web" in names and not self.healthy(timeout):
            raise RuntimeError(f"web never answered /healthz; see {self.processes['web'].log_path}")

    def healthy(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/healthz", timeout=5).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        return False

    def dead(self) -> list[str]:
        return [name for name, proc in self.processes.items() if proc.popen is not None and not proc.alive()]

    def revive(self) -> list[str]:
        """Start again whatever died, so one case's casualty does not fail the next."""
        dead = self.dead()
        if dead:
            self.start(*dead)
        return dead

    def stop_all(self, timeout: float = 10) -> None:
        """SIGTERM to every leader at once, then SIGKILL to every group."""
        running = [proc for proc in self.processes.values() if proc.alive()]
        for proc in running:
            proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.processes.values():
            proc.kill()
