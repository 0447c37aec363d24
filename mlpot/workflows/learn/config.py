"""The ``mlpot learn`` input file (YAML), on the shared strict input base (:mod:`mlpot.config.base`).

Example (``examples/learn_cu/input.yaml``)::

    init_data: [init.extxyz]              # any format mlpot reads (extxyz, DeePMD dirs, HDF5, OUTCAR ...)
    training: train.json                  # a training input (ours / DeePMD-kit's); its data paths are replaced
    ensemble_size: 4                      # members, each its own seed, trained in parallel as tasks
    fine_tune: {numb_steps: 2000}         # from iteration 1 on: start from the previous member (--init-model)
    f_trust_lo: 0.05                      # eV/Å: max force deviation below it: accurate
    f_trust_hi: 0.20                      # eV/Å: at or above it: failed (not labelled); between: candidate
                                          # (a stage may set its own f_trust_lo / f_trust_hi)
    candidates_per_iteration: 50
    stages:                               # as DP-GEN's model_devi_jobs, in order
      - {structures: [fcc108.extxyz], ensemble: npt, temperatures: [300, 600], pressures: [0], steps: 2000}
      - {structures: [fcc108.extxyz], ensemble: npt, temperatures: [900, 1200, 1500], steps: 2000}
    accurate_target: 0.99                 # a stage is done when this fraction of its frames is accurate
    labeller: {calculator: "ase.calculators.emt:EMT", kwargs: {}, frames_per_task: 10}
    output_dir: learn_out

Every iteration explores ONE stage; a stage is repeated until its accurate fraction reaches
``accurate_target`` (or its ``max_iterations``), then the next stage follows; the loop stops when
the last stage reaches the target (converged) or at ``max_iterations``. Units: eV, Å, fs, K, bar.
A relative path is relative to the input file's folder.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mlpot.config.base import StrictModel, read_tree, resolve_input_path, resolve_input_paths, validate
from mlpot.errors import ConfigError
from mlpot.workflows.cluster import ClusterConfig  # the `cluster:` section of every workflow input


def import_calculator(spec: str) -> Any:
    """The class (or factory) named by ``"package.module:Name"`` (``"package.module.Name"`` also);
    ValueError with a one-line reason otherwise."""
    module, sep, attr = spec.partition(":")
    if not sep:
        module, _, attr = spec.rpartition(".")
    if not module or not attr:
        raise ValueError(f"expected 'package.module:Calculator' (e.g. 'ase.calculators.emt:EMT'), found {spec!r}")
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 (ImportError, or an error inside the module)
        raise ValueError(f"cannot import module {module!r} of {spec!r} ({type(exc).__name__}: {exc})") from None
    obj = getattr(mod, attr, None)
    if obj is None or not callable(obj):
        raise ValueError(f"module {module!r} has no calculator class {attr!r} (from {spec!r})")
    return obj


class ResourcesSpec(StrictModel):
    """What one task of a kind needs (the workflow engine's :class:`~mlpot.workflows.engine.Resources`)."""

    cores: int = Field(default=1, ge=1, description="CPU cores of the task")
    gpus: int = Field(default=0, ge=0, description="GPUs of the task")
    walltime_s: Optional[float] = Field(default=None, gt=0, description="s; the task is ended (and failed) after it")

    def to_engine(self, min_gpus: int = 0) -> Any:
        """The engine's Resources (one process per task: a labeller's parallel code is started by the
        calculator itself, e.g. its ``command`` in ``kwargs``, inside the task's cores)."""
        from mlpot.workflows.engine import Resources

        return Resources(cores=self.cores, gpus=max(self.gpus, min_gpus), walltime_s=self.walltime_s)


class LabellerConfig(StrictModel):
    """The labeller: an importable ASE calculator, built in its own task as ``Calculator(**kwargs)``."""

    calculator: str = Field(description="'package.module:Class', e.g. 'ase.calculators.emt:EMT', 'ase.calculators.vasp:Vasp'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the calculator")
    frames_per_task: int = Field(default=1, ge=1, description="candidate frames labelled by one task")
    stress: bool = Field(default=True, description="store the virial from the calculator's stress (when it gives one)")
    check_on_start: bool = Field(default=False, description="label the first initial frame in the driver before any "
                                                           "task runs (cheap calculators only)")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)

    @field_validator("calculator")
    @classmethod
    def _importable(cls, v: str) -> str:
        obj = import_calculator(v)
        props = getattr(obj, "implemented_properties", None)
        if props is not None and "forces" not in list(props):
            raise ValueError(f"{v!r} does not compute forces (its implemented_properties: {list(props)}); "
                             "expected a calculator that gives energy and forces")
        return v


