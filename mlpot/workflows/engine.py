"""The generic task layer of mlpot's campaigns (phase diagrams, concurrent learning): a list of
:class:`Task` s with dependencies, each run in its own process and folder, resumable, on this
machine or a cluster through Parsl.

    tasks = [Task("fcc/eq", "mypkg.steps:equilibrate", {"T": 300}),
             Task("fcc/fl", "mypkg.steps:frenkel_ladd", {"n": 3}, deps=("fcc/eq",),
                  resources=Resources(mpi_ranks=2))]
    out = run_workflow(tasks, Path("campaign"))          # out.results["fcc/fl"] is fl's returned dict

The protocol (the folder of a task is ``root/name``):

* The driver writes ``task.json`` (func, params, the results of the deps, the hash) and starts
  ``python -m mlpot.workflows.worker <folder>`` (wrapped by ``mpirun -n K``/``srun`` for
  ``mpi_ranks = K > 1``) in its own process group, output appended to ``task.log``.
* The task function ``func(params, workdir, deps) -> dict`` runs with the folder as its current
  directory; the worker writes ``result.json`` and then, as its LAST step, ``DONE`` holding the hash.
* hash = sha256(func, params, the deps' hashes). A task whose ``DONE`` holds its current hash is
  reused, never rerun; any other task runs, in its folder as it was left (the engine deletes only
  ``DONE``/``FAILED``), so a half-finished task restarts from its own checkpoint. Changing a task's
  params changes its hash and so the hash of every task downstream of it; the rest are reused. The
  code of ``func`` is not part of the hash: put a version into ``params`` when a code change must
  rerun a campaign.
* A failing task (any exception; an :class:`~mlpot.errors.MlpotError` keeps its own message) is
  reported in :attr:`WorkflowResult.failed`, its dependents as ``skipped: dependency X failed``; the
  other tasks go on.
* SIGINT/SIGTERM of the driver ends every running task's process group (and Parsl's processes)
  before it returns; a worker also ends itself when its parent or the driver disappears.

Executors: without a cluster section, Parsl's ThreadPoolExecutor in the driver starts the task
processes, with mlpot's own accounting of this machine's cores and GPUs (``CUDA_VISIBLE_DEVICES``
per task); a crash of a task cannot hurt the driver, since the task code runs in its own process.
With a :class:`~mlpot.workflows.cluster.ClusterConfig`, Parsl's HighThroughputExecutor with the
scheduler's provider (pilot jobs). The task folders must be on a file system the driver shares with
the compute nodes. Parsl's run directory (its logs) is ``root/.parsl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from mlpot.errors import WorkflowError

if TYPE_CHECKING:  # pragma: no cover
    from mlpot.workflows.cluster import ClusterConfig

#: files of the protocol inside a task folder
TASK_FILE, RESULT_FILE, DONE_FILE, FAILED_FILE, RUNNING_FILE, LOG_FILE = (
    "task.json", "result.json", "DONE", "FAILED", "running.json", "task.log")
#: Parsl's run directory, and the lock of the driver running the workflow, under the workflow root
PARSL_DIR, LOCK_FILE = ".parsl", ".lock"

_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+,-]*$")
_FUNC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Resources:
    """What one task needs.

    ``cores``: CPU cores for the whole task (at least ``mpi_ranks`` are reserved; each rank gets
    ``cores // mpi_ranks`` threads, ``OMP_NUM_THREADS``). ``gpus``: GPUs for the whole task (a
    multiple of ``mpi_ranks``; md_engine runs one rank per GPU). ``mpi_ranks`` > 1: the worker is
    started by the MPI launcher (``mpirun -n K`` here, ``srun`` on SLURM). ``walltime_s``: the task's
    process group is ended after that many seconds (the task is then failed; rerunning resumes it
    from its checkpoint)."""

    cores: int = 1
    gpus: int = 0
    mpi_ranks: int = 1
    walltime_s: Optional[float] = None

    @property
    def reserved_cores(self) -> int:
        """Cores held while the task runs: ``max(cores, mpi_ranks)``."""
        return max(self.cores, self.mpi_ranks)

    @property
    def threads_per_rank(self) -> int:
        """``OMP_NUM_THREADS`` of each rank."""
        return max(1, self.reserved_cores // self.mpi_ranks)


@dataclass(frozen=True)
class Task:
    """One unit of work: ``func(params, workdir, deps) -> dict`` in the folder ``root/name``.

    ``name``: unique, path-like (``"fcc/P0/r0/fl"``). ``func``: ``"package.module:function"``,
    importable in a fresh worker process. ``params``: JSON-serialisable; with ``func`` and the deps'
    hashes it decides reuse. ``deps``: the names of the tasks whose results ``func`` receives (as
    ``deps[name]``)."""

    name: str
    func: str
    params: Mapping[str, Any]
    deps: tuple[str, ...] = ()
    resources: Resources = Resources()


@dataclass
class WorkflowResult:
    """What a workflow run produced: ``results`` (finished tasks, reused ones included: name → the
    dict the task returned), ``failed`` (name → one-line error; dependents of a failed task as
    ``"skipped: dependency X failed"``, X the task that failed however far upstream), ``reused`` (the names taken from an earlier run)."""

    results: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    reused: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        """Whether every task finished."""
        return not self.failed


class WorkflowInterrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) reached the driver; the running tasks were ended before this was raised."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"workflow interrupted by {signal.Signals(signum).name}")
        self.signum = signum


# ------------------------------------------------------------------------------------------ validation, hashes
def _check_tasks(tasks: Sequence[Task]) -> list[Task]:
    """The tasks in a dependency order (each after its deps); WorkflowError naming the task otherwise."""
    by_name: dict[str, Task] = {}
    for t in tasks:
        if not isinstance(t, Task):
            raise WorkflowError(f"expected Task objects, found {type(t).__name__}")
        parts = PurePosixPath(t.name).parts if isinstance(t.name, str) else ()
        if not parts or t.name.startswith("/") or "\\" in t.name or any(not _NAME_PART.match(p) for p in parts):
            raise WorkflowError(f"task name {t.name!r}: expected a relative path of names made of letters, digits "
                                "and _.=+,- (e.g. 'fcc/P0/r0/fl'), without '..'")
        if t.name in by_name:
            raise WorkflowError(f"task name {t.name!r} is used twice")
        if not isinstance(t.func, str) or not _FUNC.match(t.func):
            raise WorkflowError(f"task {t.name!r}: func {t.func!r}: expected 'package.module:function'")
        r = t.resources
        if not (isinstance(r.cores, int) and r.cores >= 1 and isinstance(r.mpi_ranks, int) and r.mpi_ranks >= 1
                and isinstance(r.gpus, int) and r.gpus >= 0):
            raise WorkflowError(f"task {t.name!r}: resources {r}: expected cores >= 1, mpi_ranks >= 1, gpus >= 0")
        if r.gpus and r.gpus % r.mpi_ranks:
            raise WorkflowError(f"task {t.name!r}: gpus={r.gpus} is not a multiple of mpi_ranks={r.mpi_ranks}")
        if r.walltime_s is not None and not r.walltime_s > 0:
            raise WorkflowError(f"task {t.name!r}: walltime_s: expected a positive number of seconds, found {r.walltime_s}")
        if isinstance(t.deps, (str, bytes)) or not all(isinstance(d, str) for d in t.deps):
            raise WorkflowError(f"task {t.name!r}: deps: expected a tuple of task names, found {t.deps!r}")
        by_name[t.name] = t
    names = set(by_name)
    for t in tasks:
        for d in t.deps:
            if d not in names:
                from mlpot.errors import did_you_mean

                raise WorkflowError(f"task {t.name!r}: unknown dependency {d!r}{did_you_mean(d, names)}")
            if d == t.name:
                raise WorkflowError(f"task {t.name!r} depends on itself")
    for a in names:  # one folder must not be inside another (a task would see another's files)
        for b in names:
            if a != b and b.startswith(a + "/"):
                raise WorkflowError(f"task {b!r} lies inside the folder of task {a!r}: give them sibling names")
    order: list[Task] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = chain[chain.index(name):] + (name,)
            raise WorkflowError(f"dependency cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for d in by_name[name].deps:
            visit(d, chain + (name,))
        state[name] = 2
        order.append(by_name[name])

    for t in tasks:
        visit(t.name, ())
    return order


def _canonical(task: Task) -> str:
    try:
        return json.dumps(dict(task.params), sort_keys=True, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"task {task.name!r}: params are not JSON-serialisable ({exc})") from None


def task_hash(task: Task, dep_hashes: Mapping[str, str]) -> str:
    """sha256 of the task's func, params and its deps' hashes (the key of reuse)."""
    payload = json.dumps({"func": task.func, "params": json.loads(_canonical(task)),
                          "deps": {d: dep_hashes[d] for d in sorted(task.deps)}}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _finished_result(folder: Path, digest: str) -> Optional[dict]:
    """The result of a task whose DONE holds ``digest`` (None: not finished with these inputs)."""
    try:
        if (folder / DONE_FILE).read_text().strip() != digest:
            return None
        result = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


# ------------------------------------------------------------------------------------------ local resources
def local_cores() -> int:
    """The cores this process may use (CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def local_gpus() -> list[str]:
    """The GPU ids tasks may be given: ``CUDA_VISIBLE_DEVICES`` when set, else one per NVIDIA device
    under ``/proc/driver/nvidia/gpus`` (no torch import)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def _mpirun() -> Optional[str]:
    """The ``mpirun`` next to this interpreter, else the one on PATH."""
    import shutil

    here = Path(sys.executable).parent / "mpirun"
    return str(here) if here.is_file() and os.access(here, os.X_OK) else shutil.which("mpirun")


class _LocalSlots:
    """This machine's cores and GPUs, handed to tasks while they run."""

    def __init__(self, max_workers: Optional[int]) -> None:
        self.cores = local_cores()
        self.free_cores = self.cores
        self.gpus = local_gpus()
        self.free_gpus = list(self.gpus)
        self.max_running = max_workers or max(self.cores, len(self.gpus), 1)
        self.running = 0
        self.held: dict[str, tuple[int, list[str]]] = {}

    def impossible(self, task: Task) -> Optional[str]:
        r = task.resources
        if r.gpus > len(self.gpus):
            return (f"needs {r.gpus} GPU(s), this machine offers {len(self.gpus)} "
                    "(CUDA_VISIBLE_DEVICES / /proc/driver/nvidia/gpus)")
        if r.mpi_ranks > 1 and _mpirun() is None:
            return f"mpi_ranks={r.mpi_ranks} needs mpirun (none next to {sys.executable} nor on PATH)"
        return None

    def take(self, task: Task) -> Optional[tuple[list[str], dict[str, str]]]:
        """(launcher prefix, environment) when the task fits now, else None."""
        r = task.resources
        cores = min(r.reserved_cores, self.cores)  # more than the machine has: it runs alone
        if self.running >= self.max_running or cores > self.free_cores or r.gpus > len(self.free_gpus):
            return None
        gpus, self.free_gpus = self.free_gpus[:r.gpus], self.free_gpus[r.gpus:]
        self.free_cores -= cores
        self.running += 1
        self.held[task.name] = (cores, gpus)
        env = {"OMP_NUM_THREADS": str(max(1, cores // r.mpi_ranks))}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)  # "" hides the GPUs from a CPU task
        prefix = [_mpirun() or "mpirun", "-n", str(r.mpi_ranks)] if r.mpi_ranks > 1 else []
        return prefix, env

    def release(self, name: str) -> None:
        cores, gpus = self.held.pop(name)
        self.free_cores += cores
        self.free_gpus += gpus
        self.running -= 1


class _ClusterSlots:
    """A cluster: Parsl queues the tasks; only the per-task check and the launcher are mlpot's."""

    def __init__(self, cluster: "ClusterConfig", max_workers: Optional[int]) -> None:
        self.cluster = cluster
        self.max_running = max_workers or 10**9
        self.running = 0

    def impossible(self, task: Task) -> Optional[str]:
        return self.cluster.task_problem(task.resources)

    def take(self, task: Task) -> Optional[tuple[list[str], dict[str, str]]]:
        if self.running >= self.max_running:
            return None
        self.running += 1
        r = task.resources
        return self.cluster.task_prefix(r), {"OMP_NUM_THREADS": str(self.cluster.threads_per_rank(r))}

    def release(self, name: str) -> None:
        self.running -= 1


# ------------------------------------------------------------------------------------------ the driver
def _local_parsl_config(run_dir: Path, threads: int) -> Any:
    from parsl.config import Config
    from parsl.executors import ThreadPoolExecutor

    return Config(executors=[ThreadPoolExecutor(label="mlpot", max_threads=threads)], run_dir=str(run_dir),
                  usage_tracking=0, initialize_logging=True, strategy="none")


def _kill_running(folders: Sequence[Path]) -> None:
    """End the process group of every running task (this driver's threads' processes, and those that
    an HTEX worker on this host started, from their ``running.json``)."""
    from mlpot.workflows import _app

    _app.kill_live()
    host = socket.gethostname()
    for folder in folders:
        try:
            info = json.loads((folder / RUNNING_FILE).read_text())
        except (OSError, ValueError):
            continue
        if info.get("host") == host and isinstance(info.get("pgid"), int) and info["pgid"] > 1:
            if info["pgid"] != os.getpgrp():
                _app.kill_group(info["pgid"])


def _acquire_lock(root: Path, driver_id: str) -> Path:
    """``root/.lock`` (``host:pid`` of this driver): one driver per workflow folder at a time. A lock
    whose driver is gone (same host, dead pid) is taken over; a live one is a WorkflowError."""
    lock = root / LOCK_FILE
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = lock.read_text().strip()
            except OSError:
                continue
            host, _, pid = owner.rpartition(":")
            alive = True
            if host == socket.gethostname() and pid.isdigit():
                try:
                    os.kill(int(pid), 0)
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    pass
            if alive:
                raise WorkflowError(f"{root}: another workflow driver ({owner}) is running in this folder "
                                    f"(delete {lock} if it is not)") from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(driver_id + "\n")
        return lock
    raise WorkflowError(f"{root}: cannot take the lock {lock}")


def _failure_message(folder: Path, outcome: Mapping[str, Any], task: Task) -> str:
    log = folder / LOG_FILE
    if outcome.get("timed_out"):
        return f"exceeded its walltime of {task.resources.walltime_s:g} s (ended; see {log})"
    try:
        line = (folder / FAILED_FILE).read_text().splitlines()[0].strip()
        if line:
            return line
    except (OSError, IndexError):
        pass
    rc = outcome.get("returncode")
    if isinstance(rc, int) and rc < 0:
        return f"task process killed by {signal.Signals(-rc).name} (see {log})"
    return f"task process exited with status {rc} without a result (see {log})"


class WorkflowSession:
    """Several :meth:`run` calls on one executor: Parsl (and, on a cluster, its pilot jobs) starts once
    and stays up between the calls, for loops whose next tasks depend on the last results (tracing a
    coexistence line step by step, the iterations of concurrent learning).

        with WorkflowSession(Path("campaign"), cluster) as session:
            first = session.run(tasks)
            more = session.run(tasks + next_tasks(first.results))   # tasks: reused at once

    One session per ``root`` at a time (``root/.lock``, taken on the first task that must run).
    SIGTERM/SIGINT while a run is going end its running tasks, then raise :class:`WorkflowInterrupted`
    / KeyboardInterrupt; leaving the ``with`` block shuts Parsl down. :func:`run_workflow` is one
    session with one run."""

    def __init__(self, root: Path, cluster: "ClusterConfig | None" = None, *, progress: bool = True,
                 max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise WorkflowError(f"max_workers: expected a positive number of tasks, found {max_workers}")
        self.root = Path(root).resolve()
        self.cluster = cluster
        self.progress = progress
        self.max_workers = max_workers
        self.driver_id = f"{socket.gethostname()}:{os.getpid()}"
        self._lock: Optional[Path] = None
        self._dfk: Any = None
        self._app: Any = None
        self._slots: Any = None

    def __enter__(self) -> "WorkflowSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Shut Parsl down (its processes, the pilot jobs) and release the folder's lock."""
        dfk, self._dfk, self._app = self._dfk, None, None
        try:
            if dfk is not None:
                try:
                    dfk.cleanup()
                except Exception:  # noqa: BLE001 (cleanup after an interrupt must not hide it)
                    pass
        finally:
            if self._lock is not None:
                self._lock.unlink(missing_ok=True)
                self._lock = None

    def _start(self) -> None:
        """Take the lock and start Parsl (once per session)."""
        if self._dfk is not None:
            return
        from parsl.app.app import python_app
        from parsl.dataflow.dflow import DataFlowKernel

        from mlpot.workflows._app import run_task_process

        self.root.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = _acquire_lock(self.root, self.driver_id)
        cluster = self.cluster
        self._slots = _LocalSlots(self.max_workers) if cluster is None else _ClusterSlots(cluster, self.max_workers)
        run_dir = self.root / PARSL_DIR
        run_dir.mkdir(parents=True, exist_ok=True)
        if cluster is None:
            config = _local_parsl_config(run_dir, self._slots.max_running)
        else:
            bindir = os.path.dirname(sys.executable)  # HTEX starts interchange.py etc. by name
            if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
                os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
            config = cluster.to_parsl_config(run_dir)
        self._dfk = DataFlowKernel(config)
        self._app = python_app(run_task_process, data_flow_kernel=self._dfk, executors=["mlpot"])

    def run(self, tasks: Sequence[Task], *, status: Callable[[dict[str, dict]], str] | None = None) -> WorkflowResult:
        """Run ``tasks`` under the session's root (the semantics of :func:`run_workflow`)."""
        ordered = _check_tasks(tasks)
        root = self.root
        hashes: dict[str, str] = {}
        for t in ordered:
            hashes[t.name] = task_hash(t, hashes)
        out = WorkflowResult()
        for t in ordered:
            found = _finished_result(root / t.name, hashes[t.name])
            if found is not None:
                out.results[t.name] = found
                out.reused.add(t.name)
        todo = [t for t in ordered if t.name not in out.reused]
        if not todo:
            return out

        from mlpot.progress import NullBar, progress_bar
        from mlpot.workflows.worker import write_atomic

        progress = self.progress
        by_name = {t.name: t for t in ordered}
        dependents: dict[str, list[str]] = {t.name: [] for t in ordered}
        for t in ordered:
            for d in t.deps:
                dependents[d].append(t.name)
        waiting = [t.name for t in todo]  # in dependency order
        running: dict[Future, str] = {}
        bar: Any = NullBar()

        def note(line: str) -> None:
            if isinstance(bar, NullBar):
                if progress:
                    print(line, file=sys.stderr, flush=True)
            else:
                bar.write(line, file=sys.stderr)

        def show() -> None:
            if status is not None:
                try:
                    bar.set_postfix_str(str(status(dict(out.results))))
                except Exception as exc:  # noqa: BLE001 (a broken status line must not stop a campaign)
                    bar.set_postfix_str(f"status failed: {type(exc).__name__}")

        def skip_dependents(name: str, cause: str) -> None:
            """Every task downstream of ``name``, naming the task that failed (``cause``)."""
            for child in dependents[name]:
                if child not in out.failed and child not in out.results:
                    out.failed[child] = f"skipped: dependency {cause} failed"
                    if child in waiting:
                        waiting.remove(child)
                    bar.update(1)
                    skip_dependents(child, cause)

        def fail(name: str, message: str) -> None:
            out.failed[name] = message
            bar.update(1)
            note(f"workflow: task {name} failed: {message}")
            skip_dependents(name, name)

        def on_signal(signum: int, frame: Any) -> None:
            raise WorkflowInterrupted(signum)

        previous: dict[int, Any] = {}
        try:
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    previous[sig] = signal.signal(sig, on_signal)
            self._start()
            slots, app = self._slots, self._app
            bar = progress_bar(total=len(ordered), desc="workflow", unit="task", quiet=not progress, min_total=1,
                               initial=len(out.reused))
            while waiting or running:
                for name in list(waiting):
                    task = by_name[name]
                    if not all(d in out.results for d in task.deps):
                        continue
                    problem = slots.impossible(task)
                    if problem:
                        waiting.remove(name)
                        fail(name, problem)
                        continue
                    placed = slots.take(task)
                    if placed is None:
                        continue
                    prefix, env = placed
                    folder = root / name
                    folder.mkdir(parents=True, exist_ok=True)
                    for stale in (DONE_FILE, FAILED_FILE, RUNNING_FILE):
                        (folder / stale).unlink(missing_ok=True)
                    spec = {"name": name, "func": task.func, "params": json.loads(_canonical(task)),
                            "deps": {d: out.results[d] for d in task.deps}, "hash": hashes[name],
                            "resources": {"cores": task.resources.cores, "gpus": task.resources.gpus,
                                          "mpi_ranks": task.resources.mpi_ranks,
                                          "walltime_s": task.resources.walltime_s}}
                    write_atomic(folder / TASK_FILE, json.dumps(spec, indent=1, sort_keys=True) + "\n")
                    env.update({"MLPOT_WORKFLOW_DRIVER": self.driver_id, "MLPOT_TASK_NAME": name})
                    running[app(prefix, str(folder), env, task.resources.walltime_s)] = name
                    waiting.remove(name)
                if not running:
                    break  # nothing can start (cannot happen with a dependency order; kept as a guard)
                done, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    slots.release(name)
                    folder = root / name
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # noqa: BLE001 (Parsl: worker or block lost after retries)
                        outcome = {"returncode": None, "error": f"{type(exc).__name__}: {exc}"}
                    result = _finished_result(folder, hashes[name])
                    (folder / RUNNING_FILE).unlink(missing_ok=True)
                    if result is not None:
                        out.results[name] = result
                        bar.update(1)
                    elif outcome.get("error"):
                        fail(name, " ".join(str(outcome["error"]).split()))
                    else:
                        fail(name, _failure_message(folder, outcome, by_name[name]))
                show()
        except BaseException:
            _kill_running([root / n for n in running.values()])
            self.close()  # an interrupted session is over: Parsl down, lock released
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            bar.close()
        return out


def run_workflow(tasks: Sequence[Task], root: Path, cluster: "ClusterConfig | None" = None, *,
                 progress: bool = True, status: Callable[[dict[str, dict]], str] | None = None,
                 max_workers: int | None = None) -> WorkflowResult:
    """Run ``tasks`` (see the module docstring) under ``root``; finished ones from an earlier run are
    reused. ``cluster``: None runs on this machine (one task per core, or per GPU for GPU tasks);
    a :class:`~mlpot.workflows.cluster.ClusterConfig` submits pilot jobs. ``progress``: a bar with
    tasks done/total and ETA on an interactive stderr, ``status(results_so_far)`` its text.
    ``max_workers``: at most that many tasks at once. Raises :class:`~mlpot.errors.WorkflowError` for
    a bad task list, :class:`WorkflowInterrupted`/KeyboardInterrupt after SIGTERM/SIGINT. Several
    dependent rounds on one executor: :class:`WorkflowSession`."""
    with WorkflowSession(root, cluster, progress=progress, max_workers=max_workers) as session:
        return session.run(tasks, status=status)


__all__ = ["Resources", "Task", "WorkflowResult", "WorkflowInterrupted", "WorkflowSession", "run_workflow",
           "task_hash", "local_cores", "local_gpus"]
