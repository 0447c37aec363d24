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


# --------------------------------------------------------------------------------------------
# Cell-list search.
#
# Binning is done in fractional coordinates f = r · inv(cell) of a full-rank "binning cell" per
# frame (the cell itself in periodic directions, complete_cell / identity elsewhere). Along lattice
# direction k the cutoff sphere spans rc·|b_k| in f_k (b_k = k-th reciprocal vector, 1/|b_k| = plane
# spacing). Periodic direction: f_k is wrapped into [0, 1) (the integer wrap w is remembered), cut into
# n_k = floor(1 / (rc·|b_k|)) bins, and a stencil of m_k = ceil(rc·|b_k|·n_k) bins each way is searched;
# m_k > 1 only when the cell is thinner than the cutoff, and then stencil bins beyond the cell are
# periodic images (virtual bin v = c + q·n_k with image q), so every (atom, image) is reached once.
# Non-periodic direction: bins of width >= rc·|b_k| over the frame's bounding box, stencil 1, no images.
# Every frame owns its own block of bin ids (offset = cumulative bin count), so one sort serves the
# whole batch. The search runs over half of the stencil (offsets lexicographically > 0, plus the
# atom's own bin with j after i in sorted order) and the list is completed with (j, i, −s).
# --------------------------------------------------------------------------------------------

_MAX_BINS_PER_DIM = 4096  # bin ids stay below 2**36 per frame, so int64 keys never overflow
_CHUNK_PAIRS = 1 << 21  # candidate pairs examined at once (bounds the working memory)


def _empty_list(device: torch.device) -> NeighborList:
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return NeighborList(empty, empty.clone(), torch.zeros(0, 3, dtype=torch.long, device=device))