class FineTuneConfig(StrictModel):
    """From iteration 1 on, member k starts from iteration i−1's member k (``--init-model``)."""

    numb_steps: int = Field(ge=1, description="training steps of a fine-tuning (instead of training.numb_steps)")
    start_lr: Optional[float] = Field(default=None, gt=0, description="learning_rate.start_lr of a fine-tuning "
                                                                      "(default: the training input's)")
    start_pref_e: Optional[float] = Field(default=None, ge=0, description="loss.start_pref_e of a fine-tuning")
    start_pref_f: Optional[float] = Field(default=None, ge=0, description="loss.start_pref_f of a fine-tuning")

    def overrides(self) -> dict[str, dict[str, float]]:
        """The ``learning_rate`` / ``loss`` keys a fine-tuning changes (DP-GEN's training_reuse_* keys)."""
        out: dict[str, dict[str, float]] = {}
        if self.start_lr is not None:
            out["learning_rate"] = {"start_lr": self.start_lr}
        for key in ("start_pref_e", "start_pref_f"):
            if getattr(self, key) is not None:
                out.setdefault("loss", {})[key] = getattr(self, key)
        return out


class StageConfig(StrictModel):
    """One exploration stage (DP-GEN's ``model_devi_jobs`` entry): MD of every structure × temperature
    (× pressure for npt) with the first ensemble member, the deviation of all members on each frame."""

    structures: list[str] = Field(min_length=1, description="structure files (any ASE-readable format; last frame)")
    ensemble: Literal["nvt", "npt"] = Field(default="nvt", description="nvt: Langevin; npt: + stochastic cell rescaling")
    temperatures: list[float] = Field(min_length=1, description="K")
    pressures: list[float] = Field(default=[0.0], min_length=1, description="bar (npt only)")
    steps: int = Field(ge=1, description="MD steps of each run")
    traj_every: int = Field(default=10, ge=1, description="steps between recorded frames")
    dt: float = Field(default=2.0, gt=0, description="fs")
    tau_t: float = Field(default=100.0, gt=0, description="fs; Langevin time constant")
    tau_p: float = Field(default=1000.0, gt=0, description="fs; barostat time constant")
    compressibility: float = Field(default=4.5e-5, gt=0, description="1/bar; barostat coupling")
    max_iterations: int = Field(default=5, ge=1, description="iterations of this stage at most, then the next stage")
    f_trust_lo: Optional[float] = Field(default=None, gt=0, description=(
        "eV/Å; this stage's lower trust level (default: the top-level f_trust_lo). Hot or liquid stages "
        "meet a larger irreducible deviation than the cold crystal (DP-GEN sets trust levels per system too)"))
    f_trust_hi: Optional[float] = Field(default=None, gt=0, description="eV/Å; this stage's upper trust level "
                                                                        "(default: the top-level f_trust_hi)")

    @field_validator("structures")
    @classmethod
    def _paths(cls, v: list[str], info: ValidationInfo) -> list[str]:
        return resolve_input_paths(v, info)

    @field_validator("temperatures")
    @classmethod
    def _temps(cls, v: list[float]) -> list[float]:
        if any(not t > 0 for t in v):
            raise ValueError(f"expected positive temperatures (K), found {v}")
        return v

    @model_validator(mode="after")
    def _nvt_pressure(self) -> "StageConfig":
        if self.ensemble == "nvt" and list(self.pressures) != [0.0]:
            raise ValueError(f"pressures {self.pressures}: an nvt stage has no pressure; use ensemble: npt")
        return self

    @property
    def state_points(self) -> list[tuple[float, Optional[float]]]:
        """(T K, P bar or None for nvt) of every run of one structure."""
        if self.ensemble == "nvt":
            return [(float(t), None) for t in self.temperatures]
        return [(float(t), float(p)) for t in self.temperatures for p in self.pressures]


class LearnResources(StrictModel):
    """The resources of the training and exploration tasks (the labeller has its own)."""

    train: ResourcesSpec = Field(default_factory=ResourcesSpec)
    explore: ResourcesSpec = Field(default_factory=ResourcesSpec)


