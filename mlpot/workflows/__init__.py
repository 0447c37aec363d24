"""mlpot's workflow layer: many tasks (each a folder + a Python function run in its own process),
resumable, on this machine or a cluster through Parsl. The top layer: it may use md_engine; md_engine
never imports it.

* :mod:`mlpot.workflows.engine`: :class:`Task`, :class:`Resources`, :func:`run_workflow`,
  :class:`WorkflowResult` (the protocol: task.json → worker → result.json, then DONE), and
  :class:`WorkflowSession` (several dependent rounds on one executor).
* :mod:`mlpot.workflows.cluster`: the ``cluster:`` section (:class:`ClusterConfig`, SLURM/PBS/LSF
  → Parsl providers).
* :mod:`mlpot.workflows.worker`: ``python -m mlpot.workflows.worker TASKDIR`` (one task).
* campaigns built on it: :mod:`mlpot.workflows.phase` (``mlpot phase``), :mod:`mlpot.workflows.learn`
  (``mlpot learn``, concurrent learning).

Parsl is imported only when a workflow runs (or a cluster config is mapped).
"""

from __future__ import annotations

from typing import Any

#: public name -> module defining it, imported on first use (the worker process imports neither
#: pydantic nor Parsl: its start-up is every task's overhead)
_LAZY = {
    "Task": "mlpot.workflows.engine", "Resources": "mlpot.workflows.engine", "run_workflow": "mlpot.workflows.engine",
    "WorkflowResult": "mlpot.workflows.engine", "WorkflowInterrupted": "mlpot.workflows.engine",
    "WorkflowSession": "mlpot.workflows.engine",
    "ClusterConfig": "mlpot.workflows.cluster", "load_cluster": "mlpot.workflows.cluster",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlpot.workflows' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
