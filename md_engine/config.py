"""The ``mlpot md`` input file (YAML), validated with pydantic.

Example (``examples/md_water_nvt.yaml``)::

    structure: data/water/water.lmp      # any file ASE reads; LAMMPS data: types follow type_map
    type_map: [O, H]
    potential: {model: demo_out/model.pt}   # or {lj: {epsilon: 0.0104, sigma: 3.4, cutoff: 8.5}}
    ensemble: nvt-csvr                   # a name of md_engine.integrators.INTEGRATORS:
                                         # nve | nvt-langevin | nvt-nh | nvt-csvr | npt-scr
    temperature: 300                     # K
    # npt-scr also needs pressure: 1.0 (bar); barostat_mode: isotropic (default) | anisotropic
    # (anisotropic: the three box lengths fluctuate independently, for solids)
    dt: 0.5                              # fs
    steps: 400
    # thermo_columns: [step, temperature_K, potential_eV]   # observables by name (default: all)
    output_dir: md_out

Relative paths are relative to the current working directory. Units: K, bar, fs, Å, eV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlpot.errors import ConfigError

Table = Union[float, list[list[float]]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LJConfig(_Strict):
    """Lennard-Jones: epsilon (eV), sigma (Å) scalars or per-type-pair tables, cutoff (Å)."""

    epsilon: Table
    sigma: Table
    cutoff: float = Field(gt=0)
    shift: bool = True
    smooth: bool = False
    ro: Optional[float] = Field(default=None, gt=0)


class PotentialConfig(_Strict):
    """Exactly one of ``model`` (frozen mlpot model file) or ``lj``."""

    model: Optional[str] = None
    lj: Optional[LJConfig] = None

    @model_validator(mode="after")
    def _one(self) -> "PotentialConfig":
        if (self.model is None) == (self.lj is None):
            raise ValueError("give exactly one of 'model' (a model file) or 'lj' (Lennard-Jones parameters)")
        return self


class ParallelConfig(_Strict):
    """MPI domain decomposition (``mpirun -n P mlpot md input.yaml``; see md_engine.domain).

    ``mpi``: None = detect an MPI launch from the environment; ``grid``: ranks along the three lattice
    vectors (product = number of ranks), None = automatic."""

    mpi: Optional[bool] = None
    grid: Optional[list[int]] = Field(default=None, min_length=3, max_length=3)


class MDConfig(_Strict):
    structure: str
    format: Optional[str] = None
    type_map: Optional[list[str]] = None
    lammps_symbols: Optional[list[str]] = None
    potential: PotentialConfig

    ensemble: str = Field(default="nvt-csvr", description="a name of md_engine.integrators.INTEGRATORS")
    npt_thermostat: Literal["csvr", "langevin", "nh"] = "csvr"
    temperature: Optional[float] = Field(default=None, ge=0, description="K; thermostat target")
    init_temperature: Optional[float] = Field(default=None, ge=0, description="K; MB velocities (default: temperature)")
    pressure: Optional[float] = Field(default=None, description="bar; npt-scr target")
    dt: float = Field(default=0.5, gt=0, description="fs")
    steps: int = Field(ge=0)
    tau_t: float = Field(default=100.0, gt=0, description="fs")
    tau_p: float = Field(default=1000.0, gt=0, description="fs")
    compressibility: float = Field(default=4.5e-5, gt=0, description="1/bar")
    barostat_mode: Literal["isotropic", "anisotropic"] = Field(
        default="isotropic",
        description="npt-scr only. isotropic: the cell is scaled uniformly (shape fixed), driven by the scalar "
                    "pressure; anisotropic: the three Cartesian box lengths fluctuate independently, each driven by "
                    "its diagonal pressure-tensor component P_xx, P_yy, P_zz against the target (for solids; a "
                    "liquid's box shape then drifts freely)")
    nh_chain: int = Field(default=3, ge=1)

    thermo_every: int = Field(default=10, ge=1)
    thermo_columns: Optional[list[str]] = Field(
        default=None, description="observable names (md_engine.observables.OBSERVABLES or scalar potential outputs); "
                                  "default: step, time, energies, T, P, V, ns/day")
    traj_every: int = Field(default=100, ge=1)
    traj_formats: list[Literal["h5md", "extxyz"]] = ["h5md"]
    checkpoint_every: int = Field(default=1000, ge=1)
    output_dir: str = "md_out"
    restart: Union[bool, str] = False

    device: str = "auto"
    dtype: Literal["float64", "float32"] = "float64"
    seed: int = 0
    skin: float = Field(default=1.0, ge=0, description="Å")
    min_distance: float = Field(default=0.3, ge=0, description="Å")
    check_every: int = Field(default=10, ge=1, description="steps between safety checks (NaN, close atoms, lost atoms); also before every output")
    lost_margin: Optional[float] = Field(default=None, gt=0, description="Å")
    progress: bool = True
    parallel: ParallelConfig = ParallelConfig()

    @field_validator("ensemble")
    @classmethod
    def _known_ensemble(cls, v: str) -> str:
        from mlpot.errors import did_you_mean

        from md_engine.integrators import INTEGRATORS

        if v not in INTEGRATORS:
            names = INTEGRATORS.names(aliases=True)
            raise ValueError(f"unknown ensemble {v!r}; expected one of {names}" + did_you_mean(v, names))
        return INTEGRATORS.canonical(v)

    @model_validator(mode="after")
    def _needs(self) -> "MDConfig":
        from md_engine.integrators import INTEGRATORS

        units = {"temperature": "K", "pressure": "bar"}
        for key in INTEGRATORS.get(self.ensemble).meta.get("requires", ()):
            if getattr(self, key) is None:
                raise ValueError(f"{key}: required for ensemble {self.ensemble}" + (f" ({units[key]})" if key in units else ""))
        if self.barostat_mode != "isotropic" and self.ensemble != "npt-scr":
            raise ValueError(f"barostat_mode: {self.barostat_mode!r} needs ensemble npt-scr (got {self.ensemble})")
        return self

    def checkpoint_path(self) -> Path:
        return Path(self.output_dir) / "checkpoint.pt"

    def restart_path(self) -> Optional[Path]:
        if self.restart is False:
            return None
        return self.checkpoint_path() if self.restart is True else Path(self.restart)


def parse_config(data: Any, source: str = "md input") -> MDConfig:
    """Validate a mapping into :class:`MDConfig`; errors become one :class:`ConfigError` naming the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return MDConfig.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            got_s = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
            parts.append(f"{loc}: {msg}{got_s}")
        raise ConfigError(f"{source}: " + "; ".join(parts)) from None


def load_config(path: str | Path) -> MDConfig:
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: input file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(data, str(path))
