"""Leftovers after kill -9 (issue 17 item 6): forked workers die with their parent, and the next
scan marks scans left `running` as `interrupted` and removes stale `reports/.tmp-*` folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sample_site import copy_sample, emraudit, env, state

WORKERS = """
import os, sys, time
from pathlib import Path
from emraudit import forking
if sys.argv[2] == "watch":
    forking._pdeathsig = lambda: False          # the fallback: a thread watching the parent
out = Path(sys.argv[1])

def work(i):
    (out / f"worker-{i}").write_text(str(os.getpid()))
    time.sleep(120)

pool = forking.fork_pool(2)
futures = [pool.submit(work, i) for i in range(2)]
while len(list(out.glob("worker-*"))) < 2:
    time.sleep(0.02)
print("ready", flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    """Dead, or a zombie waiting for a reaper that is not ours."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc: Linux")
@pytest.mark.parametrize("how", ["pdeathsig", "watch"])
def test_forked_workers_die_with_their_parent(tmp_path, how):
    parent = subprocess.Popen([sys.executable, "-c", WORKERS, str(tmp_path), how],
                              stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert parent.stdout.readline().strip() == "ready"
        pids = [int((tmp_path / f"worker-{i}").read_text()) for i in range(2)]
        assert not any(_gone(p) for p in pids)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        t0 = time.time()
        while not all(_gone(p) for p in pids) and time.time() - t0 < 10:
            time.sleep(0.05)
        alive = [p for p in pids if not _gone(p)]
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        parent.kill()
        for f in tmp_path.glob("worker-*"):
            try:
                os.kill(int(f.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


KILL_WHILE_WRITING_REPORTS = """
import os, signal, sys
from emraudit.reports import files
real = files.write_text

def write_then_die(path, text):
    real(path, text)
    if path.name == "index.html":             # the report folder is half written
        os.kill(os.getpid(), signal.SIGKILL)

files.write_text = write_then_die
from emraudit.cli import main
main(sys.argv[1:], prog_name="emraudit")
"""


@pytest.mark.slow
def test_the_next_scan_clears_what_a_killed_scan_left(tmp_path):
    cfg = copy_sample(tmp_path / "h")
    r = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING_REPORTS, "scan", "--config",
                        str(cfg)], capture_output=True, text=True, env=env(), timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    reports = tmp_path / "h" / "reports"
    left = sorted(p.name for p in reports.glob(".tmp-*"))
    assert left, "the killed scan left its temporary report folder"
    assert state(cfg)["scans"] == ["running"]
    r = emraudit("scan", "--config", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    after = state(cfg)
    assert after["scans"] == ["interrupted", "committed"]
    assert not list(reports.glob(".tmp-*"))
    assert "1 earlier scan(s) had been interrupted" in r.stdout
    assert "temporary report folder(s) of interrupted scans removed" in r.stdout
    assert (reports / "latest" / "index.html").exists()
