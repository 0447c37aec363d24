"""Neighbor search: every pair within a cutoff, as whole-tensor torch ops; the one pair format.

The one output format, consumed by the descriptors, the model, ``mlpot neighbor-stat`` and the MD
engine, is a *full pair list* over the atoms of all frames concatenated along one axis:

* ``centers``   (n_pairs,) int64 — index ``i`` of the central atom (into the concatenated atoms)
* ``neighbors`` (n_pairs,) int64 — index ``j`` of the neighbor atom (same frame as ``i``)
* ``shifts``    (n_pairs, 3) int64 — the lattice image ``s`` of ``j``, so that the pair vector is
  ``r_ij = positions[j] - positions[i] + s @ cells[frame_index[i]]`` (Å) (:func:`pair_vectors`)

Both (i, j) and (j, i) are listed; the pair (i, i, s=0) never is, but (i, i, s≠0) is whenever an
atom sees its own periodic image (cells shorter than the cutoff). Pairs come in no particular order.
Positions need not lie inside the cell: shifts are relative to the positions as given.

``frame_index`` (n_atoms,) int64 says which frame each atom belongs to (sorted, as from
``torch.repeat_interleave``); ``cells`` is (n_frames, 3, 3) with rows the lattice vectors; ``pbc`` is
(n_frames, 3) bool. A direction that is not periodic may have a zero cell vector.

Layout of the subsystem:

* this module: :class:`NeighborList`, :func:`pair_vectors` (the one pair-vector function),
  :func:`complete_cell`;
* :mod:`mlpot.neighbors.cell_list`: the one cell-list kernel (bins, half stencil, chunked distance
  test) and its front ends :func:`neighbor_list` (periodic, batched; vesin backend where it is
  faster, :mod:`mlpot.neighbors.vesin_backend`) and :func:`local_pair_list` (the ghost cluster of
  a domain-decomposed MD run);
* :mod:`mlpot.neighbors.reference`: :func:`neighbor_list_brute_force` (tests, tiny systems);
* :mod:`mlpot.neighbors.verlet`: :class:`VerletList` (a list with a skin, rebuilt when needed).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class NeighborList(NamedTuple):
    """A full pair list (see module docstring): centers (P,) int64, neighbors (P,) int64,
    shifts (P, 3) int64."""

    centers: torch.Tensor
    neighbors: torch.Tensor
    shifts: torch.Tensor


def pair_vectors(
    positions: torch.Tensor, cells: torch.Tensor, frame_index: Optional[torch.Tensor], nl: NeighborList
) -> torch.Tensor:
    """Pair vectors r_ij = r_j − r_i + s_ij·cell, (n_pairs, 3) Å; differentiable in positions and cells.

    positions: (n_atoms, 3) Å; cells: (n_frames, 3, 3) or (3, 3) Å (rows = lattice vectors);
    frame_index: (n_atoms,) int64 frame of each atom, or None for one frame (then ``cells`` is its
    (3, 3) or (1, 3, 3) cell). A list with zero shifts (e.g. the ghost-atom cluster of
    :func:`local_pair_list`) gives plain r_j − r_i whatever the cell (an all-zero cell is fine).
    """
    d = positions.index_select(0, nl.neighbors) - positions.index_select(0, nl.centers)
    if frame_index is None:
        cell = cells.reshape(3, 3).to(positions.dtype)
        return torch.addmm(d, nl.shifts.to(positions.dtype), cell)
    cell_of_pair = cells.reshape(-1, 3, 3)[frame_index[nl.centers]]  # (n_pairs, 3, 3)
    shift_vec = torch.bmm(nl.shifts.to(positions.dtype).unsqueeze(1), cell_of_pair).squeeze(1)
    return d + shift_vec


def complete_cell(cells: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """A full-rank cell per frame: non-periodic lattice vectors that are zero or degenerate are
    replaced by unit vectors orthogonal to the periodic ones. cells (n_frames, 3, 3) Å, pbc
    (n_frames, 3) bool -> (n_frames, 3, 3) Å.

    Only used to compute fractional coordinates along periodic directions; the physics never sees it.
    """
    out = cells.clone()
    eye = torch.eye(3, dtype=cells.dtype, device=cells.device)
    for f in range(cells.shape[0]):  # loop over frames (a handful), not atoms
        c = out[f]
        if torch.abs(torch.linalg.det(c)) > 1e-8 * (1.0 + c.norm() ** 3):
            continue
        periodic = [k for k in range(3) if bool(pbc[f, k])]
        basis: list[torch.Tensor] = []
        for k in periodic:  # orthonormal basis of the periodic span (Gram–Schmidt)
            v = c[k].clone()
            for b in basis:
                v = v - (v @ b) * b
            basis.append(v / v.norm())
        for e in eye:  # Gram–Schmidt completion with the Cartesian axes
            v = e.clone()
            for b in basis:
                v = v - (v @ b) * b
            if v.norm() > 1e-6 and len(basis) < 3:
                basis.append(v / v.norm())
        free = [k for k in range(3) if k not in periodic]
        for k, b in zip(free, basis[len(periodic):]):
            out[f, k] = b
    return out


# the submodules import the names above from this (then partly initialised) package
from mlpot.neighbors.cell_list import local_pair_list, neighbor_list, neighbor_list_with  # noqa: E402
from mlpot.neighbors.reference import neighbor_list_brute_force  # noqa: E402
from mlpot.neighbors.verlet import VerletList, wrap_positions  # noqa: E402

__all__ = [
    "NeighborList",
    "pair_vectors",
    "complete_cell",
    "neighbor_list",
    "neighbor_list_with",
    "local_pair_list",
    "neighbor_list_brute_force",
    "VerletList",
    "wrap_positions",
]
