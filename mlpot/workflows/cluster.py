"""The ``cluster:`` section of a workflow input: which batch scheduler runs the pilot jobs (Parsl
"blocks") and how a task is started inside them; :meth:`ClusterConfig.to_parsl_config` maps it to
Parsl's HighThroughputExecutor and the scheduler's provider (nothing is submitted before the
workflow runs).

    cluster:
      scheduler: slurm            # slurm | pbs | lsf | local (HTEX on this machine, e.g. in an allocation)
      partition: gpu              # alias: queue
      account: abc123
      walltime: "08:00:00"        # of one block (pilot job), not of one task
      nodes_per_block: 2
      max_blocks: 4
      tasks_per_node: 4           # tasks at once on one node
      cores_per_task: 8
      gpus_per_task: 1
      worker_init: ["module load cuda", "source ~/venvs/mlpot/bin/activate"]
      launcher: srun              # how a task starts in a block: srun (SLURM) | mpirun
      scheduler_options: ["#SBATCH --constraint=a100"]

Two layouts (see ``docs/workflows.md``):

* ``launcher: srun`` (SLURM's default): one Parsl worker pool per block on its first node; every task
  is its own job step ``srun --nodes=1 --ntasks=K --cpus-per-task=C [--gpus-per-task=G] --exact``,
  so SLURM places and binds it anywhere in the block (any ``nodes_per_block``; a task can be a
  multi-rank, multi-GPU md_engine run).
* ``launcher: mpirun`` (PBS's and LSF's): single-node blocks, one worker per task slot
  (``cores_per_task`` cores, ``gpus_per_task`` GPUs pinned with ``CUDA_VISIBLE_DEVICES``); a
  multi-rank task runs ``mpirun -n K`` on its node.

A task's own :class:`~mlpot.workflows.engine.Resources` may ask for more than the slot
(``cores_per_task``/``gpus_per_task``) only in the srun layout; otherwise the workflow reports it
failed before anything is submitted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional, Union

from pydantic import Field, field_validator, model_validator

from mlpot.config.base import StrictModel, section_error, validate
from mlpot.errors import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from mlpot.workflows.engine import Resources

#: the schedulers a ``cluster:`` section can name
SCHEDULERS = ("slurm", "pbs", "lsf", "local")
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d)(?::([0-5]\d))?$")


def _lines(value: Union[str, list, None], key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip("\n")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise ValueError(f"expected a string or a list of strings (one line each), found {value!r}")


class ClusterConfig(StrictModel):
    """The validated ``cluster:`` section (module docstring); unknown keys are errors naming the key."""

    scheduler: str = Field(description="slurm | pbs | lsf | local")
    partition: Optional[str] = Field(default=None, alias="queue", description="partition (SLURM) or queue (PBS, LSF)")
    account: Optional[str] = Field(default=None, description="account (SLURM, PBS) or project (LSF) charged")
    walltime: str = Field(default="01:00:00", description="walltime of one block, [D-]HH:MM[:SS]")
    nodes_per_block: int = Field(default=1, ge=1)
    max_blocks: int = Field(default=1, ge=1, description="blocks (pilot jobs) at most at once")
    tasks_per_node: Optional[int] = Field(default=None, ge=1, description="tasks at once on one node")
    cores_per_node: Optional[int] = Field(default=None, ge=1, description="cores per node (requested from PBS/LSF)")
    gpus_per_node: Optional[int] = Field(default=None, ge=0, description="GPUs per node")
    cores_per_task: int = Field(default=1, ge=1, description="cores of one task slot")
    gpus_per_task: int = Field(default=0, ge=0, description="GPUs of one task slot")
    worker_init: str = Field(default="", description="shell lines run in each block before the workers start")
    launcher: Optional[Literal["srun", "mpirun"]] = Field(default=None, description="srun | mpirun")
    scheduler_options: str = Field(default="", description="extra header lines of the batch script")
    interface: Optional[str] = Field(default=None, description="network interface the compute nodes reach the driver on")

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler(cls, v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in SCHEDULERS:
            raise ValueError(f"expected one of {', '.join(SCHEDULERS)}, found {v!r}{did_you_mean(str(v), SCHEDULERS)}")
        return v.lower()

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime(cls, v: Any) -> str:
        m = _WALLTIME.match(str(v).strip()) if isinstance(v, str) else None
        if m is None:
            raise ValueError(f"expected a walltime '[D-]HH:MM[:SS]' (e.g. '08:00:00'), found {v!r}")
        days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
        return f"{days * 24 + hours:02d}:{minutes:02d}:{seconds:02d}"

    @field_validator("worker_init", "scheduler_options", mode="before")
    @classmethod
    def _join_lines(cls, v: Any, info: Any) -> str:
        return _lines(v, info.field_name)

    @model_validator(mode="after")
    def _layout(self) -> "ClusterConfig":
        problems = []
        if self.launcher == "srun" and self.scheduler != "slurm":
            problems.append((("launcher",), f"srun needs scheduler slurm (found {self.scheduler}); use mpirun", "srun"))
        if self.effective_launcher == "mpirun" and self.nodes_per_block > 1:
            problems.append((("nodes_per_block",), "blocks are single-node with launcher mpirun (use max_blocks for more "
                             f"nodes, or scheduler slurm with launcher srun); found {self.nodes_per_block}",
                             self.nodes_per_block))
        if self.effective_launcher == "srun" and self.nodes_per_block > 1 and self.tasks_per_node is None \
                and not (self.gpus_per_node and self.gpus_per_task):
            problems.append((("tasks_per_node",), "required with launcher srun and nodes_per_block > 1 (how many tasks "
                             "run at once on one node)", None))
        if self.gpus_per_task and self.effective_launcher == "mpirun" and self.scheduler != "local" \
                and self.gpus_per_node is None:
            problems.append((("gpus_per_node",), "required with gpus_per_task and launcher mpirun (the GPUs a node's "
                             "workers are pinned to)", None))
        if self.gpus_per_node is not None and self.gpus_per_task > self.gpus_per_node:
            problems.append((("gpus_per_task",), f"expected at most gpus_per_node={self.gpus_per_node}, found "
                             f"{self.gpus_per_task}", self.gpus_per_task))
        if problems:
            raise section_error(type(self).__name__, problems)
        return self

    # ------------------------------------------------------------------------------------ derived values
    @property
    def effective_launcher(self) -> str:
        """``launcher`` or the scheduler's default (srun for SLURM, mpirun otherwise)."""
        return self.launcher or ("srun" if self.scheduler == "slurm" else "mpirun")

    def workers_per_block(self) -> Optional[int]:
        """Tasks one block runs at once (None: Parsl derives it from the node's cores)."""
        per_node = self.tasks_per_node
        if per_node is None and self.gpus_per_node and self.gpus_per_task:
            per_node = self.gpus_per_node // self.gpus_per_task
        if per_node is None:
            return None
        return per_node * (self.nodes_per_block if self.effective_launcher == "srun" else 1)

    def threads_per_rank(self, r: "Resources") -> int:
        """``OMP_NUM_THREADS`` of each rank of a task."""
        cores = max(r.reserved_cores, self.cores_per_task)
        return max(1, cores // r.mpi_ranks)

    def task_problem(self, r: "Resources") -> Optional[str]:
        """Why a task cannot run in this cluster's slots (None when it can)."""
        if self.effective_launcher == "srun":
            return None
        if r.reserved_cores > self.cores_per_task:
            return (f"needs {r.reserved_cores} cores, a task slot has cores_per_task={self.cores_per_task} "
                    "(raise cluster.cores_per_task)")
        if r.gpus > self.gpus_per_task:
            return f"needs {r.gpus} GPU(s), a task slot has gpus_per_task={self.gpus_per_task} (raise cluster.gpus_per_task)"
        return None

    def task_prefix(self, r: "Resources") -> list[str]:
        """The launcher words in front of the worker command of a task."""
        if self.effective_launcher == "srun":
            ranks = r.mpi_ranks
            gpus = max(r.gpus, self.gpus_per_task)
            words = ["srun", "--nodes=1", f"--ntasks={ranks}", f"--cpus-per-task={self.threads_per_rank(r)}", "--exact",
                     "--kill-on-bad-exit=1"]
            if gpus:
                words.append(f"--gpus-per-task={max(1, gpus // ranks)}")
            return words
        return ["mpirun", "-n", str(r.mpi_ranks)] if r.mpi_ranks > 1 else []

    def accelerators(self) -> list[str]:
        """The GPU groups the workers of one node are pinned to (``["0", "1"]``, ``["0,1", "2,3"]``);
        ``scheduler: local`` without ``gpus_per_node``: this machine's GPUs (``CUDA_VISIBLE_DEVICES``)."""
        if not self.gpus_per_task or self.effective_launcher == "srun":
            return []
        if self.gpus_per_node is not None:
            ids = [str(i) for i in range(self.gpus_per_node)]
        elif self.scheduler == "local":
            from mlpot.workflows.engine import local_gpus

            ids = local_gpus()
        else:
            return []
        g = self.gpus_per_task
        return [",".join(ids[k:k + g]) for k in range(0, len(ids) - g + 1, g)]

    # ------------------------------------------------------------------------------------ Parsl
    def to_parsl_config(self, run_dir: Union[str, Path]) -> Any:
        """The Parsl ``Config``: one HighThroughputExecutor labelled ``mlpot`` with the scheduler's
        provider; ``run_dir`` is Parsl's run directory (its logs and batch scripts)."""
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
        from parsl.launchers import SimpleLauncher

        provider: Any
        common = dict(nodes_per_block=self.nodes_per_block, init_blocks=1, min_blocks=0, max_blocks=self.max_blocks,
                      worker_init=self.worker_init, launcher=SimpleLauncher())
        if self.scheduler == "slurm":
            from parsl.providers import SlurmProvider

            provider = SlurmProvider(partition=self.partition, account=self.account, walltime=self.walltime,
                                     scheduler_options=self.scheduler_options, cores_per_node=self.cores_per_node,
                                     gpus_per_node=self.gpus_per_node or None, **common)
        elif self.scheduler == "pbs":
            from parsl.providers import PBSProProvider

            select = f"ngpus={self.gpus_per_node}" if self.gpus_per_node else ""
            provider = PBSProProvider(account=self.account, queue=self.partition, walltime=self.walltime,
                                      scheduler_options=self.scheduler_options, select_options=select,
                                      cpus_per_node=self.cores_per_node or self.cores_per_task, **common)
        elif self.scheduler == "lsf":
            from parsl.providers import LSFProvider

            provider = LSFProvider(project=self.account, queue=self.partition, walltime=self.walltime,
                                   scheduler_options=self.scheduler_options, cores_per_node=self.cores_per_node,
                                   request_by_nodes=True, **common)
        else:
            from parsl.providers import LocalProvider

            common.update(init_blocks=1, max_blocks=1)
            provider = LocalProvider(**common)
        if self.scheduler == "local":
            address = "127.0.0.1"
        elif self.interface:
            from parsl.addresses import address_by_interface

            address = address_by_interface(self.interface)
        else:
            from parsl.addresses import address_by_hostname

            address = address_by_hostname()
        workers = self.workers_per_block()
        # srun layout with a known worker count: SLURM places the cores, Parsl must not count them
        placed_by_srun = self.effective_launcher == "srun" and workers is not None
        executor = HighThroughputExecutor(
            label="mlpot", provider=provider, address=address,
            cores_per_worker=1e-6 if placed_by_srun else float(self.cores_per_task),
            max_workers_per_node=workers, available_accelerators=self.accelerators(),
            heartbeat_period=30, heartbeat_threshold=120, worker_logdir_root=str(Path(run_dir) / "workers"))
        return Config(executors=[executor], run_dir=str(run_dir), retries=1, usage_tracking=0, initialize_logging=True,
                      strategy="simple", strategy_period=1 if self.scheduler == "local" else 5,
                      max_idletime=60.0)


def load_cluster(section: Optional[Mapping[str, Any]], source: str = "", prefix: tuple = ("cluster",)) -> Optional[ClusterConfig]:
    """The ``cluster:`` mapping of an input file validated (None stays None: run on this machine);
    a :class:`~mlpot.errors.ConfigError` ``source: cluster.key: what was expected`` otherwise."""
    if section is None:
        return None
    return validate(ClusterConfig, section, source=source, prefix=prefix)


__all__ = ["ClusterConfig", "load_cluster", "SCHEDULERS"]
