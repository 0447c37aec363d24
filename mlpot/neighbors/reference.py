"""Brute-force neighbor search: the reference for the tests (and fine for tiny systems).

Every pair of atoms of a frame times every periodic image that can matter, O(N² · images) per
frame. Same output format as :func:`mlpot.neighbors.neighbor_list` (see :mod:`mlpot.neighbors`).
"""

from __future__ import annotations

from typing import Optional

import torch

from mlpot.neighbors import NeighborList, complete_cell


def neighbor_list_brute_force(
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    frame_index: Optional[torch.Tensor] = None,
) -> NeighborList:
    """Reference search: every pair of atoms of a frame times every periodic image that can matter.

    positions (n_atoms, 3) Å; cells (n_frames, 3, 3) Å; pbc (n_frames, 3) or (3,) bool; cutoff Å
    (pairs with |r_ij| < cutoff); frame_index (n_atoms,) int64, default all in frame 0.
    O(N² · images) per frame; for tests and tiny systems only.
    """
    device = positions.device
    if frame_index is None:
        frame_index = torch.zeros(positions.shape[0], dtype=torch.long, device=device)
    pbc = pbc.to(torch.bool).reshape(-1, 3)
    centers, neighbors, shifts = [], [], []
    for f in range(cells.shape[0]):  # loop over frames (tests: a handful)
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