class LearnConfig(StrictModel):
    """The whole ``mlpot learn`` input (module docstring)."""

    init_data: list[str] = Field(min_length=1, description="initial labelled data (any format mlpot reads)")
    training: Union[str, dict[str, Any]] = Field(description="training input file (JSON/YAML) or the mapping itself")
    type_map: Optional[list[str]] = Field(default=None, description="elements (default: the training input's model.type_map)")
    ensemble_size: int = Field(default=4, ge=2, description="members of the ensemble (different seeds)")
    seeds: Optional[list[int]] = Field(default=None, description="one training seed per member (default from seed)")
    fine_tune: Optional[FineTuneConfig] = Field(default=None, description="fine-tune from the previous iteration's members")
    outlier_factor: Optional[float] = Field(default=2.0, ge=1.0, description=(
        "a member whose force RMSE on the training data exceeds this × the median of the others' is retrained "
        "from scratch with a new seed (null: never)"))
    outlier_retries: int = Field(default=2, ge=0, description="retrainings of an outlier member per iteration at "
                                                              "most; then its best attempt is kept (said in the record)")
    f_trust_lo: float = Field(gt=0, description="eV/Å; max force deviation below it: accurate")
    f_trust_hi: float = Field(gt=0, description="eV/Å; at or above it: failed (too far off to label)")
    candidates_per_iteration: int = Field(default=50, ge=1, description="candidates labelled per iteration at most")
    duplicate_tolerance: float = Field(default=0.01, ge=0, description="relative fingerprint distance under which "
                                                                       "two candidates are near-duplicates (0: keep all)")
    fingerprint_rcut: float = Field(default=6.0, gt=0, description="Å; radius of the candidates' radial fingerprint")
    stages: list[StageConfig] = Field(min_length=1, description="exploration stages, in order")
    accurate_target: float = Field(default=0.99, gt=0, le=1, description="accurate fraction that ends a stage")
    max_iterations: int = Field(default=20, ge=1, description="iterations at most (all stages together)")
    labeller: LabellerConfig
    resources: LearnResources = Field(default_factory=LearnResources)
    seed: int = Field(default=1, ge=0, description="master seed (members, MD, candidate picks)")
    device: str = Field(default="cpu", description="torch device of the training and MD tasks")
    output_dir: str = Field(default="learn_out", description="folder of the data, the results and every task")
    cluster: Optional[ClusterConfig] = Field(default=None, description="run the tasks on a cluster (docs/workflows.md)")

    @field_validator("init_data")
    @classmethod
    def _data(cls, v: list[str], info: ValidationInfo) -> list[str]:
        return resolve_input_paths(v, info)

    @field_validator("training")
    @classmethod
    def _training(cls, v: Union[str, dict], info: ValidationInfo) -> Union[str, dict]:
        return resolve_input_path(v, info, must_exist=True) if isinstance(v, str) else v

    @field_validator("output_dir")
    @classmethod
    def _out(cls, v: str, info: ValidationInfo) -> str:
        return resolve_input_path(v, info, must_exist=False)

    @model_validator(mode="after")
    def _check(self) -> "LearnConfig":
        if self.f_trust_lo >= self.f_trust_hi:
            raise ValueError(f"f_trust_lo ({self.f_trust_lo} eV/Å) must be below f_trust_hi ({self.f_trust_hi} eV/Å)")
        for k in range(len(self.stages)):
            lo, hi = self.trust(k)
            if lo >= hi:
                raise ValueError(f"stages[{k}]: f_trust_lo ({lo} eV/Å) must be below f_trust_hi ({hi} eV/Å) "
                                 "(a stage's own trust levels, or the top-level ones it inherits)")
        if self.seeds is not None and len(self.seeds) != self.ensemble_size:
            raise ValueError(f"seeds: expected one seed per member ({self.ensemble_size}), found {len(self.seeds)}")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: expected different seeds for the members, found {self.seeds}")
        return self

    def trust(self, stage: int) -> tuple[float, float]:
        """(f_trust_lo, f_trust_hi) eV/Å of stage ``stage``: its own where given, else the top-level ones."""
        st = self.stages[stage]
        return (st.f_trust_lo if st.f_trust_lo is not None else self.f_trust_lo,
                st.f_trust_hi if st.f_trust_hi is not None else self.f_trust_hi)

    def member_seeds(self) -> list[int]:
        """The training seed of each member."""
        return list(self.seeds) if self.seeds is not None else [self.seed * 1000 + 17 * k + 1 for k in range(self.ensemble_size)]


def load_learn_config(path: Union[str, os.PathLike]) -> LearnConfig:
    """Read and validate a ``mlpot learn`` input; relative paths resolve against its folder."""
    path = Path(path)
    data = read_tree(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(LearnConfig, dict(data), str(path), path.resolve().parent)


__all__ = ["LearnConfig", "StageConfig", "LabellerConfig", "FineTuneConfig", "ResourcesSpec", "load_learn_config",
           "import_calculator"]
