"""The Parsl app body: start one task's worker process and wait for it (runs wherever Parsl puts it:
a thread of the driver for the local executor, an HTEX worker on a cluster node).

Only the standard library is imported here, and everything arrives as arguments (Parsl serialises an
app without its module's globals). The task process gets its own session (process group), so that
a walltime, an interrupted driver or a lost worker can end it and everything it started (``mpirun``
and its ranks) with one ``killpg``; the worker process itself also watches its parent and the driver
(:mod:`mlpot.workflows.worker`), so it never outlives them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

#: the task processes started by apps running in THIS process (the local executor: the driver's
#: threads), by task folder; the engine ends them when it is interrupted
LIVE: dict[str, subprocess.Popen] = {}
_LOCK = threading.Lock()

#: seconds between SIGTERM and SIGKILL when a task's process group is ended
GRACE_S = 3.0


def kill_group(pgid: int, grace_s: float = GRACE_S, leader: Optional[subprocess.Popen] = None) -> None:
    """SIGTERM to the process group ``pgid``, then SIGKILL to whatever is left after ``grace_s``.
    ``leader``: the group's leader when it is this process's child (reaped here, so that its zombie
    does not keep the group alive)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_task_process(prefix: Sequence[str], taskdir: str, env: dict, walltime_s: Optional[float]) -> dict:
    """Run ``prefix + [python, -m, mlpot.workflows.worker, taskdir]`` in ``taskdir`` (its own session;
    stdout and stderr appended to ``taskdir/task.log``) and return ``{"returncode", "timed_out",
    "host"}``. ``prefix`` is the launcher (``[]``, ``["mpirun", "-n", "2"]``, ``["srun", ...]``); a
    ``python`` in it is replaced by this interpreter. On walltime expiry the whole group is ended."""
    import socket

    argv = list(prefix) + [sys.executable, "-m", "mlpot.workflows.worker", taskdir]
    full_env = dict(os.environ)
    full_env.update({str(k): str(v) for k, v in env.items()})
    bindir = os.path.dirname(sys.executable)
    full_env["PATH"] = bindir + os.pathsep + full_env.get("PATH", "")
    timed_out = False
    with open(os.path.join(taskdir, "task.log"), "a") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}: {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=taskdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=full_env, start_new_session=True)
        with _LOCK:
            LIVE[taskdir] = proc
        try:
            proc.wait(timeout=walltime_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc.pid, leader=proc)
            proc.wait()
        finally:
            if proc.poll() is None:  # this thread/worker is being torn down: take the task with it
                kill_group(proc.pid, leader=proc)
                proc.wait()
            with _LOCK:
                LIVE.pop(taskdir, None)
    return {"returncode": proc.returncode, "timed_out": timed_out, "host": socket.gethostname()}


def kill_live() -> int:
    """End every task process started in this process (see :data:`LIVE`); the number ended."""
    with _LOCK:
        procs = list(LIVE.values())
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    for proc in procs:
        kill_group(proc.pid, leader=proc)
    return len(procs)
