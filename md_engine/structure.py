"""Structures in and out: any file ASE reads (POSCAR, extxyz, CIF, LAMMPS data, ...) → :class:`State`,
with the LAMMPS numeric-type mapping; ``State`` → ``ase.Atoms``.

LAMMPS data files (``format='lammps-data'`` or a ``.lmp``/``.data`` suffix; ``atom_style atomic``)
carry numeric types: type ``k`` becomes the symbol ``lammps_symbols[k-1]`` if given, else
``type_map[k-1]`` (DeePMD's convention: LAMMPS types follow the model's type map), else the element
ASE guesses from the Masses section. Element symbol → type index is :func:`mlpot.data.types.type_indices`
(one error type, :class:`mlpot.data.types.UnknownElementError`, a DataError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from mlpot.data.types import type_indices
from mlpot.device import resolve_device
from mlpot.errors import DataError

from md_engine.state import State


def read_structure(
    path: str | Path,
    format: Optional[str] = None,
    type_map: Optional[Sequence[str]] = None,
    lammps_symbols: Optional[Sequence[str]] = None,
    index: int | str = -1,
) -> Any:
    """Read one structure with ASE as ``ase.Atoms`` (module docstring); errors become :class:`DataError`."""
    import ase.io

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: structure file not found")
    is_lammps = format in ("lammps-data", "lammps") or (format is None and path.suffix in (".lmp", ".data"))
    try:
        if is_lammps:
            atoms = ase.io.read(path, format="lammps-data", atom_style="atomic", units="metal", parallel=False)
        else:
            atoms = ase.io.read(path, format=format, index=index, parallel=False)
    except Exception as exc:  # ASE raises many types
        raise DataError(f"{path}: cannot read structure ({type(exc).__name__}: {exc})") from exc
    names = list(lammps_symbols or type_map or [])
    if is_lammps and "type" in atoms.arrays and names:
        ltypes = atoms.arrays["type"]
        if ltypes.max() > len(names) or ltypes.min() < 1:
            raise DataError(
                f"{path}: LAMMPS types {sorted(set(ltypes.tolist()))} but only {len(names)} symbols "
                f"given ({names}); pass type_map/lammps_symbols with one symbol per LAMMPS type"
            )
        from ase.data import atomic_masses, atomic_numbers

        try:
            numbers = [atomic_numbers[names[t - 1]] for t in ltypes]
        except KeyError as exc:
            raise DataError(f"{path}: unknown element symbol {exc} in type map {names}") from exc
        atoms.set_atomic_numbers(numbers)
        atoms.set_masses([atomic_masses[z] for z in numbers])
    return atoms


def state_from_atoms(
    atoms: Any,
    type_map: Optional[Sequence[str]] = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    temperature: Optional[float] = None,
    seed: int = 0,
    exact_temperature: bool = True,
) -> State:
    """A state from an ``ase.Atoms``.

    ``type_map``: element symbol of each type index (default: the sorted distinct symbols); an
    element not in it raises :class:`mlpot.data.types.UnknownElementError` (a DataError). Velocities:
    from ``temperature`` (K) by :func:`md_engine.observables.maxwell_boltzmann` when given, else the
    Atoms' own velocities (ASE units converted to Å/fs), else zero. Masses: the Atoms' masses (amu).
    """
    from ase import units as ase_units

    dev = resolve_device(device)
    symbols = atoms.get_chemical_symbols()
    type_map = sorted(set(symbols)) if type_map is None else list(type_map)
    types = torch.as_tensor(type_indices(symbols, type_map, "structure", owner="the"), device=dev)
    f = dict(dtype=dtype, device=dev)
    state = State(
        positions=torch.tensor(atoms.positions, **f),
        velocities=torch.tensor(atoms.get_velocities() * ase_units.fs, **f),
        masses=torch.tensor(atoms.get_masses(), **f),
        types=types, cell=torch.tensor(atoms.cell.array, **f),
        pbc=torch.tensor(list(atoms.pbc), dtype=torch.bool, device=dev), type_map=type_map,
    )
    if temperature is not None:
        from md_engine.observables import maxwell_boltzmann

        maxwell_boltzmann(state, temperature, seed=seed, exact=exact_temperature)
    return state


def state_to_atoms(state: State) -> Any:
    """An ``ase.Atoms`` copy of ``state`` (velocities in ASE units)."""
    import ase
    from ase import units as ase_units

    atoms = ase.Atoms(
        symbols=state.symbols, positions=state.positions.detach().cpu().numpy(),
        cell=state.cell.detach().cpu().numpy(), pbc=state.pbc.cpu().numpy(),
        masses=state.masses.detach().cpu().numpy(),
    )
    atoms.set_velocities(state.velocities.detach().cpu().numpy() / ase_units.fs)
    return atoms


__all__ = ["read_structure", "state_from_atoms", "state_to_atoms"]
