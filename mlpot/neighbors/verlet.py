"""Verlet neighbor list with a skin, on top of :func:`mlpot.neighbors.neighbor_list`.

The list is built with radius ``cutoff + skin`` and reused while it provably still holds every pair
closer than ``cutoff``. Let the list have been built at positions X₀ in cell H₀ and let the current
configuration be X in cell H. Write H = H₀ M (M = H₀⁻¹ H, the affine deformation of the box, the
identity at constant volume) and δ_i = x_i − x₀_i M (the non-affine displacement). Then for every
pair r_ij = r⁰_ij M + δ_j − δ_i, so a pair absent from the list (|r⁰_ij| ≥ cutoff + skin) satisfies
|r_ij| ≥ σ_min(M)(cutoff + skin) − 2 max_i |δ_i|. The list is rebuilt when that bound drops below
``cutoff``, i.e. when 2 max|δ| > σ_min(M)(cutoff + skin) − cutoff; at fixed cell this is the usual
"some atom moved more than skin/2". This is exact for any cell change (NPT), not a heuristic.

At each rebuild by :meth:`VerletList.build` the atoms are wrapped into the cell along periodic
directions (the crossings are counted in ``state.image``). A caller that builds the list itself
(e.g. the ghost-atom path of a domain-decomposed MD run) asks :meth:`VerletList.needs_rebuild` and
hands its list to :meth:`VerletList.store`.

*State-like* objects have ``positions`` (N, 3) Å (the first ``n_local`` are the owned atoms),
``cell`` (3, 3) Å, ``pbc`` (3,) bool, ``n_local`` int and, for wrapping, ``image`` (N, 3) int64
(e.g. ``md_engine.state.State``). The optional ``comm`` is any object with
``allreduce_max(tensor) -> tensor`` (the MD engine's communicator): then the rebuild decision is the
same on every rank. This module never imports the MD engine.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

import torch

from mlpot.errors import ConfigError
from mlpot.neighbors import NeighborList, complete_cell
from mlpot.neighbors.cell_list import neighbor_list


class MaxReducer(Protocol):
    """The part of the MD communicator protocol this module uses."""

    def allreduce_max(self, x: torch.Tensor) -> torch.Tensor: ...


def wrap_positions(state: Any) -> None:
    """Wrap ``state.positions`` into [0, 1) fractional coordinates along periodic directions, in
    place; the lattice translations removed are added to ``state.image`` (state-like, see module
    docstring)."""
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

    ``rebuild_every``: force a rebuild every this many calls of :meth:`update` /
    :meth:`needs_rebuild` (1: every step; the reference for tests), on top of the displacement
    criterion. ``wrap``: wrap the positions into the cell at each :meth:`build`. ``n_builds``
    counts the builds, ``n_updates`` the update checks.
    """

    def __init__(self, cutoff: float, skin: float = 1.0, rebuild_every: Optional[int] = None, wrap: bool = True) -> None:
        if skin < 0:
            raise ConfigError(f"neighbor list skin: expected ≥ 0 Å, got {skin}")
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
        """Build radius cutoff + skin (Å)."""
        return self.cutoff + self.skin

    def build(self, state: Any) -> NeighborList:
        """Wrap (if enabled) and build the periodic list of ``state`` now."""
        if self.wrap:
            wrap_positions(state)
        self._build_at(state.positions, state.cell, state.pbc)
        return self.nl  # type: ignore[return-value]

    def _build_at(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> None:
        with torch.no_grad():
            nl = neighbor_list(positions.detach(), cell.detach().unsqueeze(0), pbc.reshape(1, 3), self.radius)
        self.store(nl, positions, cell)

    def store(self, nl: NeighborList, positions: torch.Tensor, cell: torch.Tensor) -> None:
        """Adopt ``nl`` (built by the caller at ``positions`` (N, 3) Å in ``cell`` (3, 3) Å, radius
        :attr:`radius`): records the reference configuration of the rebuild criterion; counts a build."""
        self.nl = nl
        self.ref_positions = positions.detach().clone()
        self.ref_cell = cell.detach().clone()
        self.n_builds += 1

    def excess_displacement(self, state: Any, comm: Optional[MaxReducer] = None) -> torch.Tensor:
        """0-d tensor: 2·max|δ| − (σ_min(M)(cutoff+skin) − cutoff) (Å); the list is invalid when > 0.
        Collective (max over ranks) when ``comm`` is given."""
        assert self.ref_positions is not None and self.ref_cell is not None
        dtype, device = state.positions.dtype, state.positions.device
        if torch.equal(state.cell, self.ref_cell):
            delta = state.positions - self.ref_positions
            sigma_min = torch.ones((), dtype=dtype, device=device)
        else:
            if bool(state.pbc.all()):  # a periodic cell is already complete
                h0, h = self.ref_cell, state.cell
            else:
                pbc = state.pbc.reshape(1, 3)
                h0 = complete_cell(self.ref_cell.unsqueeze(0), pbc)[0]
                h = complete_cell(state.cell.unsqueeze(0), pbc)[0]
            m = torch.linalg.solve(h0, h)  # H = H0 M
            delta = state.positions - self.ref_positions @ m
            sigma_min = torch.linalg.svdvals(m).min()
        n = state.n_local
        max_d = (delta[:n] ** 2).sum(-1).max().sqrt() if n else torch.zeros((), dtype=dtype, device=device)
        # MPI: the maximum over ranks (sum of one-hot is not a max; use the communicator's max)
        if comm is not None:
            max_d = comm.allreduce_max(max_d)
        return 2 * max_d - (sigma_min * self.radius - self.cutoff)

    def _need(self, state: Any, excess: Optional[float], comm: Optional[MaxReducer]) -> bool:
        self.n_updates += 1
        if self.nl is None or (self.rebuild_every is not None and self.n_updates % self.rebuild_every == 0):
            return True
        if excess is None:
            excess = float(self.excess_displacement(state, comm))
        return excess > 0

    def needs_rebuild(self, state: Any, comm: Optional[MaxReducer] = None) -> bool:
        """Whether the list must be rebuilt before it is used at ``state``'s configuration: no list
        yet, the ``rebuild_every`` period, or the displacement criterion. Counts the update
        (``n_updates += 1``); collective when ``comm`` is given (same answer on every rank)."""
        return self._need(state, None, comm)

    def update(
        self, state: Any, excess: Optional[float] = None, comm: Optional[MaxReducer] = None
    ) -> tuple[NeighborList, bool]:
        """The current list, rebuilt first (:meth:`build`) if needed; returns (list, rebuilt).

        ``excess``: a precomputed value of :meth:`excess_displacement` (lets the caller batch its
        device synchronisations); computed here when None.
        """
        need = self._need(state, excess, comm)
        if need:
            self.build(state)
        return self.nl, need  # type: ignore[return-value]

    # --- checkpointing: the reference positions reproduce the same list bit for bit
    def state_dict(self) -> dict:
        """Counters and reference configuration (CPU tensors) for a checkpoint."""
        d: dict = {"n_builds": self.n_builds, "n_updates": self.n_updates}
        if self.ref_positions is not None:
            d["ref_positions"] = self.ref_positions.cpu()
            d["ref_cell"] = self.ref_cell.cpu()  # type: ignore[union-attr]
        return d

    def load_state_dict(self, d: dict, state: Any) -> None:
        """Restore from :meth:`state_dict`: rebuilds the list at the saved reference positions."""
        self.n_updates = int(d.get("n_updates", 0))
        if "ref_positions" in d:
            dtype, device = state.positions.dtype, state.positions.device
            self._build_at(
                d["ref_positions"].to(device=device, dtype=dtype), d["ref_cell"].to(device=device, dtype=dtype), state.pbc
            )
        self.n_builds = int(d.get("n_builds", self.n_builds))


__all__ = ["VerletList", "wrap_positions", "MaxReducer"]
