"""Run Procfile processes and bring back any that dies, so one crash never takes the others down.

honcho (and foreman) stop every process when one exits: right for development, wrong for a
platform left running unattended. The supervisor reads the Procfile with honcho's own parser,
starts each process in its own process group, prefixes its output like honcho, and restarts a
process that exits with a backoff that doubles from `first_backoff` up to `max_backoff` (reset
once it has stayed up for `stable_after` seconds). SIGINT or SIGTERM stops them all.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from honcho.environ import parse_procfile


@dataclass
class Child:
    name: str
    command: str
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, procfile: Path, names: list[str], env: dict[str, str] | None = None, *,
                 first_backoff: float = 1.0, max_backoff: float = 30.0, stable_after: float = 60.0,
                 out=None):
        processes = parse_procfile(Path(procfile).read_text()).processes
        missing = [name for name in names if name not in processes]
        if missing:
            raise ValueError(f"not in {procfile}: {', '.join(missing)}")
        self.children = [Child(name, processes[name]) for name in names]
        self.env = dict(os.environ if env is None else env)
        self.cwd = Path(procfile).parent
        self.first_backoff, self.max_backoff, self.stable_after = first_backoff, max_backoff, stable_after
        self.out = out or sys.stdout
        self.width = max(len(name) for name in names)
        self._print_lock = threading.Lock()
        self._stopping = threading.Event()

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name.ljust(self.width)} | {line}\n")
            self.out.flush()

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.command, shell=True, cwd=self.cwd, env=self.env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace", bufsize=1,
        )
        child.started_at, child.restart_at = time.monotonic(), None
        child.starts += 1
        child.pids.append(child.proc.pid)
        threading.Thread(target=self._pump, args=(child.name, child.proc), daemon=True).start()
        self.say("system", f"{child.name} started (pid {child.proc.pid})")

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.say(name, line.rstrip("\n"))

    def _reap(self, child: Child, now: float) -> None:
        code = child.proc.poll()
        if code is None:
            return
        _signal_group(child.proc, signal.SIGKILL)  # stragglers of a dead leader (pool children)
        child.proc = None
        stable = now - child.started_at >= self.stable_after
        child.backoff = self.first_backoff if stable or not child.backoff else min(child.backoff * 2, self.max_backoff)
        child.restart_at = now + child.backoff
        self.say("system", f"{child.name} exited with code {code}; restarting in {child.backoff:g} s")

    def step(self) -> None:
        """One pass: reap what exited, start what is due."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None:
                self._reap(child, now)
            elif child.restart_at is not None and now >= child.restart_at:
                self._start(child)

    def run(self, poll: float = 0.2) -> int:
        previous = {sig: signal.signal(sig, lambda *_: self._stopping.set())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not self._stopping.wait(poll):
                self.step()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process group, then SIGKILL what is left of them after `grace` seconds.

        The group, not just the shell: a Procfile command's real process (celery, gunicorn) is the
        shell's child and outlives it."""
        self._stopping.set()
        running = [child.proc for child in self.children if child.proc is not None]
        for proc in running:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(proc) for proc in running):
            time.sleep(0.1)
        for proc in running:
            if _group_alive(proc):
                _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.say("system", "all processes stopped")


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(proc: subprocess.Popen) -> bool:
    """Whether any process of the group still runs (zombies left to an init that never reaps
    them do not count)."""
    proc.poll()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == proc.pid and fields[0] != "Z":
            return True
    return False
