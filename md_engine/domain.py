"""Spatial domain decomposition over MPI ranks: ownership, ghost atoms, reverse forces, migration.

The box is split into a Cartesian grid of ``dims = (n_x, n_y, n_z)`` subdomains in *fractional*
coordinates (so triclinic boxes need nothing special): the rank at grid coordinates ``c`` owns the
atoms with ``c_k / n_k ≤ s_k < (c_k + 1) / n_k`` (s = fractional coordinates, wrapped into [0, 1)
along periodic directions). Only periodic directions are split (``n_k = 1`` along non-periodic ones).
The grid is a ``MPI.Comm.Create_cart`` grid (no reordering); by default :func:`choose_grid` picks
the factorisation of the rank count that minimises the ghost surface Σ_k n_k / d_k (d_k the spacing
of the lattice planes k) among those whose subdomains are at least one ghost shell wide; it can be
given explicitly (``grid=``).

**Ghost atoms.** With R = cutoff + skin and b_k the reciprocal vectors (columns of cell⁻¹), every atom
within Cartesian distance R of a subdomain lies within the fractional margin m_k = R·|b_k| beyond its
faces. At each neighbor-list build the atoms within m_k of each face are sent to the neighbor across
that face, staged along x, then y, then z, each stage forwarding the ghosts received in earlier stages
(so that edge and corner ghosts arrive in two or three hops). Crossing the periodic boundary adds the
lattice vector (the ghost is an explicit periodic image); along a direction with one rank the rank
sends to itself (its own periodic images). **Thin subdomains** (narrower than R, m_k > 1/n_k — many
ranks on a small box, a thin slab, or one rank whose box is thinner than R in ghost mode) take
H_k = ⌈m_k·n_k⌉ hops per direction and side: hop 1 sends the atoms held so far that lie within m_k
of the face, hop h > 1 passes on, in the same direction, the ghosts received at hop h − 1 that still
lie within m_k of the face (each hop adds the lattice vector when it crosses the periodic boundary,
so several images of one atom can arrive). :func:`choose_grid` still prefers grids that need one hop.

Between builds only ghost positions are exchanged (same send lists; image shifts use the current
cell, so NPT cell changes are exact). The pair list holds local centers only (neighbors may be
ghosts); the potential returns the energy of local atoms and forces on local + ghost atoms; the ghost
forces are sent back along the stages in reverse order and added to their owners. Energies and
virials (Σ over local-center pairs of −r_ij ⊗ ∂E/∂r_ij) are then summed over ranks. Every pair term
of the serial calculation is computed exactly once, so forces, energy and virial equal the serial
ones up to floating-point summation order.

**Migration.** At each neighbor-list build the owned atoms are wrapped into the box and sent to the
rank owning their new position (one ``alltoall``), with velocities, masses, types, image counters and
global ids (``State.ids``).

**Two decompositions, one interface.** :class:`SerialDomain` (one rank, no ghosts: the potential sees
the periodic pair list with lattice shifts, which also handles boxes smaller than the cutoff) and
:class:`GhostDomain` (any number of ranks, explicit ghost images, zero shifts; on one rank it runs on
periodic self-images, which the tests compare with the shift path) have the same methods:

* ``scatter(state)`` — this rank's part of a global state (serially the state itself);
* ``build(state) -> (pair_positions, nl)`` — at a neighbor-list rebuild: wrap (and migrate), the
  positions the potential sees (owned atoms first) and the pair list of radius cutoff + skin;
* ``forward(state) -> pair_positions`` — between rebuilds: the same rows at the current positions;
* ``pair_types(state)``, ``frame(state) -> (cell, pbc)``, ``n_centers(state)`` — the rest of the
  potential's input (ghost path: zero cell, no pbc, only owned atoms are centers);
* ``reduce(out, err, step) -> outputs`` — the potential's local outputs → global energy, virial and
  scalar extras (summed over ranks) and forces on the owned atoms (ghost forces sent back);
* ``gather(arrays, ids)`` — per-atom arrays of all ranks on rank 0 in global-id order.

:func:`make_domain` picks one (``ghosts=None``: ghosts when there is more than one rank).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from mlpot.errors import SimulationError
from mlpot.neighbors import NeighborList, complete_cell, local_pair_list, neighbor_list, wrap_positions

from md_engine.comm import Comm
from md_engine.state import State

_FORCE_KEYS = ("energy", "forces", "virial")

MIGRATING = ("positions", "velocities", "masses", "types", "image", "ids")


def _inv_full(cell: torch.Tensor, pbc: torch.Tensor) -> np.ndarray:
    full = complete_cell(cell.detach().to(torch.float64).cpu().unsqueeze(0), pbc.cpu().reshape(1, 3))[0]
    return torch.linalg.inv(full).numpy()


def choose_grid(size: int, cell: torch.Tensor, pbc: torch.Tensor, radius: float = 0.0) -> tuple[int, int, int]:
    """The rank grid (n_x, n_y, n_z), product ``size``, split along periodic directions only,
    minimising Σ_k n_k/d_k (d_k: lattice-plane spacing, Å) among grids whose subdomains are at least
    ``radius`` Å wide (all grids if none is)."""
    periodic = [bool(p) for p in pbc.tolist()]
    if size > 1 and not any(periodic):
        raise SimulationError("domain: MPI decomposition needs at least one periodic direction (pbc)")
    inv = _inv_full(cell, pbc)
    spacing = 1.0 / np.linalg.norm(inv, axis=0)
    cands = []
    for dims in itertools.product(range(1, size + 1), repeat=3):
        if dims[0] * dims[1] * dims[2] != size or any(n > 1 and not p for n, p in zip(dims, periodic)):
            continue
        feasible = all(spacing[k] / dims[k] >= radius for k in range(3) if periodic[k])
        cands.append((not feasible, float(sum(dims[k] / spacing[k] for k in range(3))), dims))
    cands.sort()
    return tuple(int(n) for n in cands[0][2])  # type: ignore[return-value]


@dataclass
class _Stage:
    dim: int
    sel: np.ndarray  # (n_send,) int64 rows (local + earlier ghosts) sent
    shift: np.ndarray  # (3,) float64 lattice shift (in units of cell rows) added to sent positions
    dest: int
    source: int
    offset: int  # first row of the ghosts received in this stage
    n_recv: int


def _subset(state: State, idx: torch.Tensor) -> State:
    per_atom = ("positions", "velocities", "masses", "types", "image", "ids")
    out = state.replace(**{name: getattr(state, name)[idx] for name in per_atom}, n_local=-1, energy=None,
                        forces=None, virial=None, outputs={})
    return out.clone()


class _Domain:
    """What both decompositions share: the communicator, the radius, the counters, :meth:`gather`."""

    serial = False
    #: the list built at checkpointed reference positions can be rebuilt as it was (no migration)
    keeps_reference_list = False

    def __init__(self, comm: Comm, radius: float) -> None:
        self.comm = comm
        self.size, self.rank = int(comm.size), int(comm.rank)
        self.radius = float(radius)
        self.dims: tuple[int, int, int] = (1, 1, 1)
        self.hops = [0, 0, 0]
        self.n_local = 0
        self.n_all = 0
        self.n_migrated = 0
        self.n_builds = 0

    @property
    def n_ghosts(self) -> int:
        return self.n_all - self.n_local

    def gather(self, arrays: dict[str, torch.Tensor], ids: torch.Tensor, root: int = 0) -> Optional[dict[str, torch.Tensor]]:
        """Collective: per-atom arrays of all ranks on ``root`` in global-id order (None on other ranks)."""
        if self.size == 1:
            order = torch.argsort(ids)
            return {k: v[order] for k, v in arrays.items()}
        payload = {k: v.detach().cpu().numpy() for k, v in arrays.items()}
        payload["__ids"] = ids.cpu().numpy()
        parts = self.comm.gather_obj(payload, root=root)
        self.comm.barrier()  # outputs only; keeps the pickled gather separate from later collectives
        if parts is None:
            return None
        order = np.argsort(np.concatenate([p["__ids"] for p in parts]), kind="stable")
        return {k: torch.from_numpy(np.concatenate([p[k] for p in parts])[order]) for k in arrays}

    def ghost_bytes_per_step(self, itemsize: int = 8) -> int:
        """Bytes this rank receives per step in the ghost exchange: positions in, forces back."""
        return 2 * 3 * itemsize * self.n_ghosts


class SerialDomain(_Domain):
    """One rank, no ghosts: the periodic pair list with lattice shifts (module docstring)."""

    serial = True
    keeps_reference_list = True

    def __init__(self, comm: Comm, cell: torch.Tensor, pbc: torch.Tensor, radius: float, wrap: bool = True) -> None:
        super().__init__(comm, radius)
        if self.size != 1:
            raise SimulationError("domain: more than one rank needs ghost atoms (ghosts=True)")
        self.wrap = bool(wrap)

    def scatter(self, state: State) -> State:
        return state

    def build(self, state: State) -> tuple[torch.Tensor, NeighborList]:
        """Wrap into the cell (if enabled) and the periodic pair list of radius ``self.radius``."""
        if self.wrap:
            wrap_positions(state)
        with torch.no_grad():
            nl = neighbor_list(state.positions.detach(), state.cell.detach().unsqueeze(0), state.pbc.reshape(1, 3),
                               self.radius)
        self.n_local = self.n_all = state.n_atoms
        self.n_builds += 1
        return state.positions, nl

    def forward(self, state: State) -> torch.Tensor:
        return state.positions

    def pair_types(self, state: State) -> torch.Tensor:
        return state.types

    def frame(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        return state.cell, state.pbc

    def n_centers(self, state: State) -> Optional[int]:
        return None

    def reduce(self, out: Optional[dict[str, torch.Tensor]], err: str, step: int) -> dict[str, torch.Tensor]:
        """The identity (one rank owns everything; errors were raised where they happened)."""
        assert out is not None
        return out


class GhostDomain(_Domain):
    """Decomposition of a periodic box over the ranks of ``comm`` with ghost atoms (module docstring).

    ``radius``: ghost-shell width cutoff + skin (Å). ``grid``: (n_x, n_y, n_z) or None (automatic).
    Counters: ``n_migrated`` (atoms sent to another rank, summed over this rank's migrations),
    ``n_ghosts`` (ghost atoms received per step at the last build), ``n_builds``.
    """

    def __init__(
        self,
        comm: Comm,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        radius: float,
        grid: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__(comm, radius)
        self.x = comm
        self.pbc = [bool(p) for p in pbc.tolist()]
        if grid is None:
            dims = choose_grid(self.size, cell, pbc, self.radius)
        else:
            dims = tuple(int(n) for n in grid)
            if len(dims) != 3 or int(np.prod(dims)) != self.size or min(dims) < 1:
                raise SimulationError(f"parallel.grid: expected 3 positive ints with product {self.size} "
                                      f"(the number of ranks), got {list(grid)}")
            bad = [k for k in range(3) if dims[k] > 1 and not self.pbc[k]]
            if bad:
                raise SimulationError(f"parallel.grid: direction(s) {bad} are not periodic and cannot be split, got {list(dims)}")
        self.dims = dims
        self.coords, self.neighbors = self.x.cart_neighbors(dims, self.pbc)
        self.stages: list[_Stage] = []
        self.hops = [1, 1, 1]  # ghost-exchange hops per direction at the last build
        self.all_types = torch.zeros(0, dtype=torch.long)
        self.ghost_ids = torch.zeros(0, dtype=torch.long)

    # --- ownership ----------------------------------------------------------------------------------
    def owner(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> np.ndarray:
        """Rank owning each position (N,) (row-major grid rank, as ``Create_cart`` without reordering)."""
        frac = positions.detach().to(torch.float64).cpu().numpy() @ _inv_full(cell, pbc)
        d = np.array(self.dims)
        c = np.clip(np.floor(frac * d).astype(np.int64), 0, d - 1)
        return (c[:, 0] * d[1] + c[:, 1]) * d[2] + c[:, 2]

    def scatter(self, state: State) -> State:
        """This rank's part of a global ``state`` (identical on all ranks), wrapped into the box."""
        st = state.clone()
        wrap_positions(st)
        mine = np.nonzero(self.owner(st.positions, st.cell, st.pbc) == self.rank)[0]
        return _subset(st, torch.as_tensor(mine, dtype=torch.long, device=st.device))

    def migrate(self, state: State) -> int:
        """Wrap and send every owned atom to the rank owning its position, in place; returns the
        number of atoms this rank sent away."""
        wrap_positions(state)
        if self.size == 1:
            return 0
        dest = self.owner(state.positions, state.cell, state.pbc)
        arrays = {name: getattr(state, name).detach().cpu().numpy() for name in MIGRATING}
        parts = [{k: v[dest == r] for k, v in arrays.items()} for r in range(self.size)]  # loop over ranks
        received = self.x.alltoall_obj(parts)
        dev = state.device
        for name in MIGRATING:
            setattr(state, name, torch.from_numpy(np.concatenate([p[name] for p in received])).to(dev))
        state.n_local = state.positions.shape[0]
        sent = int((dest != self.rank).sum())
        self.n_migrated += sent
        return sent

    # --- ghosts ---------------------------------------------------------------------------------------
    def _margins(self, cell: torch.Tensor, pbc: torch.Tensor) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """cell⁻¹ (with non-periodic directions completed), the fractional ghost margins m_k and the
        hops per direction H_k = ⌈m_k·n_k⌉ (1 when subdomains are at least R wide)."""
        inv = _inv_full(cell, pbc)
        margin = self.radius * np.linalg.norm(inv, axis=0)
        hops = [max(1, int(np.ceil(margin[k] * self.dims[k] - 1e-12))) if self.pbc[k] else 0 for k in range(3)]
        return inv, margin, hops

    def build(self, state: State) -> tuple[torch.Tensor, NeighborList]:
        """Migration (:meth:`migrate`), the ghost exchange from scratch and the pair list (local
        centers, radius ``self.radius``). Returns positions of local + ghost atoms (n_all, 3) Å and the
        list (zero shifts)."""
        self.migrate(state)
        dev, dt = state.device, state.dtype
        inv, margin, hops = self._margins(state.cell, state.pbc)
        cell = state.cell.detach().to(torch.float64).cpu().numpy()
        n = state.positions.shape[0]
        pos = state.positions.detach().cpu().numpy()
        types = state.types.cpu().numpy()
        ids = state.ids.cpu().numpy()
        self.stages = []
        self.hops = hops
        off = n
        for k in range(3):
            if not self.pbc[k]:
                continue
            lo, hi = self.coords[k] / self.dims[k], (self.coords[k] + 1) / self.dims[k]
            lower, upper = self.neighbors[k]
            # rows a side may send at the next hop: hop 1 all rows held so far; later hops only the
            # rows received at the previous hop travelling the same way
            movable = [np.arange(pos.shape[0]), np.arange(pos.shape[0])]
            for _hop in range(hops[k]):
                frac_k = pos.astype(np.float64) @ inv[:, k]
                got, received = [], []
                for side in (0, 1):
                    shift = np.zeros(3)
                    cand = movable[side]
                    if side == 0:  # atoms near my low face go to the lower neighbor
                        sel = cand[frac_k[cand] < lo + margin[k]]
                        dest, source = lower, upper
                        shift[k] = 1.0 if self.coords[k] == 0 else 0.0
                    else:
                        sel = cand[frac_k[cand] >= hi - margin[k]]
                        dest, source = upper, lower
                        shift[k] = -1.0 if self.coords[k] == self.dims[k] - 1 else 0.0
                    svec = (shift @ cell).astype(pos.dtype)
                    payload = (pos[sel] + svec, types[sel], ids[sel])
                    rp, rt, ri = self.x.sendrecv_obj(payload, dest, source)
                    self.stages.append(_Stage(k, sel.astype(np.int64), shift, dest, source, off, len(rp)))
                    received.append(np.arange(off, off + len(rp)))
                    off += len(rp)
                    got.append((rp, rt, ri))
                pos = np.concatenate([pos] + [g[0] for g in got])
                types = np.concatenate([types] + [g[1] for g in got])
                ids = np.concatenate([ids] + [g[2] for g in got])
                movable = received
        self.n_local, self.n_all = n, off
        self.all_types = torch.from_numpy(types).to(dev)
        self.ghost_ids = torch.from_numpy(ids[n:]).to(dev)
        all_pos = torch.from_numpy(np.ascontiguousarray(pos)).to(device=dev, dtype=dt)
        # local centers only; ghost–ghost pairs are never generated (mlpot.neighbors.local_pair_list)
        nl = local_pair_list(all_pos, n, self.radius)
        self.n_builds += 1
        return all_pos, nl

    def forward(self, state: State) -> torch.Tensor:
        """Positions of local + ghost atoms (n_all, 3) Å for the current owned positions and cell."""
        cell = state.cell.detach().to(torch.float64).cpu().numpy()
        local = state.positions.detach().cpu().numpy()
        buf = np.empty((self.n_all, 3), dtype=local.dtype)
        buf[: self.n_local] = local
        for st in self.stages:
            send = buf[st.sel] + (st.shift @ cell).astype(buf.dtype)
            self.x.sendrecv_into(send, buf[st.offset : st.offset + st.n_recv], st.dest, st.source)
        return torch.from_numpy(buf).to(state.device)

    def reverse(self, forces: torch.Tensor) -> torch.Tensor:
        """Forces on local + ghost atoms (n_all, 3) → forces on local atoms (n_local, 3), the ghost
        contributions summed into their owners."""
        dev = forces.device
        f = forces.detach().cpu().numpy().copy()
        ft = torch.from_numpy(f)
        for st in reversed(self.stages):
            send = np.ascontiguousarray(f[st.offset : st.offset + st.n_recv])
            recv = np.empty((st.sel.shape[0], 3), dtype=f.dtype)
            self.x.sendrecv_into(send, recv, st.source, st.dest)
            ft.index_add_(0, torch.from_numpy(st.sel), torch.from_numpy(recv))
        return ft[: self.n_local].to(dev)

    def pair_types(self, state: State) -> torch.Tensor:
        return self.all_types

    def frame(self, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """No cell and no periodicity: the ghosts are explicit images (zero shifts)."""
        return (torch.zeros(3, 3, dtype=state.dtype, device=state.device),
                torch.zeros(3, dtype=torch.bool, device=state.device))

    def n_centers(self, state: State) -> Optional[int]:
        return state.n_local

    def reduce(self, out: Optional[dict[str, torch.Tensor]], err: str, step: int) -> dict[str, torch.Tensor]:
        """Collective: energy, virial and scalar extras summed over ranks, forces on the owned atoms.
        ``out`` None with a message ``err`` when the potential failed on this rank: every rank then
        raises the same :class:`SimulationError` (naming the lowest failing rank)."""
        if out is None:
            dt = torch.float64
            out = {"energy": torch.zeros((), dtype=dt), "forces": torch.zeros(self.n_all, 3, dtype=dt),
                   "virial": torch.zeros(3, 3, dtype=dt)}
        energy, forces, virial = out["energy"], out["forces"], out["virial"]
        dt, dev = forces.dtype, forces.device
        flag = torch.ones(1, dtype=torch.float64, device=dev) * (1.0 if err else 0.0)
        red = self.comm.allreduce_sum(torch.cat([energy.reshape(1).double(), virial.reshape(9).double(), flag]))
        if float(red[10]) > 0:
            raise SimulationError(f"step {step}: model evaluation failed: {self._failed_rank_message(err)}")
        res = {"energy": red[0].to(dt), "forces": self.reverse(forces).to(dt), "virial": red[1:10].reshape(3, 3).to(dt)}
        extra = sorted(k for k, v in out.items() if k not in _FORCE_KEYS and v.numel() == 1)
        if extra:  # the same keys on every rank (the same potential): one more reduction
            vals = self.comm.allreduce_sum(torch.stack([out[k].reshape(()).double() for k in extra]))
            res.update({k: vals[i].to(out[k].dtype) for i, k in enumerate(extra)})
        res.update({k: v for k, v in out.items() if k not in res})
        return res

    def _failed_rank_message(self, err: str) -> str:
        """Collective: the message of the lowest-numbered rank that failed, prefixed with its rank."""
        size = self.size
        score = torch.tensor([float(size - self.rank) if err else 0.0], dtype=torch.float64)
        root = size - int(self.comm.allreduce_max(score)[0])
        msg = self.comm.bcast_obj(err, root=root)
        return f"rank {root}: {msg}" if size > 1 else msg


Domain = SerialDomain | GhostDomain


def make_domain(comm: Comm, cell: torch.Tensor, pbc: torch.Tensor, radius: float, grid: Optional[Sequence[int]] = None,
                ghosts: Optional[bool] = None) -> Domain:
    """:class:`GhostDomain` when ``ghosts`` (default: more than one rank), else :class:`SerialDomain`."""
    if ghosts if ghosts is not None else comm.size > 1:
        return GhostDomain(comm, cell, pbc, radius, grid=grid)
    if grid is not None and [int(n) for n in grid] != [1, 1, 1]:
        raise SimulationError(f"parallel.grid: expected 3 positive ints with product 1 (the number of ranks), got {list(grid)}")
    return SerialDomain(comm, cell, pbc, radius)


__all__ = ["SerialDomain", "GhostDomain", "Domain", "make_domain", "choose_grid"]
