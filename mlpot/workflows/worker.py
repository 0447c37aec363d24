"""``python -m mlpot.workflows.worker TASKDIR``: run one workflow task in a fresh process.

The driver (:func:`mlpot.workflows.engine.run_workflow`) has written ``TASKDIR/task.json``::

    {"name": "fcc/P0/r0/fl", "func": "package.module:function", "params": {...},
     "deps": {"fcc/P0/r0/eq": {...its result...}}, "hash": "<sha256>"}

This process imports ``func``, calls ``func(params, workdir, deps)`` with ``workdir = TASKDIR`` (also
the current directory) and, on rank 0 only (``mpirun``/``srun`` start one worker per rank):

1. writes the returned dict to ``result.json`` (temporary file + rename);
2. writes ``DONE`` containing the task hash (temporary file + rename) as its LAST step.

A raised exception writes ``FAILED`` (its first line: the one-line error, the task's own
:class:`~mlpot.errors.MlpotError` message as it is, other exceptions as ``Type: message``) and the
traceback to stderr (``task.log``), exit status 1. SIGTERM (the driver ending the task, a walltime)
is raised as KeyboardInterrupt in the task, so that its ``finally`` blocks run. ``running.json`` (host, pid, process group) says
who runs the task. A watchdog thread ends the task's process group when its parent process dies or,
on the driver's host, when the driver (``MLPOT_WORKFLOW_DRIVER=host:pid``) is gone: a task never
outlives the workflow that started it.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

#: the environment variables MPI launchers use for a process's rank (first found wins)
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "MV2_COMM_WORLD_RANK")
#: seconds between two watchdog checks
WATCH_PERIOD_S = 0.5


def mpi_rank() -> int:
    """This process's MPI rank from the launcher's environment (0 when not launched by MPI)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


def write_atomic(path: Path, text: str) -> None:
    """``path`` gets ``text`` in one rename (a reader sees the old file or the whole new one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def error_line(exc: BaseException) -> str:
    """The one-line error of a failed task: an MlpotError's own message, else ``Type: message``."""
    from mlpot.errors import MlpotError

    text = " ".join(str(exc).split())
    if isinstance(exc, MlpotError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_function(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function (ImportError/AttributeError with a clear message)."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"task function {spec!r}: expected 'package.module:function'")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"task function {spec!r}: cannot import module {module!r} ({exc})") from exc
    obj: Any = mod
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"task function {spec!r}: module {module!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TypeError(f"task function {spec!r}: {type(obj).__name__} is not callable")
    return obj


def _watchdog(parent: int, driver: Optional[str]) -> None:
    """End this process group when the parent changes (it died) or the driver on this host is gone."""
    host = socket.gethostname()
    driver_pid = None
    if driver:
        dhost, _, dpid = driver.rpartition(":")
        if dhost == host and dpid.isdigit():
            driver_pid = int(dpid)
    while True:
        time.sleep(WATCH_PERIOD_S)
        gone = os.getppid() != parent
        if not gone and driver_pid is not None:
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                gone = True
            except PermissionError:
                pass
        if gone:
            sys.stderr.write("mlpot.workflows.worker: the driver or parent process is gone; ending the task\n")
            sys.stderr.flush()
            try:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            finally:
                os._exit(137)


def run(taskdir: Path) -> int:
    """Run the task in ``taskdir`` (see the module docstring); the exit status."""
    taskdir = taskdir.resolve()
    rank = mpi_rank()

    def on_term(signum: int, frame: Any) -> None:  # ended by the driver or a walltime: let finally blocks run
        raise KeyboardInterrupt(f"task ended by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=_watchdog, args=(os.getppid(), os.environ.get("MLPOT_WORKFLOW_DRIVER")),
                     daemon=True, name="mlpot-watchdog").start()
    try:
        spec = json.loads((taskdir / "task.json").read_text())
        if rank == 0:
            write_atomic(taskdir / "running.json", json.dumps(
                {"host": socket.gethostname(), "pid": os.getpid(), "pgid": os.getpgrp(), "hash": spec["hash"],
                 "started": time.time()}))
        os.chdir(taskdir)
        func = load_function(spec["func"])
        result = func(dict(spec["params"]), taskdir, dict(spec.get("deps", {})))
        if not isinstance(result, dict):
            raise TypeError(f"task function {spec['func']!r} returned {type(result).__name__}, expected a dict")
        try:
            text = json.dumps(result, indent=1, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"task function {spec['func']!r} returned a dict that is not JSON-serialisable ({exc})") from None
    except BaseException as exc:  # noqa: BLE001 (every failure becomes the task's FAILED line)
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            exc = RuntimeError("the task function called sys.exit() before returning a result")
        line = error_line(exc)
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        try:
            write_atomic(taskdir / "FAILED", line + "\n" + (f"(rank {rank})\n" if rank else ""))
        except OSError:
            pass
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    if rank == 0:
        write_atomic(taskdir / "result.json", text + "\n")
        write_atomic(taskdir / "DONE", spec["hash"] + "\n")  # the LAST step: DONE means result.json is complete
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: ``python -m mlpot.workflows.worker TASKDIR``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        sys.stderr.write("usage: python -m mlpot.workflows.worker TASKDIR\n")
        return 2
    from mlpot.runtime import tune_malloc

    tune_malloc()  # as the mlpot command: no page-fault churn per MD step in a task (mlpot/runtime.py)
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
