"""Tiny task functions for the workflow engine's tests and its overhead benchmark (importable in a
fresh worker process). Each appends one line to ``<workdir>/runs.txt`` so that a test can count how
often a task really ran."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mlpot.errors import SimulationError


def _count(workdir: Path) -> None:
    with open(workdir / "runs.txt", "a") as fh:
        fh.write(f"{os.getpid()}\n")


def noop(params: dict, workdir: Path, deps: dict) -> dict:
    """Returns at once: ``{}`` (the benchmark's empty task)."""
    return {}


def add(params: dict, workdir: Path, deps: dict) -> dict:
    """``{"value": params["value"] + the deps' values}`` (counted in runs.txt)."""
    _count(workdir)
    return {"value": params.get("value", 0) + sum(d["value"] for d in deps.values())}


def sleep(params: dict, workdir: Path, deps: dict) -> dict:
    """Sleeps ``params["seconds"]`` (counted; writes ``started`` first, for tests that wait for it)."""
    _count(workdir)
    (workdir / "started").write_text(f"{os.getpid()}\n")
    time.sleep(float(params["seconds"]))
    return {"slept": params["seconds"]}


def checkpointed(params: dict, workdir: Path, deps: dict) -> dict:
    """Counts ``params["steps"]`` steps, one line per step in ``checkpoint.txt``; after
    ``params["crash_after"]`` steps of the FIRST run it dies (``os._exit``), as a killed MD run.
    A rerun continues from the checkpoint; the result says where it started."""
    _count(workdir)
    ckpt = workdir / "checkpoint.txt"
    done = len(ckpt.read_text().splitlines()) if ckpt.exists() else 0
    start = done
    for step in range(done, int(params["steps"])):
        with open(ckpt, "a") as fh:
            fh.write(f"{step}\n")
        if step + 1 == params.get("crash_after") and start == 0:
            os._exit(9)
    return {"started_at": start, "steps": len(ckpt.read_text().splitlines())}


def fail(params: dict, workdir: Path, deps: dict) -> dict:
    """Raises the task's own error (``SimulationError(params["message"])``)."""
    _count(workdir)
    raise SimulationError(params.get("message", "the solid melted"))


def env(params: dict, workdir: Path, deps: dict) -> dict:
    """The environment a task sees (GPU pinning, threads, MPI rank count) and its folder."""
    _count(workdir)
    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cwd": os.getcwd(), "workdir": str(workdir)}


def mpi_hello(params: dict, workdir: Path, deps: dict) -> dict:
    """Every rank writes ``rank<r>.txt``; rank 0 returns the world size seen through mpi4py."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    (workdir / f"rank{comm.Get_rank()}.txt").write_text(f"{comm.Get_size()}\n")
    sizes: Any = comm.gather(comm.Get_size(), root=0)
    return {"size": comm.Get_size(), "ranks": len(sizes) if sizes else 0}


def hold(params: dict, workdir: Path, deps: dict) -> dict:
    """Writes ``started.<rank>`` and waits while the file ``params["while_exists"]`` exists (at most
    ``params["max_s"]`` seconds): a long task that a test can release; ``ended.<rank>`` when it stops,
    however. Counted (on rank 0)."""
    from mlpot.workflows.worker import mpi_rank

    rank = mpi_rank()
    if rank == 0:
        _count(workdir)
    (workdir / f"started.{rank}").write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + float(params.get("max_s", 60))
    try:
        while Path(params["while_exists"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:  # also when the task is ended (SIGTERM → KeyboardInterrupt): where an MD run saves its checkpoint
        (workdir / f"ended.{rank}").write_text("")
    return {"held": True}
