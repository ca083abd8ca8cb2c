"""Process supervision: the run command brings back a process that dies and leaves the others
alone; the Procfile's `release` can run beside the others without ending them."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from comms.supervisor import Supervisor


def procfile(tmp_path: Path, **processes: str) -> Path:
    path = tmp_path / "Procfile"
    path.write_text("".join(f"{name}: {command}\n" for name, command in processes.items()))
    return path


def run_until(supervisor: Supervisor, done, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        supervisor.step()
        time.sleep(0.02)
    assert done(), "condition not reached in time"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_crashed_process_is_restarted_with_a_doubling_backoff_and_the_others_keep_running(tmp_path):
    out = io.StringIO()
    supervisor = Supervisor(
        procfile(tmp_path, crash="echo up; exit 3", steady="exec sleep 30"), ["crash", "steady"], {},
        first_backoff=0.05, max_backoff=0.2, stable_after=60, out=out,
    )
    crash, steady = supervisor.children
    supervisor.start()
    try:
        run_until(supervisor, lambda: crash.starts >= 4)
        backoffs = [float(line.split("restarting in ")[1].split()[0])
                    for line in out.getvalue().splitlines() if "crash exited with code 3" in line]
        assert backoffs[:3] == [0.05, 0.1, 0.2]
        assert steady.starts == 1 and steady.proc.poll() is None
        assert "crash  | up" in out.getvalue()
    finally:
        supervisor.stop(grace=5)


def test_a_process_that_stayed_up_long_enough_restarts_after_the_first_backoff_again(tmp_path):
    out = io.StringIO()
    supervisor = Supervisor(procfile(tmp_path, crash="exit 1"), ["crash"], {},
                            first_backoff=0.05, max_backoff=1, stable_after=0, out=out)
    crash = supervisor.children[0]
    supervisor.start()
    try:
        run_until(supervisor, lambda: crash.starts >= 3)
        assert "restarting in 0.1 s" not in out.getvalue()
    finally:
        supervisor.stop(grace=5)


def test_stop_ends_every_process_group_children_of_the_shell_included(tmp_path):
    supervisor = Supervisor(procfile(tmp_path, nested="sleep 30 & sleep 30; wait"), ["nested"], {},
                            out=io.StringIO())
    supervisor.start()
    shell = supervisor.children[0].proc
    time.sleep(0.2)
    members = subprocess.run(["pgrep", "-g", str(shell.pid)], capture_output=True, text=True).stdout.split()
    assert len(members) >= 2

    supervisor.stop(grace=5)

    survivors = lambda: [pid for pid in map(int, members) if alive(pid) and _not_zombie(pid)]  # noqa: E731
    deadline = time.monotonic() + 5
    while survivors() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not survivors()


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_name_not_in_the_procfile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not in .*: nope"):
        Supervisor(procfile(tmp_path, web="true"), ["web", "nope"], {})


def test_the_run_command_supervises_web_worker_and_beat_from_the_projects_procfile():
    supervisor = Supervisor(Path(settings.BASE_DIR) / "Procfile", ["web", "worker", "beat"], {})
    assert [child.name for child in supervisor.children] == ["web", "worker", "beat"]


# --- release -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_release_migrates_and_exits_in_a_platforms_release_phase_even_with_hold(monkeypatch):
    monkeypatch.setenv("DYNO", "release.1")
    out = io.StringIO()
    call_command("release", "--hold", stdout=out)
    assert "migrations applied" in out.getvalue()


def test_release_with_hold_idles_until_stopped_so_honcho_keeps_the_others(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'release.sqlite3'}"}
    env.pop("DYNO", None)
    proc = subprocess.Popen([sys.executable, "manage.py", "release", "--hold"], cwd=settings.BASE_DIR,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "idling" in line:
                break
        assert any("migrations applied" in line for line in lines), lines
        time.sleep(0.3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
