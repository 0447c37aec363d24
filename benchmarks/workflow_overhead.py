"""Benchmark: the task overhead of mlpot's workflow engine (mlpot.workflows), empty tasks on this machine.

Run: ``python benchmarks/workflow_overhead.py [--tasks 40] [--repeat 3] [--json PATH]``.

Measured, each in a fresh workflow folder (median of ``--repeat`` runs):

* ``worker_floor``: one ``python -m mlpot.workflows.worker`` process run by hand on a prepared
  task folder (interpreter start + ``import mlpot`` + the protocol files): what every task costs at
  least, whatever the executor.
* per executor (``local``: the default, Parsl ThreadPoolExecutor starting the task processes;
  ``htex``: ``cluster: {scheduler: local}``, Parsl's HighThroughputExecutor + LocalProvider, the
  executor of the cluster schedulers) and per ``max_workers`` (1 = latency, 2 = this machine's cores):
  the wall time of ``run_workflow`` for 1 and for ``--tasks`` empty tasks
  (``mlpot.workflows._selftest:noop``). Start-up = T(1); seconds per empty task =
  (T(N) − T(1)) / (N − 1).
* ``reuse``: the same N tasks again (all DONE): the cost of a resumed campaign's bookkeeping.
* ``import_parsl_s``: ``import parsl`` in a fresh interpreter.

Raw results: ``--json`` (default benchmarks/results/workflow_overhead.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlpot.workflows import ClusterConfig, Task, run_workflow  # noqa: E402
from mlpot.workflows.engine import task_hash  # noqa: E402


def _load() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def _tasks(n: int, tag: str) -> list[Task]:
    return [Task(f"t{i:04d}", "mlpot.workflows._selftest:noop", {"i": i, "tag": tag}) for i in range(n)]


def _timed_run(n: int, cluster: Any, max_workers: int, scratch: Path, tag: str) -> tuple[float, float]:
    root = scratch / f"{tag}"
    tasks = _tasks(n, tag)
    t0 = time.perf_counter()
    out = run_workflow(tasks, root, cluster, progress=False, max_workers=max_workers)
    wall = time.perf_counter() - t0
    assert out.ok and len(out.results) == n and not out.reused, out.failed
    t0 = time.perf_counter()
    again = run_workflow(tasks, root, cluster, progress=False, max_workers=max_workers)
    reuse = time.perf_counter() - t0
    assert again.reused == {t.name for t in tasks}
    return wall, reuse


def worker_floor(scratch: Path, repeat: int) -> list[float]:
    """Wall seconds of one hand-run worker process on a prepared task folder."""
    times = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in range(repeat):
        task = _tasks(1, f"floor{k}")[0]
        folder = scratch / f"floor{k}"
        folder.mkdir(parents=True)
        spec = {"name": task.name, "func": task.func, "params": dict(task.params), "deps": {},
                "hash": task_hash(task, {})}
        (folder / "task.json").write_text(json.dumps(spec))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlpot.workflows.worker", str(folder)], check=True, env=env, cwd=folder)
        times.append(time.perf_counter() - t0)
        assert (folder / "DONE").read_text().strip() == spec["hash"]
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--executors", nargs="+", default=["local", "htex"], choices=["local", "htex"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "workflow_overhead.json")
    args = ap.parse_args()
    import parsl

    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    imp = [float(subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import parsl; "
                                 "print(time.perf_counter()-t)"], capture_output=True, text=True).stdout)
           for _ in range(args.repeat)]
    report: dict[str, Any] = {
        "host": {"cpu_cores": os.cpu_count(), "python": platform.python_version(), "parsl": parsl.__version__,
                 "mlpot_git": git, "load_start": _load(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())},
        "tasks": args.tasks, "repeat": args.repeat, "import_parsl_s": imp, "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="mlpot-wf-bench-") as tmp:
        scratch = Path(tmp)
        report["worker_floor_s"] = worker_floor(scratch, args.repeat)
        print(f"worker process floor: {statistics.median(report['worker_floor_s']):.3f} s", flush=True)
        for name in args.executors:
            for workers in args.workers:
                cluster = None if name == "local" else ClusterConfig(scheduler="local", tasks_per_node=workers)
                one, many, reuse = [], [], []
                for k in range(args.repeat):
                    one.append(_timed_run(1, cluster, workers, scratch, f"{name}-{workers}-1-{k}")[0])
                    w, r = _timed_run(args.tasks, cluster, workers, scratch, f"{name}-{workers}-n-{k}")
                    many.append(w)
                    reuse.append(r)
                t1, tn = statistics.median(one), statistics.median(many)
                row = {"executor": name, "max_workers": workers, "t1_s": one, "tn_s": many, "reuse_s": reuse,
                       "startup_s": t1, "per_task_s": (tn - t1) / (args.tasks - 1), "load": _load()}
                report["runs"].append(row)
                print(f"{name:5s} workers={workers}: start-up {t1:.2f} s, {args.tasks} tasks {tn:.2f} s, "
                      f"{row['per_task_s']:.3f} s per empty task, reuse of {args.tasks} {statistics.median(reuse):.3f} s",
                      flush=True)
    report["host"]["load_end"] = _load()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
