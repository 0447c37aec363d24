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

from md_engine.comm import Comm
from md_engine.space import wrap_positions
from md_engine.state import State


_CHUNK_PAIRS = 1 << 21  # candidate pairs distance-tested at once (bounds the working memory)
# the 13 bin offsets lexicographically > 0 of the 3×3×3 stencil, then the own bin (offset 0)
_HALF_STENCIL = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) > (0, 0, 0)]


def local_pair_list(positions: torch.Tensor, n_local: int, cutoff: float) -> NeighborList:
    """Full pair list of the non-periodic cluster ``positions`` (n_all, 3) Å restricted to the
    centers ``[:n_local]`` (neighbors may be any atom): every (i, j) with i < n_local, j ≠ i and
    |r_j − r_i| < ``cutoff``, zero shifts. Pairs of two atoms ≥ n_local (ghost–ghost) are never
    generated, not even as candidates.

    Cartesian cell list with bins ≥ cutoff (× (1 + 1e-9)) wide, half stencil (13 neighbor bins +
    own bin), atoms sorted by (bin, ghost) so that each bin holds its local atoms first: a local atom
    is tested against all atoms of its stencil bins (own bin: the ones after it), a ghost atom only
    against the *local* atoms of its 13 neighbor bins. Each unordered pair with at least one local
    atom is thus tested once; it is then emitted as (i, j) for each local end. Whole-tensor ops,
    O(n_all) work and memory, no gradient.
    """
    dev, dtype = positions.device, positions.dtype
    n_all = positions.shape[0]
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    if n_local == 0 or n_all < 2:
        return NeighborList(empty, empty.clone(), torch.zeros(0, 3, dtype=torch.long, device=dev))
    with torch.no_grad():
        pos = positions.detach()
        pos64 = pos.to(torch.float64)
        lo = pos64.min(0).values
        extent = pos64.max(0).values - lo
        width_min = float(cutoff) * (1.0 + 1e-9)
        nb = torch.clamp(torch.floor(extent / width_min), 1, 1024).to(torch.long)  # bins per axis
        cap = 4 * n_all + 64  # sparse clusters (e.g. a far-away atom): coarser bins, O(n_all) memory
        while int(nb.prod()) > cap:
            nb = torch.clamp(torch.div(nb, 2, rounding_mode="floor"), min=1)
        width = torch.maximum(extent / nb.to(torch.float64), torch.full_like(extent, width_min))
        b3 = torch.minimum(torch.floor((pos64 - lo) / width).to(torch.long), nb - 1)
        nb_l = nb.tolist()
        n_bins = nb_l[0] * nb_l[1] * nb_l[2]
        bid = (b3[:, 0] * nb_l[1] + b3[:, 1]) * nb_l[2] + b3[:, 2]
        ghost = (torch.arange(n_all, device=dev) >= n_local).to(torch.long)
        key = 2 * bid + ghost
        sorted_key, order = torch.sort(key, stable=True)
        # per bin: first atom, first ghost, end (positions in the sorted order)
        bounds = torch.searchsorted(sorted_key, torch.arange(2 * n_bins + 1, device=dev))
        b_start, b_split, b_end = bounds[0:-1:2], bounds[1::2], bounds[2::2]
        pos_s = pos.index_select(0, order)
        ghost_s = ghost.index_select(0, order).to(torch.bool)
        b3_s = b3.index_select(0, order)
        ar = torch.arange(n_all, device=dev)

        qa, qs, qe = [], [], []  # queries: sorted atom, candidate range [qs, qe)
        for off in _HALF_STENCIL:
            c = b3_s + torch.tensor(off, device=dev)
            ok = ((c >= 0) & (c < nb)).all(dim=1)
            tb = (c[:, 0] * nb_l[1] + c[:, 1]) * nb_l[2] + c[:, 2]
            tb = torch.where(ok, tb, torch.zeros_like(tb))
            s0 = b_start.index_select(0, tb)
            s1 = torch.where(ghost_s, b_split.index_select(0, tb), b_end.index_select(0, tb))
            s1 = torch.where(ok, s1, s0)
            qa.append(ar), qs.append(s0), qe.append(s1)
        # own bin: local atoms against the atoms after them (later locals, all ghosts); ghosts: none
        own_b = (b3_s[:, 0] * nb_l[1] + b3_s[:, 1]) * nb_l[2] + b3_s[:, 2]
        qa.append(ar), qs.append(ar + 1)
        qe.append(torch.where(ghost_s, ar + 1, b_end.index_select(0, own_b)))
        qa_t, qs_t = torch.cat(qa), torch.cat(qs)
        count = torch.clamp(torch.cat(qe) - qs_t, min=0)
        keep = torch.nonzero(count).reshape(-1)
        qa_t, qs_t, count = qa_t[keep], qs_t[keep], count[keep]
        cum = torch.cumsum(count, 0)
        total = int(cum[-1]) if cum.numel() else 0
        offset = qs_t - (cum - count)  # sorted j = global candidate number + offset[query]
        rc2 = float(cutoff) ** 2
        out_i, out_j = [], []
        n_chunks = max(1, (total + _CHUNK_PAIRS - 1) // _CHUNK_PAIRS)
        targets = torch.arange(1, n_chunks, device=dev) * _CHUNK_PAIRS
        qb = torch.searchsorted(cum, targets, right=True).tolist()
        qbounds = [0] + qb + [int(keep.numel())]
        cum0 = torch.cat([cum.new_zeros(1), cum]).tolist() if total else [0]
        # the hot loop gathers with int32 indices where they fit (half the index memory traffic)
        it = torch.int32 if max(total, n_all) < 2**31 - 1 else torch.long
        offset_t, qa_it = offset.to(it), qa_t.to(it)
        for k in range(len(qbounds) - 1):
            q0, q1 = qbounds[k], qbounds[k + 1]
            g0, g1 = (cum0[q0], cum0[q1]) if total else (0, 0)
            if g1 <= g0:
                continue
            qidx = torch.repeat_interleave(torch.arange(q0, q1, device=dev, dtype=it), count[q0:q1], output_size=g1 - g0)
            js = torch.arange(g0, g1, device=dev, dtype=it) + offset_t.index_select(0, qidx)
            is_ = qa_it.index_select(0, qidx)
            v = pos_s.index_select(0, js) - pos_s.index_select(0, is_)
            sel = torch.nonzero(torch.einsum("pk,pk->p", v, v) < rc2).reshape(-1)
            out_i.append(order.index_select(0, is_.index_select(0, sel)))
            out_j.append(order.index_select(0, js.index_select(0, sel)))
        if not out_i:
            return NeighborList(empty, empty.clone(), torch.zeros(0, 3, dtype=torch.long, device=dev))
        i, j = torch.cat(out_i), torch.cat(out_j)
        # each tested pair once: emit it from each local end
        jl = torch.nonzero(j < n_local).reshape(-1)
        il = torch.nonzero(i < n_local).reshape(-1)
        centers = torch.cat([i.index_select(0, il), j.index_select(0, jl)])
        neighbors = torch.cat([j.index_select(0, il), i.index_select(0, jl)])
        return NeighborList(centers, neighbors, torch.zeros(centers.shape[0], 3, dtype=torch.long, device=dev))


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

    def needs_rebuild(self, state: State, comm: Optional[Comm] = None) -> bool:
        """Count one update and say whether the list must be rebuilt now: no list yet, the
        ``rebuild_every`` count reached, or the displacement criterion (collective with ``comm``)."""
        self.n_updates += 1
        if self.nl is None or (self.rebuild_every is not None and self.n_updates % self.rebuild_every == 0):
            return True
        return bool(self.excess_displacement(state, comm) > 0)

    def store(self, nl: NeighborList, positions: torch.Tensor, cell: torch.Tensor) -> None:
        """Adopt ``nl``, built elsewhere at ``positions`` in ``cell``, as the current list."""
        self.nl = nl
        self.ref_positions = positions.detach().clone()
        self.ref_cell = cell.detach().clone()
        self.n_builds += 1

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


__all__ = ["VerletList", "local_pair_list", "wrap_positions"]
