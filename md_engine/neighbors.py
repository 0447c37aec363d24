"""Verlet neighbor list with a skin, on top of :func:`mlpot.neighbors.neighbor_list`.

The list is built with radius ``cutoff + skin`` and reused while it provably still holds every pair
closer than ``cutoff``. Let the list have been built at positions X₀ in cell H₀ and let the current
configuration be X in cell H. Write H = H₀ M (M = H₀⁻¹ H, the affine deformation of the box, the
identity at constant volume) and δ_i = x_i − x₀_i M (the non-affine displacement). Then for every
pair r_ij = r⁰_ij M + δ_j − δ_i, so a pair absent from the list (|r⁰_ij| ≥ cutoff + skin) satisfies
|r_ij| ≥ σ_min(M)(cutoff + skin) − 2 max_i |δ_i|. The list is rebuilt when that bound drops below
``cutoff``, i.e. when 2 max|δ| > σ_min(M)(cutoff + skin) − cutoff; at fixed cell this is the usual
"some atom moved more than skin/2". This is exact for any cell change (NPT), not a heuristic.

At each rebuild the atoms are wrapped into the cell along periodic directions (the crossings are
counted in ``state.image``).
"""

from __future__ import annotations

from typing import Optional

import torch

from mlpot.neighbors import NeighborList, complete_cell, neighbor_list

from md_engine.state import Comm, State, global_sum


def wrap_positions(state: State) -> None:
    """Wrap positions into [0, 1) fractional coordinates along periodic directions, in place; the
    lattice translations removed are added to ``state.image``."""
    if not bool(state.pbc.any()):
        return
    full = complete_cell(state.cell.unsqueeze(0), state.pbc.reshape(1, 3))[0]
    frac = state.positions @ torch.linalg.inv(full)
    shift = torch.floor(frac) * state.pbc.to(frac.dtype)
    if bool((shift != 0).any()):
        state.positions -= shift @ full
        state.image += shift.to(torch.long)


class VerletList:
    """Pair list of radius ``cutoff + skin`` (Å), rebuilt only when needed (see module docstring).

    ``rebuild_every``: force a rebuild every this many calls of :meth:`update` (1: every step; the
    reference for tests), on top of the displacement criterion. ``n_builds`` counts the builds.
    """

    def __init__(self, cutoff: float, skin: float = 1.0, rebuild_every: Optional[int] = None, wrap: bool = True) -> None:
        if skin < 0:
            raise ValueError(f"skin must be ≥ 0, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.rebuild_every = rebuild_every
        self.wrap = wrap
        self.n_builds = 0
        self.n_updates = 0
        self.nl: Optional[NeighborList] = None
        self.ref_positions: Optional[torch.Tensor] = None
        self.ref_cell: Optional[torch.Tensor] = None

    @property
    def radius(self) -> float:
        return self.cutoff + self.skin

    def build(self, state: State) -> NeighborList:
        """Wrap (if enabled) and build the list now."""
        if self.wrap:
            wrap_positions(state)
        self._build_at(state.positions, state.cell, state.pbc)
        return self.nl  # type: ignore[return-value]

    def _build_at(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> None:
        with torch.no_grad():
            self.nl = neighbor_list(positions.detach(), cell.detach().unsqueeze(0), pbc.reshape(1, 3), self.radius)
        self.ref_positions = positions.detach().clone()
        self.ref_cell = cell.detach().clone()
        self.n_builds += 1

    def excess_displacement(self, state: State, comm: Optional[Comm] = None) -> torch.Tensor:
        """0-d tensor: 2·max|δ| − (σ_min(M)(cutoff+skin) − cutoff); the list is invalid when > 0."""
        assert self.ref_positions is not None and self.ref_cell is not None
        if torch.equal(state.cell, self.ref_cell):
            delta = state.positions - self.ref_positions
            sigma_min = torch.ones((), dtype=state.dtype, device=state.device)
        else:
            pbc = state.pbc.reshape(1, 3)
            h0 = complete_cell(self.ref_cell.unsqueeze(0), pbc)[0]
            h = complete_cell(state.cell.unsqueeze(0), pbc)[0]
            m = torch.linalg.solve(h0, h)  # H = H0 M
            delta = state.positions - self.ref_positions @ m
            sigma_min = torch.linalg.svdvals(m).min()
        n = state.n_local
        max_d = (delta[:n] ** 2).sum(-1).max().sqrt() if n else torch.zeros((), dtype=state.dtype, device=state.device)
        # MPI: the maximum over ranks (sum of one-hot is not a max; use the communicator's max)
        if comm is not None:
            max_d = comm.allreduce_max(max_d)
        return 2 * max_d - (sigma_min * self.radius - self.cutoff)

    def update(self, state: State, excess: Optional[float] = None, comm: Optional[Comm] = None) -> tuple[NeighborList, bool]:
        """The current list, rebuilt first if needed; returns (list, rebuilt).

        ``excess``: a precomputed value of :meth:`excess_displacement` (lets the caller batch its
        device synchronisations); computed here when None.
        """
        self.n_updates += 1
        need = self.nl is None or (self.rebuild_every is not None and self.n_updates % self.rebuild_every == 0)
        if not need:
            if excess is None:
                excess = float(self.excess_displacement(state, comm))
            need = excess > 0
        if need:
            self.build(state)
        return self.nl, need  # type: ignore[return-value]

    # --- checkpointing: the reference positions reproduce the same list bit for bit
    def state_dict(self) -> dict:
        d: dict = {"n_builds": self.n_builds, "n_updates": self.n_updates}
        if self.ref_positions is not None:
            d["ref_positions"] = self.ref_positions.cpu()
            d["ref_cell"] = self.ref_cell.cpu()  # type: ignore[union-attr]
        return d

    def load_state_dict(self, d: dict, state: State) -> None:
        self.n_updates = int(d.get("n_updates", 0))
        if "ref_positions" in d:
            self._build_at(
                d["ref_positions"].to(device=state.device, dtype=state.dtype),
                d["ref_cell"].to(device=state.device, dtype=state.dtype), state.pbc,
            )
        self.n_builds = int(d.get("n_builds", self.n_builds))


__all__ = ["VerletList", "wrap_positions", "global_sum"]
