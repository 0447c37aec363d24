"""The ``mlpot md`` input file (YAML), validated on the shared input base (:mod:`mlpot.config.base`).

Example (``examples/md_water_nvt.yaml``)::

    structure: ../data/water/water.lmp   # any file ASE reads; LAMMPS data: types follow type_map
    type_map: [O, H]
    potential: {model: ../demo_out/model.pt}   # or {lj: {epsilon: 0.0104, sigma: 3.4, cutoff: 8.5}}
                                         # or {type: NAME, ...} for any potential of POTENTIALS
    ensemble: nvt-csvr                   # a name of md_engine.integrators.INTEGRATORS:
                                         # nve | nvt-langevin | nvt-nh | nvt-csvr | npt-scr
    temperature: 300                     # K
    # npt-scr also needs pressure: 1.0 (bar); barostat_mode: isotropic (default) | anisotropic
    # (anisotropic: the three box lengths fluctuate independently, for solids)
    dt: 0.5                              # fs
    steps: 400
    # thermo_columns: [step, temperature_K, potential_eV]   # observables by name (default: all)
    output_dir: ../demo_out/md

The rules of every mlpot input file (the same as ``mlpot train``'s): an unknown key, a wrong type or an
impossible value is one :class:`~mlpot.errors.ConfigError` line naming the file and the key path, a
misspelt key gets the closest known one (``md.yaml: dtt: unknown key (did you mean `dt`?)``); relative
paths (``structure``, the potential's model ``file``, ``output_dir``, ``restart``) are relative to the
folder of the input file (for a dict given in Python: to the current directory). Units: K, bar, fs, Å, eV.

``potential`` is validated by the config class its name has in :data:`md_engine.potentials.POTENTIALS`
(looked up at validation time: a potential registered from anywhere, a test file included, is valid).
Three spellings, one meaning: ``{type: NAME, key: value, ...}``, ``{NAME: {key: value, ...}}`` and, for
a potential whose config has a ``shorthand`` key, ``{NAME: value}`` (``{model: file.pt}`` =
``{type: model, file: file.pt}``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Optional, Union

from pydantic import Field, SerializeAsAny, ValidationError, ValidationInfo, field_validator, model_validator

from mlpot.config.base import StrictModel, read_tree, relocated, resolve_input_path, section_error, validate
from mlpot.errors import ConfigError, did_you_mean


def input_path(value: Union[str, os.PathLike], info: Optional[ValidationInfo]) -> str:
    """A path of the MD input, by the one path rule (:func:`mlpot.config.base.resolve_input_path`);
    it need not exist yet (the structure and model files are opened when the simulation is built)."""
    return resolve_input_path(value, info, must_exist=False)


class PotentialConfig(StrictModel):
    """Base of every potential's config class (the MD input's ``potential`` section): ``type`` (its
    name in :data:`md_engine.potentials.POTENTIALS`). ``shorthand``: the key that ``{NAME: value}``
    (a scalar instead of a mapping) fills, e.g. ``"file"`` for ``{model: file.pt}``; None: no shorthand."""

    shorthand: ClassVar[Optional[str]] = None

    type: str


def _potential_entry(name: Any, loc: tuple):
    """The POTENTIALS entry of ``name``; a ValidationError at ``loc`` naming the known potentials."""
    from md_engine.potentials import POTENTIALS

    if name in POTENTIALS:
        return POTENTIALS.get(name)
    known = POTENTIALS.names(aliases=True)
    hint = did_you_mean(name, known) if isinstance(name, str) else ""
    raise section_error("potential", [(loc, f"unknown potential {name!r}; expected one of {known}{hint}", name)])


def potential_data(v: Mapping[str, Any]) -> tuple[Any, dict[str, Any], tuple]:
    """``(registry entry, config data with the canonical type, key path of the data)`` of a
    ``potential`` section in any of its three spellings (module docstring)."""
    if "type" in v:
        entry = _potential_entry(v["type"], ("type",))
        return entry, {**v, "type": entry.name}, ()
    keys = [k for k in v if k != "_comment"]
    if len(keys) != 1:
        from md_engine.potentials import POTENTIALS

        raise ValueError(
            f"expected `type: NAME` or exactly one potential name as the key ({{model: FILE}}, {{lj: {{...}}}}; "
            f"NAME one of {POTENTIALS.names(aliases=True)}), found {'no keys' if not keys else 'keys ' + str(keys)}"
        )
    name = keys[0]
    entry = _potential_entry(name, (name,))
    value = v[name]
    if isinstance(value, Mapping):
        return entry, {**value, "type": entry.name}, (name,)
    key = entry.config.shorthand
    if key is None:
        raise section_error("potential", [((name,), f"expected a mapping of {entry.name}'s parameters, found {value!r}", value)])
    return entry, {"type": entry.name, key: value}, ()


class ParallelConfig(StrictModel):
    """MPI domain decomposition (``mpirun -n P mlpot md input.yaml``; see md_engine.domain).

    ``mpi``: None = detect an MPI launch from the environment; ``grid``: ranks along the three lattice
    vectors (product = number of ranks), None = automatic."""

    mpi: Optional[bool] = Field(default=None, description="use MPI (default: detected from the launch, e.g. mpirun)")
    grid: Optional[list[int]] = Field(default=None, min_length=3, max_length=3,
                                      description="ranks along the three lattice vectors (default: automatic)")


#: the default compressibility of the barostat (1/bar): liquid water's isothermal compressibility at
#: 300 K, 1 bar (4.5e-5 /bar). It sets how strongly the barostat couples (its relaxation time is tau_p
#: for a system of this compressibility), not the equilibrium volume; for solids (~1e-6 /bar for metals,
#: ~1e-7 for diamond) use the material's value, or the volume responds tau_p × (4.5e-5/κ) slower.
WATER_COMPRESSIBILITY = 4.5e-5


class MDConfig(StrictModel):
    """The whole MD input (module docstring); immutable (derive changed copies with ``model_copy``).
    Every key, its unit and its default: :func:`describe_keys` (``mlpot md --help-config``)."""

    structure: str = Field(description="structure file (any format ASE reads: POSCAR, extxyz, CIF, LAMMPS data, ...)")
    format: Optional[str] = Field(default=None, description="ASE format name of the structure file (default: from the suffix)")
    type_map: Optional[list[str]] = Field(default=None, description="element order of the types (default: the model's)")
    lammps_symbols: Optional[list[str]] = Field(
        default=None, description="LAMMPS data: element of each LAMMPS type 1, 2, ... (default: type_map)")
    potential: SerializeAsAny[PotentialConfig] = Field(
        description="{model: FILE} | {lj: {...}} | {type: NAME, ...} (see the potential keys below)")

    ensemble: str = Field(default="nvt-csvr", description="nve | nvt-langevin | nvt-nh | nvt-csvr | npt-scr "
                                                          "(md_engine.integrators.INTEGRATORS)")
    npt_thermostat: Literal["csvr", "langevin", "nh"] = Field(default="csvr", description="the thermostat of npt-scr")
    temperature: Optional[float] = Field(default=None, ge=0, description="K; thermostat target (required except for nve)")
    init_temperature: Optional[float] = Field(
        default=None, ge=0, description="K; Maxwell-Boltzmann initial velocities (default: temperature; nve: 0 unless given)")
    pressure: Optional[float] = Field(default=None, description="bar; npt-scr target (required for npt-scr)")
    dt: float = Field(default=0.5, gt=0, description="fs; time step")
    steps: int = Field(ge=0, description="total number of steps (with restart: the total, not additional)")
    tau_t: float = Field(default=100.0, gt=0, description="fs; thermostat time constant")
    tau_p: float = Field(default=1000.0, gt=0, description="fs; barostat time constant")
    compressibility: float = Field(
        default=WATER_COMPRESSIBILITY, gt=0,
        description="1/bar; the barostat's coupling (default: liquid water's 4.5e-5; use the material's value for "
                    "solids, ~1e-6 for metals: it sets the volume relaxation speed, not the equilibrium)")
    barostat_mode: Literal["isotropic", "anisotropic"] = Field(
        default="isotropic",
        description="npt-scr only. isotropic: the cell is scaled uniformly (shape fixed), driven by the scalar "
                    "pressure; anisotropic: the three Cartesian box lengths fluctuate independently, each driven by "
                    "its diagonal pressure-tensor component P_xx, P_yy, P_zz against the target (for solids; a "
                    "liquid's box shape then drifts freely)")
    nh_chain: int = Field(default=3, ge=1, description="length of the Nose-Hoover chain (nvt-nh)")

    thermo_every: int = Field(default=10, ge=1, description="steps between thermo lines (stdout without a progress bar, thermo.csv)")
    thermo_columns: Optional[list[str]] = Field(
        default=None, description="observable names (md_engine.observables.OBSERVABLES or scalar potential outputs); "
                                  "default: step, time, energies, T, P, V, ns/day")
    traj_every: int = Field(default=100, ge=1, description="steps between trajectory frames")
    traj_formats: list[Literal["h5md", "extxyz"]] = Field(
        default=["h5md"], description="trajectory files in output_dir: traj.h5 (H5MD) and/or traj.xyz")
    checkpoint_every: int = Field(default=1000, ge=1, description="steps between checkpoints (also written at the end)")
    output_dir: str = Field(default="md_out", description="folder of thermo.csv, trajectories, checkpoint.pt")
    restart: Union[bool, str] = Field(
        default=False, description="true: continue from output_dir/checkpoint.pt; or a checkpoint path")

    device: str = Field(default="auto", description="auto (CUDA when available) | cpu | cuda | cuda:N")
    dtype: Literal["float64", "float32"] = Field(default="float64", description="precision of the state")
    seed: int = Field(default=0, description="random seed (velocities, stochastic thermostats and barostat)")
    skin: float = Field(default=1.0, ge=0, description="Å; Verlet skin (list radius = cutoff + skin)")
    min_distance: float = Field(default=0.3, ge=0, description="Å; stop when two atoms come closer")
    check_every: int = Field(default=10, ge=1, description="steps between safety checks (NaN, close atoms, lost atoms); also before every output")
    lost_margin: Optional[float] = Field(
        default=None, gt=0, description="Å; stop when an atom leaves a non-periodic box by more (default 3 × cutoff)")
    progress: bool = Field(default=True, description="progress bar on a terminal (-q turns it off)")
    parallel: ParallelConfig = Field(default=ParallelConfig(), description="MPI decomposition (keys below)")

    @field_validator("ensemble")
    @classmethod
    def _known_ensemble(cls, v: str) -> str:
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

    @field_validator("potential", mode="before")
    @classmethod
    def _potential(cls, v: Any, info: ValidationInfo) -> Any:
        """Validate with the config class registered for the potential's name (module docstring)."""
        if isinstance(v, PotentialConfig):
            return v
        if not isinstance(v, Mapping):
            raise ValueError(f"expected a mapping ({{type: NAME, ...}}, {{model: FILE}} or {{lj: {{...}}}}), found {v!r}")
        entry, data, where = potential_data(v)
        try:
            return entry.config.model_validate(data, context=info.context)
        except ValidationError as exc:
            if not where:
                raise
            raise relocated(exc, where, "potential") from None

    @field_validator("structure", "output_dir")
    @classmethod
    def _paths(cls, v: str, info: ValidationInfo) -> str:
        return input_path(v, info)

    @field_validator("restart")
    @classmethod
    def _restart(cls, v: Union[bool, str], info: ValidationInfo) -> Union[bool, str]:
        return v if isinstance(v, bool) else input_path(v, info)

    def checkpoint_path(self) -> Path:
        return Path(self.output_dir) / "checkpoint.pt"

    def restart_path(self) -> Optional[Path]:
        if self.restart is False:
            return None
        return self.checkpoint_path() if self.restart is True else Path(self.restart)