def _binning_cells(cells: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Full-rank cells for binning, (n_frames, 3, 3): the identity for frames with no periodic
    direction, :func:`complete_cell` for frames with mixed periodicity, the cell itself otherwise."""
    eye = torch.eye(3, dtype=cells.dtype, device=cells.device)
    out = torch.where(pbc.any(dim=1)[:, None, None], cells, eye)
    mixed = pbc.any(dim=1) & ~pbc.all(dim=1)
    if bool(mixed.any()):
        idx = torch.nonzero(mixed).reshape(-1)
        out = out.index_copy(0, idx, complete_cell(cells[idx], pbc[idx]))
    return out


def neighbor_list(
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    frame_index: Optional[torch.Tensor] = None,
) -> NeighborList:
    """All pairs closer than ``cutoff`` (Å), full list, in the format of the module docstring.

    positions: (n_atoms, 3) Å; cells: (n_frames, 3, 3) Å; pbc: (n_frames, 3) or (3,) bool;
    frame_index: (n_atoms,) int64, default all atoms in frame 0.

    Cell-list search batched over frames, O(N) work and memory (plus an O(N log N) sort), on the
    device of ``positions``, no gradient. Binning is done in float64; distances are compared in the
    dtype of ``positions``. Raises :class:`mlpot.errors.DataError` for a singular periodic cell.
    """
    device = positions.device
    dtype = positions.dtype
    f64 = torch.float64
    n_atoms = positions.shape[0]
    cell64 = cells.detach().to(device=device, dtype=f64).reshape(-1, 3, 3)
    n_frames = cell64.shape[0]
    pbc = torch.as_tensor(pbc, device=device).to(torch.bool).reshape(-1, 3).expand(n_frames, 3)
    if frame_index is None:
        frame_index = torch.zeros(n_atoms, dtype=torch.long, device=device)
    fi = frame_index.to(device=device, dtype=torch.long)
    cutoff = float(cutoff)
    if n_atoms == 0 or n_frames == 0 or cutoff <= 0.0:
        return _empty_list(device)

    with torch.no_grad():
        # bins are sized for a slightly larger cutoff, so that rounding in the distance test
        # (done in `dtype`) can never accept a pair that the binning missed
        rc_bin = cutoff * (1.0 + (1e-9 if dtype == f64 else 1e-4))
        bcell = _binning_cells(cell64, pbc)
        inv, info = torch.linalg.inv_ex(bcell)  # columns of inv are the reciprocal vectors b_k
        rb = rc_bin * inv.norm(dim=-2)  # (B, 3): cutoff sphere extent in fractional units
        if bool(((info != 0) | ~torch.isfinite(rb).all(dim=1)).any()):
            bad = torch.nonzero((info != 0) | ~torch.isfinite(rb).all(dim=1)).reshape(-1).tolist()
            from mlpot.errors import DataError

            raise DataError(f"neighbor_list: cells of frames {bad[:10]} are singular in their periodic directions")

        pos64 = positions.detach().to(f64)
        frac = torch.einsum("ni,nik->nk", pos64, inv[fi])
        pbc_a = pbc[fi]
        wrap = torch.where(pbc_a, torch.floor(frac), torch.zeros_like(frac))
        frac = frac - wrap

        # bounding box per frame (used for non-periodic directions)
        idx3 = fi[:, None].expand(n_atoms, 3)
        lo = torch.zeros(n_frames, 3, dtype=f64, device=device).scatter_reduce(
            0, idx3, frac, "amin", include_self=False
        )
        hi = torch.zeros(n_frames, 3, dtype=f64, device=device).scatter_reduce(
            0, idx3, frac, "amax", include_self=False
        )
        extent = hi - lo
        n_per = torch.clamp(torch.floor(1.0 / rb), 1, _MAX_BINS_PER_DIM)
        width_np = torch.maximum(rb, extent / (_MAX_BINS_PER_DIM - 1))
        n_np = torch.floor(extent / width_np) + 1
        nb = torch.where(pbc, n_per, n_np).to(torch.long)  # (B, 3) bins per direction
        width = torch.where(pbc, 1.0 / nb.to(f64), width_np)
        m = torch.where(pbc, torch.ceil(rb * nb.to(f64)), torch.ones_like(rb)).to(torch.long)  # stencil
        origin = torch.where(pbc, torch.zeros_like(lo), lo)

        bins = torch.floor((frac - origin[fi]) / width[fi]).to(torch.long)
        bins = torch.minimum(torch.clamp(bins, min=0), nb[fi] - 1)
        n_bins = nb.prod(dim=1)
        base = torch.cumsum(n_bins, 0) - n_bins  # each frame owns a block of bin ids
        key = base[fi] + (bins[:, 0] * nb[fi, 1] + bins[:, 1]) * nb[fi, 2] + bins[:, 2]
        sorted_key, order = torch.sort(key)

        fs = fi[order]
        bs = bins[order]
        wrap_s = wrap[order]
        wpos_s = (pos64[order] - torch.einsum("nk,nkl->nl", wrap_s, cell64[fs])).to(dtype)
        wrap_s = wrap_s.to(torch.long)

        # queries: (sorted atom, stencil offset) for the half stencil of the atom's frame
        span = 2 * m + 1
        n_stencil = span.prod(dim=1)
        half = (n_stencil + 1) // 2  # offsets lexicographically >= 0
        center = (n_stencil - 1) // 2
        per_atom = half[fs]
        qa = torch.repeat_interleave(torch.arange(n_atoms, device=device), per_atom)
        n_q = qa.shape[0]
        first = torch.cumsum(per_atom, 0) - per_atom
        fq = fs[qa]
        lin = center[fq] + torch.arange(n_q, device=device) - first[qa]
        is_self_bin = lin == center[fq]
        sq = span[fq]
        mq = m[fq]
        d2 = lin % sq[:, 2] - mq[:, 2]
        lin = torch.div(lin, sq[:, 2], rounding_mode="floor")
        d1 = lin % sq[:, 1] - mq[:, 1]
        d0 = torch.div(lin, sq[:, 1], rounding_mode="floor") - mq[:, 0]
        c = bs[qa] + torch.stack([d0, d1, d2], dim=1)
        nbq = nb[fq]
        img = torch.where(pbc[fq], torch.div(c, nbq, rounding_mode="floor"), torch.zeros_like(c))
        c = c - img * nbq
        valid = ((c >= 0) & (c < nbq)).all(dim=1)
        tkey = base[fq] + (c[:, 0] * nbq[:, 1] + c[:, 1]) * nbq[:, 2] + c[:, 2]
        start = torch.searchsorted(sorted_key, tkey)
        end = torch.searchsorted(sorted_key, tkey, right=True)
        start = torch.where(is_self_bin, torch.maximum(start, qa + 1), start)  # own bin: j after i only
        count = torch.where(valid, torch.clamp(end - start, min=0), torch.zeros_like(start))

        del lin, is_self_bin, sq, mq, d0, d1, d2, c, nbq, valid, tkey, end, first, per_atom
        keep = torch.nonzero(count).reshape(-1)
        if keep.numel() == 0:
            return _empty_list(device)
        qa, start, count, img, fq = qa[keep], start[keep], count[keep], img[keep], fq[keep]
        img_vec = torch.einsum("qk,qkl->ql", img.to(f64), cell64[fq]).to(dtype)
        ref = wpos_s[qa] - img_vec  # r_ij = wpos[j] - ref
        cum = torch.cumsum(count, 0)
        offset = start - (cum - count)  # sorted j = global candidate number + offset[query]

        # chunks of whole queries with at most ~_CHUNK_PAIRS candidates each
        total = int(cum[-1])
        n_chunks = (total + _CHUNK_PAIRS - 1) // _CHUNK_PAIRS
        targets = torch.arange(1, n_chunks, device=device, dtype=torch.long) * _CHUNK_PAIRS
        qb = torch.searchsorted(cum, targets, right=True)
        qbounds = torch.cat([qb.new_zeros(1), qb, qb.new_full((1,), keep.numel())])
        gbounds = torch.cat([cum.new_zeros(1), cum])[qbounds]
        qbounds_l, gbounds_l = qbounds.tolist(), gbounds.tolist()

        # the hot loop gathers with int32 indices (half the memory traffic of int64)
        idx_t = torch.int32 if max(total, n_atoms) < 2**31 - 1 else torch.long
        qa32, offset32 = qa.to(idx_t), offset.to(idx_t)
        rc2 = cutoff * cutoff
        out_i, out_j, out_s = [], [], []
        for k in range(len(qbounds_l) - 1):
            q0, q1, g0, g1 = qbounds_l[k], qbounds_l[k + 1], gbounds_l[k], gbounds_l[k + 1]
            if g1 <= g0:
                continue
            qidx = torch.repeat_interleave(
                torch.arange(q0, q1, device=device, dtype=idx_t), count[q0:q1], output_size=g1 - g0
            )
            js = torch.arange(g0, g1, device=device, dtype=idx_t) + offset32.index_select(0, qidx)
            v = wpos_s.index_select(0, js) - ref.index_select(0, qidx)
            dist2 = torch.bmm(v.unsqueeze(1), v.unsqueeze(2)).reshape(-1)
            sel = torch.nonzero(dist2 < rc2).reshape(-1)
            qidx, js = qidx.index_select(0, sel), js.index_select(0, sel)
            is_ = qa32.index_select(0, qidx)
            out_i.append(order.index_select(0, is_))
            out_j.append(order.index_select(0, js))
            out_s.append(img.index_select(0, qidx) + wrap_s.index_select(0, is_) - wrap_s.index_select(0, js))
        if not out_i:
            return _empty_list(device)
        return NeighborList(
            torch.cat(out_i + out_j), torch.cat(out_j + out_i), torch.cat(out_s + [torch.neg(x) for x in out_s])
        )
