"""The MD state on the device, the communicator abstraction and the global reductions.

Units: positions Å, velocities Å/fs, masses amu, cell Å (rows are lattice vectors), temperature K,
energies eV.

Domain decomposition (later, ``md_engine/domain.py``) splits the atoms over ranks: each rank holds its
*owned* (local) atoms first, ``positions[:n_local]``; ghost copies (if any) follow. Every global
quantity (kinetic energy, momentum, atom count, potential energy, virial) is therefore computed over
``[:n_local]`` and summed with :meth:`Comm.allreduce_sum`. In the serial case :class:`SerialComm` is a
no-op and ``n_local == n_atoms``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import torch

from mlpot.errors import DataError
from mlpot.units import AMU_A2_PER_FS2_TO_EV, KB_EV_PER_K

# ---------------------------------------------------------------------------------------------------
# Communicator


class Comm(Protocol):
    """What the engine needs from a communicator; the MPI implementation comes with the domain layer."""

    rank: int
    size: int

    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``x`` over all ranks (returns a tensor of the same shape)."""
        ...

    def allreduce_max(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum of ``x`` over all ranks."""
        ...

    def broadcast(self, x: torch.Tensor, root: int = 0) -> torch.Tensor:
        """``x`` of rank ``root`` on every rank."""
        ...


class SerialComm:
    """The one-rank communicator: every reduction is the identity."""

    rank = 0
    size = 1

    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def allreduce_max(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def broadcast(self, x: torch.Tensor, root: int = 0) -> torch.Tensor:
        return x


SERIAL = SerialComm()


def _comm(comm: Optional[Comm]) -> Comm:
    return SERIAL if comm is None else comm


# ---------------------------------------------------------------------------------------------------
# State


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class State:
    """Positions, velocities and the box of one MD system, as tensors on one device.

    positions (N, 3) Å, velocities (N, 3) Å/fs, masses (N,) amu, types (N,) int64 indices into
    ``type_map``, cell (3, 3) Å (rows are lattice vectors; a non-periodic direction may be zero),
    pbc (3,) bool. ``image`` (N, 3) int64 counts the cell crossings undone by wrapping (unwrapped
    position = position + image @ cell). ``n_local``: the owned atoms are ``[:n_local]`` (all, serially).
    ``bounds`` (2, 3) Å: for non-periodic directions the reference extent used to detect lost atoms
    (see :func:`lost_atom_excess`). ``step`` and ``time_fs`` count the integration progress.
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    masses: torch.Tensor
    types: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    type_map: list[str]
    image: Optional[torch.Tensor] = None
    n_local: Optional[int] = None
    bounds: Optional[torch.Tensor] = None
    step: int = 0
    time_fs: float = 0.0
    # results of the last force evaluation (filled by the simulation)
    energy: Optional[torch.Tensor] = None
    forces: Optional[torch.Tensor] = None
    virial: Optional[torch.Tensor] = None
    extra: dict[str, Any] = field(default_factory=dict)
    # global atom index of each row (int64, (N,)); ``arange(N)`` serially; travels with migrating atoms
    ids: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        n = self.positions.shape[0]
        if self.n_local is None:
            self.n_local = n
        if self.ids is None:
            self.ids = torch.arange(n, dtype=torch.long, device=self.positions.device)
        if self.image is None:
            self.image = torch.zeros(n, 3, dtype=torch.long, device=self.positions.device)
        self.pbc = self.pbc.to(torch.bool)
        if self.bounds is None:
            self.bounds = _reference_bounds(self.positions, self.cell, self.pbc)

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
        """|det cell| (Å³), 0-d tensor; only meaningful for a fully periodic cell."""
        return torch.abs(torch.linalg.det(self.cell))

    def to(self, device: str | torch.device | None = None, dtype: Optional[torch.dtype] = None) -> "State":
        """A copy on ``device`` with floating tensors in ``dtype``."""

        def mv(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            if t is None:
                return None
            if t.is_floating_point():
                return t.to(device=device, dtype=dtype or t.dtype)
            return t.to(device=device)

        return State(
            positions=mv(self.positions), velocities=mv(self.velocities), masses=mv(self.masses),
            types=mv(self.types), cell=mv(self.cell), pbc=mv(self.pbc), type_map=list(self.type_map),
            image=mv(self.image), n_local=self.n_local, bounds=mv(self.bounds), step=self.step,
            time_fs=self.time_fs, ids=mv(self.ids),
        )

    # --- conversion
    @classmethod
    def from_atoms(
        cls,
        atoms: Any,
        type_map: Optional[Sequence[str]] = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        temperature: Optional[float] = None,
        seed: int = 0,
        exact_temperature: bool = True,
    ) -> "State":
        """A state from an ``ase.Atoms``.

        ``type_map``: element symbol of each type index (default: the sorted distinct symbols); an
        element not in it raises :class:`DataError`. Velocities: from ``temperature`` (K) by
        :func:`maxwell_boltzmann` when given, else the Atoms' own velocities (ASE units converted to
        Å/fs), else zero. Masses are the Atoms' masses (amu).
        """
        from ase import units as ase_units

        device = device or default_device()
        symbols = atoms.get_chemical_symbols()
        if type_map is None:
            type_map = sorted(set(symbols))
        type_map = list(type_map)
        index = {s: k for k, s in enumerate(type_map)}
        unknown = sorted(set(symbols) - set(index))
        if unknown:
            raise DataError(f"structure: elements {unknown} are not in type_map {type_map}")
        types = torch.tensor([index[s] for s in symbols], dtype=torch.long, device=device)
        f = dict(dtype=dtype, device=device)
        cell = torch.tensor(atoms.cell.array, **f)
        pbc = torch.tensor(list(atoms.pbc), dtype=torch.bool, device=device)
        state = cls(
            positions=torch.tensor(atoms.positions, **f),
            velocities=torch.tensor(atoms.get_velocities() * ase_units.fs, **f),
            masses=torch.tensor(atoms.get_masses(), **f),
            types=types, cell=cell, pbc=pbc, type_map=type_map,
        )
        if temperature is not None:
            maxwell_boltzmann(state, temperature, seed=seed, exact=exact_temperature)
        return state

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        format: Optional[str] = None,
        type_map: Optional[Sequence[str]] = None,
        lammps_symbols: Optional[Sequence[str]] = None,
        index: int | str = -1,
        **kwargs: Any,
    ) -> "State":
        """A state from any structure file ASE reads (POSCAR, extxyz, CIF, LAMMPS data, ...).

        LAMMPS data files (``format='lammps-data'`` or a ``.lmp``/``.data`` suffix; ``atom_style
        atomic``) carry numeric types: type ``k`` becomes the symbol ``lammps_symbols[k-1]`` if given,
        else ``type_map[k-1]`` (DeePMD's convention: LAMMPS types follow the model's type map), else
        the element ASE guesses from the Masses section. Remaining keyword arguments go to
        :meth:`from_atoms`.
        """
        atoms = read_structure(path, format=format, type_map=type_map, lammps_symbols=lammps_symbols, index=index)
        return cls.from_atoms(atoms, type_map=type_map, **kwargs)

    def to_atoms(self) -> Any:
        """An ``ase.Atoms`` copy (velocities in ASE units)."""
        import ase
        from ase import units as ase_units

        atoms = ase.Atoms(
            symbols=self.symbols, positions=self.positions.detach().cpu().numpy(),
            cell=self.cell.detach().cpu().numpy(), pbc=self.pbc.cpu().numpy(),
            masses=self.masses.detach().cpu().numpy(),
        )
        atoms.set_velocities(self.velocities.detach().cpu().numpy() / ase_units.fs)
        return atoms

    def clone(self) -> "State":
        s = self.to()
        s.positions, s.velocities, s.cell = s.positions.clone(), s.velocities.clone(), s.cell.clone()
        s.image = s.image.clone()
        s.ids = s.ids.clone()
        return s


def read_structure(
    path: str | Path,
    format: Optional[str] = None,
    type_map: Optional[Sequence[str]] = None,
    lammps_symbols: Optional[Sequence[str]] = None,
    index: int | str = -1,
) -> Any:
    """Read one structure with ASE (see :meth:`State.from_file`); errors become :class:`DataError`."""
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
    if is_lammps and "type" in atoms.arrays and (lammps_symbols or type_map):
        names = list(lammps_symbols or type_map)  # type: ignore[arg-type]
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


def _reference_bounds(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """(2, 3): per direction the low/high extent (Å along the completed lattice vector) of the atoms
    and of the box (when the cell vector is non-zero); used only for non-periodic directions."""
    proj = lattice_projection(positions, cell, pbc)
    lo = proj.min(0).values if positions.shape[0] else torch.zeros(3, dtype=positions.dtype, device=positions.device)
    hi = proj.max(0).values if positions.shape[0] else lo.clone()
    lengths = cell.norm(dim=1)
    lo = torch.minimum(lo, torch.zeros_like(lo))
    hi = torch.maximum(hi, lengths)
    return torch.stack([lo, hi])


def lattice_projection(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Fractional coordinates in the completed cell times the completed vector lengths (N, 3), Å."""
    from mlpot.neighbors import complete_cell

    full = complete_cell(cell.unsqueeze(0), pbc.reshape(1, 3))[0]
    frac = positions @ torch.linalg.inv(full)
    return frac * full.norm(dim=1)


def lost_atom_excess(state: State) -> torch.Tensor:
    """0-d tensor: how far (Å) the farthest atom is beyond the reference extent ``state.bounds``
    along a non-periodic direction (≤ 0 when all atoms are inside; 0 with full PBC)."""
    if bool(state.pbc.all()):
        return torch.zeros((), dtype=state.dtype, device=state.device)
    proj = lattice_projection(state.positions[: state.n_local], state.cell, state.pbc)
    excess = torch.maximum(state.bounds[0] - proj, proj - state.bounds[1])  # (N, 3)
    excess = excess[:, ~state.pbc]
    return excess.max() if excess.numel() else torch.zeros((), dtype=state.dtype, device=state.device)


# ---------------------------------------------------------------------------------------------------
# Global reductions (the only places that sum over atoms; MPI-ready through ``comm``)


def global_sum(x: torch.Tensor, comm: Optional[Comm] = None) -> torch.Tensor:
    """Sum of a per-rank partial result over ranks."""
    return _comm(comm).allreduce_sum(x)


def global_n_atoms(state: State, comm: Optional[Comm] = None) -> int:
    """Number of owned atoms over all ranks."""
    n = torch.tensor(float(state.n_local), dtype=torch.float64, device=state.device)
    return int(global_sum(n, comm).item())


def degrees_of_freedom(state: State, comm: Optional[Comm] = None, fixed_com: bool = True) -> int:
    """3N − 3 with the centre-of-mass momentum fixed at zero (default), else 3N."""
    n = global_n_atoms(state, comm)
    return 3 * n - (3 if fixed_com and n > 1 else 0)


def kinetic_energy(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Σ ½ m v² over owned atoms of all ranks, eV (0-d tensor)."""
    n = state.n_local
    ke = 0.5 * (state.masses[:n, None] * state.velocities[:n] ** 2).sum() * AMU_A2_PER_FS2_TO_EV
    return global_sum(ke, comm)


def kinetic_tensor(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Σ m v ⊗ v over owned atoms of all ranks, eV (3, 3) (twice the kinetic-energy tensor)."""
    n = state.n_local
    v = state.velocities[:n]
    t = (state.masses[:n, None, None] * v[:, :, None] * v[:, None, :]).sum(0) * AMU_A2_PER_FS2_TO_EV
    return global_sum(t, comm)


def temperature(state: State, comm: Optional[Comm] = None, dof: Optional[int] = None) -> torch.Tensor:
    """Instantaneous temperature 2K/(dof·k_B), K (0-d tensor)."""
    dof = dof if dof is not None else degrees_of_freedom(state, comm)
    return 2.0 * kinetic_energy(state, comm) / (max(dof, 1) * KB_EV_PER_K)


def total_momentum(state: State, comm: Optional[Comm] = None) -> torch.Tensor:
    """Σ m v (3,), amu·Å/fs."""
    n = state.n_local
    return global_sum((state.masses[:n, None] * state.velocities[:n]).sum(0), comm)


def remove_com_velocity(state: State, comm: Optional[Comm] = None) -> None:
    """Subtract the centre-of-mass velocity in place, so that the total momentum is zero."""
    n = state.n_local
    p = total_momentum(state, comm)
    m = global_sum(state.masses[:n].sum(), comm)
    state.velocities[:n] -= p / m


def maxwell_boltzmann(
    state: State,
    temperature_k: float,
    seed: int = 0,
    exact: bool = True,
    zero_momentum: bool = True,
    comm: Optional[Comm] = None,
    generator: Optional[torch.Generator] = None,
) -> None:
    """Draw velocities from the Maxwell–Boltzmann distribution at ``temperature_k`` (K), in place.

    Each Cartesian component is normal with variance k_B T / m (Å²/fs²); the draw is seeded by
    ``seed`` (or uses ``generator``), on the CPU so that it does not depend on the device. With
    ``zero_momentum`` the centre-of-mass velocity is removed; with ``exact`` the velocities are then
    rescaled so that 2K/(dof k_B) equals ``temperature_k`` exactly (dof = 3N−3 or 3N).
    """
    n = state.n_local
    gen = generator or torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    sigma = torch.sqrt(KB_EV_PER_K * temperature_k / (state.masses[:n].detach().cpu().double() * AMU_A2_PER_FS2_TO_EV))
    state.velocities[:n] = (z * sigma[:, None]).to(dtype=state.dtype, device=state.device)
    if zero_momentum:
        remove_com_velocity(state, comm)
    if exact and temperature_k > 0:
        t_now = float(temperature(state, comm, degrees_of_freedom(state, comm, zero_momentum)))
        if t_now > 0:
            state.velocities[:n] *= math.sqrt(temperature_k / t_now)
    if temperature_k == 0:
        state.velocities.zero_()
