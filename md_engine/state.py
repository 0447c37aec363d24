"""The MD state: positions, velocities, box and the results of the last force evaluation, as
tensors on one device.

Units: positions Å, velocities Å/fs, masses amu, cell Å (rows are lattice vectors), energies eV.

Domain decomposition (:mod:`md_engine.domain`) splits the atoms over ranks: each rank holds its
*owned* (local) atoms ``[:n_local]``; every global quantity is a sum over ``[:n_local]`` reduced over
ranks (:mod:`md_engine.observables`). Serially ``n_local == n_atoms``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

# a default that __post_init__ replaces (keeps the field types non-Optional)
_FILLED: Any = None


@dataclass
class State:
    """Positions, velocities and the box of one MD system (this rank's part of it under MPI).

    positions (N, 3) Å, velocities (N, 3) Å/fs, masses (N,) amu, types (N,) int64 indices into
    ``type_map``, cell (3, 3) Å (rows are lattice vectors; a non-periodic direction may be zero),
    pbc (3,) bool. Filled when not given: ``image`` (N, 3) int64 cell crossings undone by wrapping
    (unwrapped position = position + image @ cell; zeros), ``n_local`` (owned atoms ``[:n_local]``;
    all), ``bounds`` (2, 3) Å reference extent for lost-atom detection along non-periodic directions
    (:func:`md_engine.space.reference_bounds`), ``ids`` (N,) int64 global atom ids (``arange(N)``;
    they travel with migrating atoms). ``step`` and ``time_fs`` count the integration progress.

    Results of the last force evaluation (filled by the simulation; zeros before): ``energy`` 0-d eV,
    ``forces`` (N, 3) eV/Å, ``virial`` (3, 3) eV (global sums over ranks), and ``outputs``: the extra
    named outputs of the potential (e.g. ``"dU_dlambda"``, scalars reduced over ranks).
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    masses: torch.Tensor
    types: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    type_map: list[str]
    image: torch.Tensor = _FILLED
    n_local: int = -1
    bounds: torch.Tensor = _FILLED
    step: int = 0
    time_fs: float = 0.0
    ids: torch.Tensor = _FILLED
    energy: torch.Tensor = _FILLED
    forces: torch.Tensor = _FILLED
    virial: torch.Tensor = _FILLED
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, dev, dt = self.positions.shape[0], self.positions.device, self.positions.dtype
        self.pbc = self.pbc.to(torch.bool)
        self.type_map = list(self.type_map)
        if self.n_local < 0:
            self.n_local = n
        if self.ids is None:
            self.ids = torch.arange(n, dtype=torch.long, device=dev)
        if self.image is None:
            self.image = torch.zeros(n, 3, dtype=torch.long, device=dev)
        if self.bounds is None:
            from md_engine.space import reference_bounds

            self.bounds = reference_bounds(self.positions, self.cell, self.pbc)
        if self.energy is None:
            self.energy = torch.zeros((), dtype=dt, device=dev)
        if self.forces is None:
            self.forces = torch.zeros(n, 3, dtype=dt, device=dev)
        if self.virial is None:
            self.virial = torch.zeros(3, 3, dtype=dt, device=dev)

    # --- basic properties
    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def symbols(self) -> list[str]:
        return [self.type_map[t] for t in self.types.tolist()]

    @property
    def volume(self) -> torch.Tensor:
        """|det cell| (Å³), 0-d tensor; only meaningful for a fully periodic cell. Cached while the
        cell tensor is unchanged (same object, same in-place version; never for a cell that
        requires grad): integrators and barostats ask for it several times per step."""
        cell = self.cell
        if cell.requires_grad:
            return torch.abs(torch.linalg.det(cell))
        key = self.__dict__.get("_volume_key")
        if key is not None and key[0] is cell and key[1] == cell._version:
            return key[2].clone()
        v = torch.abs(torch.linalg.det(cell))
        self.__dict__["_volume_key"] = (cell, cell._version, v)
        return v.clone()

    # --- copies
    def replace(self, **changes: Any) -> "State":
        """A new state with ``changes`` (field name → value); the other fields are shared."""
        return dataclasses.replace(self, **changes)

    def _map(self, fn: Any) -> "State":
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                changes[f.name] = fn(v)
            elif f.name == "outputs":
                changes[f.name] = {k: fn(t) for k, t in v.items()}
            elif f.name == "type_map":
                changes[f.name] = list(v)
        return self.replace(**changes)

    def to(self, device: str | torch.device | None = None, dtype: Optional[torch.dtype] = None) -> "State":
        """A copy on ``device`` with floating tensors in ``dtype`` (every field, results included)."""

        def mv(t: torch.Tensor) -> torch.Tensor:
            if t.is_floating_point():
                return t.to(device=device, dtype=dtype or t.dtype)
            return t.to(device=device)

        return self._map(mv)

    def clone(self) -> "State":
        """A deep copy (every tensor cloned)."""
        return self._map(lambda t: t.clone())

    # --- conversion (md_engine.structure)
    @classmethod
    def from_atoms(cls, atoms: Any, type_map: Optional[Sequence[str]] = None, device: str | torch.device | None = None,
                   dtype: torch.dtype = torch.float64, temperature: Optional[float] = None, seed: int = 0,
                   exact_temperature: bool = True) -> "State":
        """A state from an ``ase.Atoms`` (:func:`md_engine.structure.state_from_atoms`)."""
        from md_engine.structure import state_from_atoms

        return state_from_atoms(atoms, type_map=type_map, device=device, dtype=dtype, temperature=temperature,
                                seed=seed, exact_temperature=exact_temperature)

    @classmethod
    def from_file(cls, path: str | Path, format: Optional[str] = None, type_map: Optional[Sequence[str]] = None,
                  lammps_symbols: Optional[Sequence[str]] = None, index: int | str = -1, **kwargs: Any) -> "State":
        """A state from any structure file ASE reads (:func:`md_engine.structure.read_structure`)."""
        from md_engine.structure import read_structure, state_from_atoms

        atoms = read_structure(path, format=format, type_map=type_map, lammps_symbols=lammps_symbols, index=index)
        return state_from_atoms(atoms, type_map=type_map, **kwargs)

    def to_atoms(self) -> Any:
        """An ``ase.Atoms`` copy (velocities in ASE units)."""
        from md_engine.structure import state_to_atoms

        return state_to_atoms(self)


__all__ = ["State"]
