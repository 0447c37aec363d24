"""The ``mlpot phase`` input file (YAML), on the shared strict input base (:mod:`mlpot.config.base`).

Example (``examples/phase_lj/input.yaml``)::

    potential: {lj: {epsilon: 0.0104, sigma: 3.4, cutoff: 8.5}}   # or {model: model.pt}, {type: ase, ...}
    phases:
      fcc: {lattice: fcc, a: 5.40, element: Ar, repeat: [3, 3, 3]}
      liquid: {liquid_of: fcc}          # melted from fcc at melt_factor × t_max, checked to have melted
    pressures: [0, 500]                 # bar
    t_min: 60                            # K: the solid's reference T0 and the sweep's lower end
    t_max: 100                           # K: the liquid's reference T0 and the sweep's upper end
    replicas: 3
    output_dir: phase_out

Every stage length is in steps (``steps:`` section; defaults sized for a first look, not for
publication); units K, bar, fs, Å, eV. A relative path is relative to the input file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mlpot.config.base import StrictModel, read_tree, resolve_input_path, validate
from mlpot.errors import ConfigError

from mlpot.workflows.cluster import ClusterConfig  # the `cluster:` section of every workflow input

LATTICES = ("fcc", "bcc", "hcp", "diamond", "sc")


class PhaseSpec(StrictModel):
    """One phase: a solid from ``lattice`` + ``a`` (Å) [+ ``c`` for hcp] + ``element`` repeated
    ``repeat`` times (conventional cubic cells), or from a ``structure`` file, or a liquid
    (``liquid_of``: the solid phase it is melted from)."""

    lattice: Optional[Literal["fcc", "bcc", "hcp", "diamond", "sc"]] = Field(default=None, description="crystal lattice")
    a: Optional[float] = Field(default=None, gt=0, description="Å, lattice constant")
    c: Optional[float] = Field(default=None, gt=0, description="Å, hcp c (default ideal √(8/3) a)")
    element: Optional[str] = Field(default=None, description="element symbol")
    repeat: list[int] = Field(default=[3, 3, 3], min_length=3, max_length=3, description="supercell repetitions")
    structure: Optional[str] = Field(default=None, description="structure file of the solid (instead of lattice)")
    liquid_of: Optional[str] = Field(default=None, description="the liquid: melt this solid phase")

    @field_validator("structure")
    @classmethod
    def _path(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if v is None else resolve_input_path(v, info, must_exist=True)

    @model_validator(mode="after")
    def _one_kind(self) -> "PhaseSpec":
        kinds = [self.lattice is not None, self.structure is not None, self.liquid_of is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of lattice (+ a, element), structure, liquid_of")
        if self.lattice is not None and (self.a is None or self.element is None):
            raise ValueError(f"lattice {self.lattice}: needs a (Å) and element")
        return self

    @property
    def is_liquid(self) -> bool:
        return self.liquid_of is not None


class StepsConfig(StrictModel):
    """Stage lengths in MD steps."""

    equilibration: int = Field(default=4000, ge=10, description="NPT equilibration at (T0, P) (second half averaged)")
    spring: int = Field(default=1000, ge=10, description="NVT run for the spring constants (solids)")
    melt: int = Field(default=4000, ge=10, description="NVT melting of the liquid at melt_factor × t_max")
    reference_eq: int = Field(default=500, ge=0, description="equilibration at each end of a switching leg")
    switching: int = Field(default=4000, ge=10, description="one FL/UF switching leg")
    sweep: int = Field(default=10000, ge=10, description="one reversible-scaling sweep (each direction)")
    sweep_eq: int = Field(default=500, ge=0, description="equilibration before each sweep")


class UFSettings(StrictModel):
    """The Uhlenbeck–Ford reference of the liquids: p and the scaled density x = bρ (σ follows from
    x and the liquid's density so that x is a tabulated value)."""

    p: Literal[1, 25, 50, 75, 100] = Field(default=50, description="ε/k_BT")
    x: Literal[0.5, 1.0, 2.0, 3.0, 3.9] = Field(default=1.0, description="scaled density bρ")


class GibbsDuhemConfig(StrictModel):
    """Trace the coexistence line from the anchor (the first pressure's T_coex) to these pressures."""

    pressures: list[float] = Field(description="bar, in order away from the anchor")
    steps: int = Field(default=4000, ge=10, description="NPT steps per phase and right-hand side")


class PhaseConfig(StrictModel):
    """The whole ``mlpot phase`` input (module docstring)."""

    potential: dict[str, Any] = Field(description="{model: FILE} | {lj: {...}} | {type: NAME, ...} (as in mlpot md)")
    phases: dict[str, PhaseSpec] = Field(description="name → phase (solids and liquids)")
    pressures: list[float] = Field(default=[0.0], min_length=1, description="bar")
    t_min: float = Field(gt=0, description="K; lower end of the G(T) sweeps, T0 of the solids")
    t_max: float = Field(gt=0, description="K; upper end, T0 of the liquids")
    replicas: int = Field(default=3, ge=1, description="independent replicas per phase and pressure")
    cycles: int = Field(default=1, ge=1, description="forward+backward cycles per switching and sweep per replica")
    dt: float = Field(default=2.0, gt=0, description="fs")
    tau_t: float = Field(default=100.0, gt=0, description="fs; Langevin time constant")
    tau_p: float = Field(default=1000.0, gt=0, description="fs; barostat time constant")
    compressibility: float = Field(default=1e-5, gt=0, description="1/bar; barostat coupling")
    pressure_tolerance: float = Field(default=500.0, gt=0, description="bar; |⟨P⟩ − P| allowed after equilibration (+3 SEM)")
    melt_factor: float = Field(default=2.0, gt=1, description="the liquid is melted at melt_factor × t_max")
    steps: StepsConfig = Field(default_factory=StepsConfig)
    uf: UFSettings = Field(default_factory=UFSettings)
    gibbs_duhem: Optional[GibbsDuhemConfig] = Field(default=None, description="trace the line from the first pressure")
    n_grid: int = Field(default=201, ge=5, description="temperatures of the G(T) grid")
    seed: int = Field(default=1, ge=0, description="master seed (replica r, phase, pressure derive theirs)")
    device: str = Field(default="cpu", description="torch device of the MD tasks")
    output_dir: str = Field(default="phase_out", description="folder of the results and of every task")
    cluster: Optional[ClusterConfig] = Field(default=None, description="run the tasks on a cluster (see README)")

    @field_validator("output_dir")
    @classmethod
    def _out(cls, v: str, info: ValidationInfo) -> str:
        return resolve_input_path(v, info, must_exist=False)

    @field_validator("potential", mode="before")
    @classmethod
    def _potential(cls, v: Any, info: ValidationInfo) -> Any:
        """Validated by the md_engine config class of its name; returned as the canonical dict."""
        from md_engine.config import potential_data

        if not isinstance(v, Mapping):
            raise ValueError(f"expected a mapping ({{model: FILE}}, {{lj: {{...}}}}, {{type: NAME, ...}}), found {v!r}")
        entry, data, _ = potential_data(v)
        cfg = entry.config.model_validate(data, context=info.context)
        return cfg.model_dump(mode="json", exclude={"comment"})

    @model_validator(mode="after")
    def _check(self) -> "PhaseConfig":
        if self.t_max <= self.t_min:
            raise ValueError(f"t_max ({self.t_max} K) must be above t_min ({self.t_min} K)")
        for name, ph in self.phases.items():
            if ph.liquid_of is not None:
                src = self.phases.get(ph.liquid_of)
                if src is None or src.is_liquid:
                    raise ValueError(f"phases.{name}.liquid_of: {ph.liquid_of!r} is not a solid phase of this input "
                                     f"(solids: {[n for n, p in self.phases.items() if not p.is_liquid]})")
        if len(self.phases) < 2:
            raise ValueError("phases: give at least two phases (e.g. a solid and its liquid)")
        return self


def load_phase_config(path: Union[str, os.PathLike]) -> PhaseConfig:
    """Read and validate a ``mlpot phase`` input; relative paths resolve against its folder."""
    path = Path(path)
    data = read_tree(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(PhaseConfig, dict(data), str(path), path.resolve().parent)


__all__ = ["PhaseConfig", "PhaseSpec", "StepsConfig", "UFSettings", "GibbsDuhemConfig", "load_phase_config", "LATTICES"]
