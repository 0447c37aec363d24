"""A minimal in-process stand-in for :func:`mlpot.workflows.engine.run_workflow` (same interface:
``Task``, ``Resources``, ``run_workflow``), used by ``mlpot phase`` only when the engine is not
installed and by the tests: tasks run one after the other in dependency order in this process, each
in its folder ``root/name`` (cwd), with ``result.json`` (temp + rename) then ``DONE`` holding the
task hash; a task whose DONE matches its hash is reused. A raised :class:`MlpotError` marks the task
failed; its dependents are skipped."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from mlpot.atomic_io import atomic_path
from mlpot.errors import MlpotError


@dataclass(frozen=True)
class Resources:
    cores: int = 1
    gpus: int = 0
    mpi_ranks: int = 1
    walltime_s: Optional[float] = None


@dataclass(frozen=True)
class Task:
    name: str
    func: str
    params: Mapping[str, Any]
    deps: tuple[str, ...] = ()
    resources: Resources = Resources()


@dataclass
class WorkflowResult:
    results: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    reused: set[str] = field(default_factory=set)


def _hash(task: Task, dep_hashes: Sequence[str]) -> str:
    blob = json.dumps({"func": task.func, "params": task.params, "deps": list(dep_hashes)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_workflow(tasks: Sequence[Task], root: Path, cluster: Any = None, *, progress: bool = True,
                 status: Optional[Callable[[dict[str, dict]], str]] = None,
                 max_workers: Optional[int] = None) -> WorkflowResult:
    root = Path(root)
    by_name = {t.name: t for t in tasks}
    out = WorkflowResult()
    hashes: dict[str, str] = {}
    done: set[str] = set()
    order: list[Task] = []

    def visit(t: Task) -> None:
        if t.name in done:
            return
        for d in t.deps:
            visit(by_name[d])
        done.add(t.name)
        order.append(t)

    for t in tasks:
        visit(t)
    for t in order:
        hashes[t.name] = _hash(t, [hashes[d] for d in t.deps])
        folder = root / t.name
        marker = folder / "DONE"
        if marker.exists() and marker.read_text().strip() == hashes[t.name]:
            out.results[t.name] = json.loads((folder / "result.json").read_text())
            out.reused.add(t.name)
            continue
        bad = [d for d in t.deps if d not in out.results]
        if bad:
            out.failed[t.name] = f"skipped: dependency {bad[0]} did not finish"
            continue
        folder.mkdir(parents=True, exist_ok=True)
        mod, _, fn = t.func.partition(":")
        cwd = os.getcwd()
        try:
            os.chdir(folder)
            res = getattr(import_module(mod), fn)(dict(t.params), folder, {d: out.results[d] for d in t.deps})
        except MlpotError as exc:
            out.failed[t.name] = str(exc)
            continue
        finally:
            os.chdir(cwd)
        with atomic_path(folder / "result.json") as tmp:
            Path(tmp).write_text(json.dumps(res, default=float))
        with atomic_path(marker) as tmp:
            Path(tmp).write_text(hashes[t.name])
        out.results[t.name] = res
        if progress and status is not None:
            text = status(out.results)
            if text:
                print(f"[{len(out.results)}/{len(order)}] {text}", flush=True)
    return out


__all__ = ["Resources", "Task", "WorkflowResult", "run_workflow"]
