"""A SIGKILLed `medcolor train` leaves no DataLoader worker behind: each worker asks Linux (prctl
PR_SET_PDEATHSIG) for SIGKILL when its parent dies, instead of running on for a while."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medcolor.utils import DieWithParent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def children(pid: int) -> set[int]:
    """The direct child processes of ``pid`` (from /proc, every thread's list)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (its parent, init, will reap it)


def test_the_init_function_composes_with_the_loaders_own(monkeypatch):
    import medcolor.utils

    calls: list[str] = []
    monkeypatch.setattr(medcolor.utils, "_set_parent_death_signal", lambda: calls.append("prctl"))
    seen: list[int] = []
    init = DieWithParent(seen.append)
    assert init.parent == os.getpid()
    init.parent = os.getppid()  # called here as if in a worker of this process's parent
    init(3)
    assert seen == [3] and calls == (["prctl"] if sys.platform.startswith("linux") else [])


@pytest.mark.slow  # ~20 s: a real train started and killed
def test_train_killed_leaves_no_dataloader_worker(tmp_path):
    argv = [sys.executable, "-m", "medcolor", "train", "--dataset", "synthetic", "--root", str(tmp_path / "d")]
    argv += ["--option", "n=200", "--option", "image_size=64", "--size", "64", "--batch-size", "4"]
    argv += ["--num-workers", "2", "--weights", "none", "--iterations", "100000", "--no-progress"]
    argv += ["--bootstrap", "0", "-o", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            # forked DataLoader workers run the parent's command line (not multiprocessing's helpers)
            workers = {c for c in children(proc.pid) if cmdline(c) == cmdline(proc.pid)}
            time.sleep(0.2)
        assert len(workers) >= 2, f"no DataLoader workers seen (train exit code {proc.poll()})"
        time.sleep(1.0)  # the workers have run their init function
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # PyTorch's own check of the parent comes only after up to 5 s without work (MP_STATUS_CHECK_INTERVAL),
        # never while a worker is busy: 1 s tells the two apart; 5 s is what the issue asked
        for wait in (1.0, 4.0):
            time.sleep(wait)
            survivors = [w for w in workers if alive(w)]
            assert not survivors, f"workers {survivors} outlived the killed train (pid {proc.pid})"
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