def parse_config(data: Any, source: str = "md input", base_dir: Union[str, os.PathLike, None] = None) -> MDConfig:
    """Validate a mapping into :class:`MDConfig`; errors become one :class:`ConfigError` line naming
    ``source`` and the key path (:func:`mlpot.config.base.validate`, the wording of every mlpot input).
    ``base_dir``: the folder relative paths resolve against (None: left relative, i.e. the current directory)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, found {type(data).__name__}")
    return validate(MDConfig, dict(data), source, base_dir)


def load_config(path: Union[str, os.PathLike]) -> MDConfig:
    """Read (:func:`mlpot.config.base.read_tree`: YAML for ``.yaml``/``.yml``, else JSON) and validate an
    MD input file; relative paths in it resolve against its folder."""
    path = Path(path)
    return parse_config(read_tree(path), str(path), path.resolve().parent)




def _default_text(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "required"
    d = field.default
    if d is PydanticUndefined or d is None:
        return "–"
    if isinstance(d, StrictModel):
        return "–"
    if isinstance(d, bool):
        return str(d).lower()
    return str(d)


def describe_keys() -> list[tuple[str, str, str]]:
    """Every key of the MD input as ``(key, default, description with unit)``, including the nested
    ``parallel`` keys and the keys of every registered potential (``potential.<name>.<key>``)."""
    from md_engine.potentials import POTENTIALS

    rows: list[tuple[str, str, str]] = []
    for name, f in MDConfig.model_fields.items():
        if name == "comment":  # DeePMD-kit's `_comment`, accepted everywhere
            continue
        rows.append((name, _default_text(f), f.description or ""))
        if name == "parallel":
            for sub, g in ParallelConfig.model_fields.items():
                if sub == "comment":
                    continue
                rows.append((f"parallel.{sub}", _default_text(g), g.description or ""))
    for entry in POTENTIALS:
        doc = (entry.config.__doc__ or "").strip().splitlines()[0] if entry.config is not None else ""
        for sub, g in (entry.config.model_fields.items() if entry.config is not None else ()):
            if sub in ("type", "comment"):
                continue
            rows.append((f"potential.{entry.name}.{sub}", _default_text(g), g.description or doc))
    return rows


def keys_table() -> str:
    """:func:`describe_keys` as a Markdown table (the README's MD-input section and ``--help-config``)."""
    lines = ["| key | default | meaning (unit) |", "|---|---|---|"]
    lines += [f"| `{k}` | {d} | {t.replace('|', chr(92) + '|')} |" for k, d, t in describe_keys()]
    return "\n".join(lines)


__all__ = ["MDConfig", "ParallelConfig", "PotentialConfig", "parse_config", "load_config", "input_path", "potential_data", "describe_keys", "keys_table",
           "WATER_COMPRESSIBILITY"]
