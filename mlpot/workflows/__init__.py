"""mlpot's workflow layer: many tasks (each a folder + a Python function run in its own process),
resumable, on this machine or a cluster through Parsl. The top layer: it may use md_engine; md_engine
never imports it.

* :mod:`mlpot.workflows.engine`: :class:`Task`, :class:`Resources`, :func:`run_workflow`,
  :class:`WorkflowResult` (the protocol: task.json → worker → result.json, then DONE).
* :mod:`mlpot.workflows.cluster`: the ``cluster:`` section (:class:`ClusterConfig`, SLURM/PBS/LSF
  → Parsl providers).
* :mod:`mlpot.workflows.worker`: ``python -m mlpot.workflows.worker TASKDIR`` (one task).

Parsl is imported only when a workflow runs (or a cluster config is mapped).
"""

from __future__ import annotations

from mlpot.workflows.cluster import ClusterConfig, load_cluster
from mlpot.workflows.engine import Resources, Task, WorkflowInterrupted, WorkflowResult, run_workflow

__all__ = ["Task", "Resources", "run_workflow", "WorkflowResult", "WorkflowInterrupted", "ClusterConfig", "load_cluster"]
