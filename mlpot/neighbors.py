"""Neighbor search: every pair within a cutoff, for a batch of frames, as whole-tensor torch ops.

The one output format, consumed by the descriptors, the model, ``mlpot neighbor-stat`` and the MD
engine, is a *full pair list* over the atoms of all frames concatenated along one axis:

* ``centers``   (n_pairs,) int64 — index ``i`` of the central atom (into the concatenated atoms)
* ``neighbors`` (n_pairs,) int64 — index ``j`` of the neighbor atom (same frame as ``i``)
* ``shifts``    (n_pairs, 3) int64 — the lattice image ``s`` of ``j``, so that the pair vector is
  ``r_ij = positions[j] - positions[i] + s @ cells[frame_index[i]]`` (Å)

Both (i, j) and (j, i) are listed; the pair (i, i, s=0) never is, but (i, i, s≠0) is whenever an
atom sees its own periodic image (cells shorter than the cutoff). Pairs come in no particular order.
Positions need not lie inside the cell: shifts are relative to the positions as given.

``frame_index`` (n_atoms,) int64 says which frame each atom belongs to (sorted, as from
``torch.repeat_interleave``); ``cells`` is (n_frames, 3, 3) with rows the lattice vectors; ``pbc`` is
(n_frames, 3) bool. A direction that is not periodic may have a zero cell vector.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class NeighborList(NamedTuple):
    """A full pair list (see module docstring)."""

    centers: torch.Tensor
    neighbors: torch.Tensor
    shifts: torch.Tensor


def edge_vectors(
    positions: torch.Tensor, cells: torch.Tensor, frame_index: torch.Tensor, nl: NeighborList
) -> torch.Tensor:
    """Pair vectors r_ij = r_j − r_i + s·cell, (n_pairs, 3) Å; differentiable in positions and cells."""
    cell_of_pair = cells[frame_index[nl.centers]]  # (n_pairs, 3, 3)
    shift_vec = torch.bmm(nl.shifts.to(positions.dtype).unsqueeze(1), cell_of_pair).squeeze(1)
    return positions[nl.neighbors] - positions[nl.centers] + shift_vec


def complete_cell(cells: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """A full-rank cell per frame: non-periodic lattice vectors that are zero or degenerate are
    replaced by unit vectors orthogonal to the periodic ones. (n_frames, 3, 3) Å.

    Only used to compute fractional coordinates along periodic directions; the physics never sees it.
    """
    out = cells.clone()
    eye = torch.eye(3, dtype=cells.dtype, device=cells.device)
    for f in range(cells.shape[0]):  # loop over frames (a handful), not atoms
        c = out[f]
        if torch.abs(torch.linalg.det(c)) > 1e-8 * (1.0 + c.norm() ** 3):
            continue
        periodic = [k for k in range(3) if bool(pbc[f, k])]
        basis: list[torch.Tensor] = [c[k] / c[k].norm() for k in periodic]
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


def neighbor_list_brute_force(
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    frame_index: Optional[torch.Tensor] = None,
) -> NeighborList:
    """Reference search: every pair of atoms of a frame times every periodic image that can matter.

    O(N² · images) per frame; for tests and tiny systems only.
    """
    device = positions.device
    if frame_index is None:
        frame_index = torch.zeros(positions.shape[0], dtype=torch.long, device=device)
    pbc = pbc.to(torch.bool).reshape(-1, 3)
    centers, neighbors, shifts = [], [], []
    for f in range(cells.shape[0]):
        idx = torch.nonzero(frame_index == f).reshape(-1)
        if idx.numel() == 0:
            continue
        pos = positions[idx].detach()
        cell = complete_cell(cells[f : f + 1].detach(), pbc[f : f + 1])[0]
        recip = torch.linalg.inv(cell).T  # rows b_k with a_l · b_k = δ_lk
        span = (pos.max(0).values - pos.min(0).values).norm()
        n_img = [
            int(torch.ceil((cutoff + span) * recip[k].norm()).item()) if bool(pbc[f, k]) else 0 for k in range(3)
        ]
        rng = [torch.arange(-n, n + 1, device=device) for n in n_img]
        images = torch.cartesian_prod(*rng).reshape(-1, 3)  # (n_images, 3)
        img_vec = images.to(pos.dtype) @ cells[f].detach().to(pos.dtype)
        d = pos[None, :, None, :] - pos[:, None, None, :] + img_vec[None, None, :, :]  # (i, j, s, 3)
        dist = d.norm(dim=-1)
        mask = dist < cutoff
        zero_img = (images == 0).all(dim=1)
        n = pos.shape[0]
        ar = torch.arange(n, device=device)
        mask[ar, ar] &= ~zero_img[None, :].expand(n, -1)
        i, j, s = torch.nonzero(mask, as_tuple=True)
        centers.append(idx[i])
        neighbors.append(idx[j])
        shifts.append(images[s])
    if not centers:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return NeighborList(empty, empty.clone(), torch.zeros(0, 3, dtype=torch.long, device=device))
    return NeighborList(torch.cat(centers), torch.cat(neighbors), torch.cat(shifts).to(torch.long))


def neighbor_list(
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    frame_index: Optional[torch.Tensor] = None,
) -> NeighborList:
    """All pairs closer than ``cutoff`` (Å), full list, in the format of the module docstring.

    positions: (n_atoms, 3) Å; cells: (n_frames, 3, 3) Å; pbc: (n_frames, 3) bool;
    frame_index: (n_atoms,) int64, default all atoms in frame 0.
    """
    return neighbor_list_brute_force(positions, cells, pbc, cutoff, frame_index)
