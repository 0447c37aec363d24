"""A dense, per-centre layout of a pair list for fast pair potentials on one rank (Lennard-Jones,
Uhlenbeck–Ford): the kernel of the free-energy runs of :mod:`md_engine.free_energy`.

The full list (both (i, j) and (j, i), :mod:`mlpot.neighbors`) is halved and re-laid out once per
neighbor-list build as an (N, K) table: of the two orientations of a pair the one whose vector
r_ij = r_j − r_i + s·H at the configuration the list was built at (:func:`note_build`; else the
first one it is used at) has r_ij·u > 0 is kept, u a fixed direction with irrational components (a
periodic self-image (i, i, ±s) keeps one of its two). Every atom keeps about half of its neighbors
(exactly half in a perfect crystal); K = the largest such count. Row i holds those neighbors j and their lattice shifts; unused slots point at i itself
with r² pushed beyond any cutoff (+:data:`PAD_R2` Å²), so they drop out of every sum. Pair vectors
are kept structure-of-arrays, D (3, N, K) Å, so every operation is a contiguous elementwise one:

    E = Σ_ik φ_ik,   g_ik = (1/r dφ/dr)_ik r_ik,   F_i = Σ_k g_ik − Σ_{(l,k): j(l,k)=i} g_lk,
    W = −Σ_ik g_ik ⊗ r_ik,

the first force term a dense row sum, the second one scatter over the table (r_ik the
:func:`mlpot.neighbors.pair_vectors` convention). These are the sums of the flat full-list path,
each pair once instead of twice and arranged so that CPU eager torch runs them several times faster
(index scatters over (P, 3) lists, reductions over the 3-vector axis and ``torch.where`` dominate
there; ``benchmarks/phase_md_speed.py``).

The table of a list is cached (keyed by the list's tensors, a few lists at a time), the shift
vectors s·H while the cell is unchanged, and the geometry (D, r²) while the positions and cell
tensors are unchanged (same tensor objects, same in-place version), so the two pair potentials of a
coupled Hamiltonian (LJ ↔ UF) share one geometry per step. Nothing is cached for tensors that
require grad. Only for the serial, whole-system case (``n_local`` None, a symmetric full list);
lists whose table would be more than :data:`MAX_PADDING` times larger than the half list use the
flat path.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import AbstractSet, Optional

import torch

from mlpot.neighbors import NeighborList

#: Å² added to r² in the unused slots of the table (beyond any cutoff)
PAD_R2 = 1e12
#: use the table only while N·K ≤ MAX_PADDING × (number of pairs)
MAX_PADDING = 2.0
_CACHE_SIZE = 4


class PaddedPairs:
    """The (N, K) table of one full pair list (module docstring): ``index3`` (3·N·K,) flat indices
    into positions.T (3, N), ``shifts`` (3, N·K) lattice shifts (float, positions' dtype), ``pad``
    (N, K) Å² (0 or :data:`PAD_R2`), ``neighbors`` (N, K) atom index j of each slot."""

    def __init__(self, nl: NeighborList, n_atoms: int, positions: torch.Tensor, cell: torch.Tensor,
                 keep: Optional[torch.Tensor] = None) -> None:
        self.centers_ref = nl.centers  # identity key of the cache
        n, dev, like = int(n_atoms), positions.device, positions
        keep = half_mask(nl, *_orientation_frame(nl, positions, cell)) if keep is None else keep
        c, j, s = nl.centers[keep], nl.neighbors[keep], nl.shifts[keep]
        order = torch.argsort(c, stable=True)
        c, j, s = c[order], j[order], s[order]
        counts = torch.bincount(c, minlength=n)
        k = max(int(counts.max()) if c.numel() else 1, 1)
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(c.numel(), device=dev) - start[c]
        nbr = torch.arange(n, device=dev).unsqueeze(1).expand(n, k).clone()
        nbr[c, slot] = j
        sh = torch.zeros(3, n, k, dtype=like.dtype, device=dev)
        sh[:, c, slot] = s.T.to(like.dtype)
        pad = torch.full((n, k), PAD_R2, dtype=like.dtype, device=dev)
        pad[c, slot] = 0.0
        self.n, self.k = n, k
        self.neighbors = nbr
        flat = nbr.reshape(-1)
        self.index3 = torch.cat([flat, flat + n, flat + 2 * n])
        self.shifts = sh.reshape(3, n * k)
        self.pad = pad
        self._cell: Optional[torch.Tensor] = None
        self._shift_vec: Optional[torch.Tensor] = None
        self._geom_key: Optional[tuple] = None
        self._geom: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._types_ref: Optional[torch.Tensor] = None
        self._param_cache: dict = {}

    def shift_vectors(self, cell: torch.Tensor) -> torch.Tensor:
        """s·H (3, N·K) Å for ``cell`` (3, 3) Å (rows = lattice vectors), cached while it is unchanged."""
        if cell.requires_grad:
            return cell.T @ self.shifts
        if self._cell is None or not torch.equal(self._cell, cell):
            self._cell = cell.detach().clone()
            self._shift_vec = cell.T @ self.shifts
        return self._shift_vec  # type: ignore[return-value]

    def geometry(self, positions: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D (3, N, K) Å, r² (N, K) Å², padded slots at ≥ :data:`PAD_R2`) at ``positions`` (N, 3) Å."""
        cacheable = not (positions.requires_grad or cell.requires_grad)
        key = (positions, positions._version, cell, cell._version) if cacheable else None  # the caller's objects
        if cacheable and self._geom_key is not None and self._geom_key[0] is positions and \
                self._geom_key[2] is cell and self._geom_key[1] == key[1] and self._geom_key[3] == key[3]:
            return self._geom  # type: ignore[return-value]
        cell = cell.reshape(3, 3).to(positions.dtype)
        x = positions.T.contiguous()  # (3, N)
        n, k = self.n, self.k
        d = torch.take(x, self.index3).view(3, n, k) - x.unsqueeze(2)
        d = d + self.shift_vectors(cell).view(3, n, k)
        r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + self.pad
        if cacheable:
            self._geom_key, self._geom = key, (d, r2)
        return d, r2

    def pair_params(self, name: str, table: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """table[t_i, t_j] (N, K) for an (n_types, n_types) ``table`` (cached per ``name`` and types)."""
        if self._types_ref is not types:
            self._types_ref, self._param_cache = types, {}
        if name not in self._param_cache:
            t = table.to(dtype=self.pad.dtype, device=self.pad.device)
            self._param_cache[name] = t[types.unsqueeze(1), types[self.neighbors]]
        return self._param_cache[name]


#: the direction u of the half-list rule (module docstring): irrational components
_HALF_DIRECTION = (0.5773502691896258, 0.5345224838248488, 0.6172133998483676)


def half_mask(nl: NeighborList, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """(P,) bool: the orientation of each pair of the full list ``nl`` that the table keeps,
    r_ij·u > 0 at ``positions`` (N, 3) Å in ``cell`` (3, 3) Å (module docstring); ties (r ⊥ u,
    r = 0): the lower index, or for a periodic self-image the lexicographically positive shift."""
    from mlpot.neighbors import pair_vectors

    with torch.no_grad():
        d = pair_vectors(positions.detach(), cell.detach().reshape(3, 3).to(positions.dtype), None, nl)
        u = torch.tensor(_HALF_DIRECTION, dtype=d.dtype, device=d.device)
        dot = d @ u  # the reverse orientation has exactly −dot (pair_vectors negates bit for bit)
        keep = dot > 0
        tie = dot == 0
        if bool(tie.any()):
            c, j, s = nl.centers, nl.neighbors, nl.shifts
            s_pos = (s[:, 0] > 0) | ((s[:, 0] == 0) & ((s[:, 1] > 0) | ((s[:, 1] == 0) & (s[:, 2] > 0))))
            keep = keep | (tie & ((c < j) | ((c == j) & s_pos)))
        return keep


#: the configuration each recent list was built at (:func:`note_build`), keyed like the tables
_BUILT_AT: "OrderedDict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]" = OrderedDict()


def note_build(nl: NeighborList, positions: torch.Tensor, cell: torch.Tensor) -> None:
    """Record that ``nl`` was built at ``positions`` (N, 3) Å in ``cell``: its table will then be
    oriented at that configuration, whenever it is first used (the MD engine calls this at every
    build and after a restore, so a restored run sums in exactly the same order as the original)."""
    _BUILT_AT[id(nl.centers)] = (nl.centers, positions.detach(), cell.detach())
    while len(_BUILT_AT) > _CACHE_SIZE:
        _BUILT_AT.popitem(last=False)


def _orientation_frame(nl: NeighborList, positions: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rec = _BUILT_AT.get(id(nl.centers))
    if rec is not None and rec[0] is nl.centers and rec[1].shape == positions.shape:
        return rec[1].to(positions.dtype), rec[2]
    return positions, cell


_TABLES: "OrderedDict[int, PaddedPairs]" = OrderedDict()


def padded_pairs(nl: NeighborList, positions: torch.Tensor, cell: torch.Tensor) -> Optional[PaddedPairs]:
    """The cached :class:`PaddedPairs` of the full list ``nl`` (built at ``positions`` (N, 3) Å in
    ``cell`` if not cached), or None when the table would be too sparse (:data:`MAX_PADDING`) or
    the list is empty."""
    n_atoms = positions.shape[0]
    key = id(nl.centers)
    hit = _TABLES.get(key)
    if hit is not None and hit.centers_ref is nl.centers and hit.n == n_atoms and hit.pad.dtype == positions.dtype \
            and hit.pad.device == positions.device:
        _TABLES.move_to_end(key)
        return hit
    p = nl.centers.numel()
    if p == 0 or n_atoms == 0:
        return None
    keep = half_mask(nl, *_orientation_frame(nl, positions, cell))
    counts = torch.bincount(nl.centers[keep], minlength=n_atoms)
    if n_atoms * int(counts.max()) > MAX_PADDING * max(int(keep.sum()), 1):
        return None
    table = PaddedPairs(nl, n_atoms, positions, cell, keep=keep)
    _TABLES[key] = table
    while len(_TABLES) > _CACHE_SIZE:
        _TABLES.popitem(last=False)
    return table


def reduce_pairs(table: PaddedPairs, phi: torch.Tensor, dphi: torch.Tensor, d: torch.Tensor,
                 outputs: AbstractSet[str]) -> dict[str, torch.Tensor]:
    """``energy`` Σφ (eV), ``forces`` (N, 3) eV/Å and ``virial`` (3, 3) eV (as requested) from φ and
    (1/r) dφ/dr (N, K) on the pair vectors ``d`` (3, N, K) of ``table`` (module docstring)."""
    out = {"energy": phi.sum()}
    if "forces" in outputs or "virial" in outputs:
        g = dphi.unsqueeze(0) * d  # (3, N, K) ∂E/∂r_ik
        if "forces" in outputs:
            f = g.sum(2).reshape(-1)  # (3N,) component-major
            f = f.index_add(0, table.index3, g.reshape(-1), alpha=-1)
            out["forces"] = f.view(3, table.n).T.contiguous()
        if "virial" in outputs:
            out["virial"] = -(g.reshape(3, -1) @ d.reshape(3, -1).T)
    return out


__all__ = ["PaddedPairs", "padded_pairs", "reduce_pairs", "note_build", "half_mask", "PAD_R2", "MAX_PADDING"]
