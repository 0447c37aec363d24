"""The cell-list kernel: one candidate-pair search (bins, half stencil, chunked distance test) and
its two front ends, :func:`neighbor_list` (periodic, batched over frames; it hands one float64
CPU frame to vesin when installed, :mod:`mlpot.neighbors.vesin_backend`) and
:func:`local_pair_list` (the ghost cluster of a domain-decomposed MD run).

Binning is done in fractional coordinates f = r · inv(cell) of a full-rank "binning cell" per
frame (the cell itself in periodic directions, complete_cell / identity elsewhere). Along lattice
direction k the cutoff sphere spans rc·|b_k| in f_k (b_k = k-th reciprocal vector, 1/|b_k| = plane
spacing). Periodic direction: f_k is wrapped into [0, 1) (the integer wrap w is remembered), cut into
n_k = floor(1 / (rc·|b_k|)) bins, and a stencil of m_k = ceil(rc·|b_k|·n_k) bins each way is searched;
m_k > 1 only when the cell is thinner than the cutoff, and then stencil bins beyond the cell are
periodic images (virtual bin v = c + q·n_k with image q), so every (atom, image) is reached once.
Non-periodic direction: bins of width >= rc·|b_k| over the frame's bounding box, stencil 1, no images.
Every frame owns its own block of bin ids (offset = cumulative bin count), so one sort serves the
whole batch. The search runs over half of the stencil (offsets lexicographically > 0, plus the
atom's own bin with j after i in sorted order), so each unordered (i, j, image) is tested once; the
full list is completed with (j, i, −s).

*Ghost atoms* (``n_local`` < n_atoms, used by :func:`local_pair_list`): atoms ``[n_local:]`` are
neighbors only. Atoms are sorted by (bin, ghost), so each bin holds its local atoms first; a ghost
is tested only against the *local* atoms of its stencil bins (none of its own bin: those come before
it), so ghost–ghost pairs are never even candidates, and a tested pair is emitted from each local end.
"""

from __future__ import annotations

from typing import Optional

import torch

from mlpot.neighbors import NeighborList, complete_cell, vesin_backend

_MAX_BINS_PER_DIM = 4096  # bin ids stay below 2**36 per frame, so int64 keys never overflow
_CHUNK_PAIRS = 1 << 21  # candidate pairs distance-tested at once (bounds the working memory)


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


def _search(
    positions: torch.Tensor,
    cell64: torch.Tensor,
    inv: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    fi: torch.Tensor,
    n_local: int,
    periodic: bool = True,
) -> NeighborList:
    """The kernel (see module docstring): every pair closer than ``cutoff`` whose center is one of
    the atoms ``[:n_local]``, full list.

    positions (n_atoms, 3) Å in any float dtype (distances are compared in it); cell64 (B, 3, 3)
    float64 cells (shifts refer to them); inv (B, 3, 3) float64 inverses of the full-rank binning
    cells (:func:`_binning_cells`; columns = reciprocal vectors b_k); pbc
    (B, 3) bool; fi (n_atoms,) int64 sorted frame of each atom; 0 < n_local <= n_atoms.
    ``periodic=False`` promises that no direction is periodic (``pbc`` all False): the wrap and
    image bookkeeping is skipped and the shifts are zeros. No gradient.
    """
    device = positions.device
    dtype = positions.dtype
    f64 = torch.float64
    n_atoms = positions.shape[0]
    n_frames = cell64.shape[0]
    ghosts = n_local < n_atoms

    # bins are sized for a slightly larger cutoff, so that rounding in the distance test
    # (done in `dtype`) can never accept a pair that the binning missed
    rc_bin = cutoff * (1.0 + (1e-9 if dtype == f64 else 1e-4))
    rb = rc_bin * inv.norm(dim=-2)  # (B, 3): cutoff sphere extent in fractional units

    pos64 = positions.detach().to(f64)
    frac = torch.einsum("ni,nik->nk", pos64, inv[fi])
    if periodic:
        wrap = torch.where(pbc[fi], torch.floor(frac), torch.zeros_like(frac))
        frac = frac - wrap

    # bounding box per frame (used for non-periodic directions)
    idx3 = fi[:, None].expand(n_atoms, 3)
    lo = torch.zeros(n_frames, 3, dtype=f64, device=device).scatter_reduce(0, idx3, frac, "amin", include_self=False)
    hi = torch.zeros(n_frames, 3, dtype=f64, device=device).scatter_reduce(0, idx3, frac, "amax", include_self=False)
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
    if ghosts:  # within a bin: local atoms first, then ghosts
        is_ghost = torch.arange(n_atoms, device=device) >= n_local
        key = 2 * key + is_ghost.to(torch.long)
        sorted_key, order = torch.sort(key, stable=True)
        ghost_s = is_ghost.index_select(0, order)
    else:
        sorted_key, order = torch.sort(key)

    fs = fi[order]
    bs = bins[order]
    if periodic:
        wrap_s = wrap[order]
        wpos_s = (pos64[order] - torch.einsum("nk,nkl->nl", wrap_s, cell64[fs])).to(dtype)
        wrap_s = wrap_s.to(torch.long)
    else:
        wpos_s = positions.detach().index_select(0, order)

    # queries: (sorted atom, stencil offset) for the half stencil of the atom's frame
    span = 2 * m + 1
    n_stencil = span.prod(dim=1)
    half = (n_stencil + 1) // 2  # offsets lexicographically >= 0 (the own bin first)
    center = (n_stencil - 1) // 2
    if n_frames == 1:  # one stencil for all atoms: broadcast it instead of gathering per query
        h = int(half[0])
        lin = center[0] + torch.arange(h, device=device)
        d2 = lin % span[0, 2] - m[0, 2]
        lin = torch.div(lin, span[0, 2], rounding_mode="floor")
        d1 = lin % span[0, 1] - m[0, 1]
        d0 = torch.div(lin, span[0, 1], rounding_mode="floor") - m[0, 0]
        c = (bs[:, None, :] + torch.stack([d0, d1, d2], dim=1)[None]).reshape(-1, 3)
        qa = torch.arange(n_atoms, device=device).repeat_interleave(h)
        is_self_bin = (torch.arange(h, device=device) == 0).repeat(n_atoms)
        fq = torch.zeros((), dtype=torch.long, device=device).expand(qa.shape[0])
        nbq, pbc_q, base_q = nb[:1], pbc[:1], base[0]
    else:
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
        nbq, pbc_q, base_q = nb[fq], pbc[fq], base[fq]
        del first, per_atom, sq, mq
    del lin, d0, d1, d2
    if periodic:
        img = torch.where(pbc_q, torch.div(c, nbq, rounding_mode="floor"), torch.zeros_like(c))
        c = c - img * nbq
    valid = ((c >= 0) & (c < nbq)).all(dim=1)
    tkey = base_q + (c[:, 0] * nbq[:, 1] + c[:, 1]) * nbq[:, 2] + c[:, 2]
    if ghosts:  # sorted keys 2·bin (local) and 2·bin + 1 (ghost)
        q_ghost = ghost_s.index_select(0, qa)
        start = torch.searchsorted(sorted_key, 2 * tkey)
        # end of the bin (local query) or of its local atoms (a ghost sees only those)
        end = torch.searchsorted(sorted_key, 2 * tkey + 2 - q_ghost.to(torch.long))
        valid = valid & ~(q_ghost & is_self_bin)  # ... and nothing of its own bin
        del q_ghost
    else:
        start = torch.searchsorted(sorted_key, tkey)
        end = torch.searchsorted(sorted_key, tkey, right=True)
    start = torch.where(is_self_bin, torch.maximum(start, qa + 1), start)  # own bin: j after i only
    count = torch.where(valid, torch.clamp(end - start, min=0), torch.zeros_like(start))

    del is_self_bin, c, nbq, valid, tkey, end
    keep = torch.nonzero(count).reshape(-1)
    if keep.numel() == 0:
        return _empty_list(device)
    qa, start, count = qa[keep], start[keep], count[keep]
    if periodic:
        img, fq = img[keep], fq[keep]
        img_vec = torch.einsum("qk,qkl->ql", img.to(f64), cell64[fq]).to(dtype)
        ref = wpos_s[qa] - img_vec  # r_ij = wpos[j] - ref
    else:
        ref = wpos_s.index_select(0, qa)
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
    for k in range(len(qbounds_l) - 1):  # loop over chunks of ~2M candidates, not over pairs
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
        if periodic:
            out_s.append(img.index_select(0, qidx) + wrap_s.index_select(0, is_) - wrap_s.index_select(0, js))
    if not out_i:
        return _empty_list(device)
    if not periodic:
        i, j = torch.cat(out_i), torch.cat(out_j)
        if ghosts:  # each tested pair from each local end
            il = torch.nonzero(i < n_local).reshape(-1)
            jl = torch.nonzero(j < n_local).reshape(-1)
            i, j = torch.cat([i.index_select(0, il), j.index_select(0, jl)]), torch.cat([j.index_select(0, il), i.index_select(0, jl)])
        else:
            i, j = torch.cat([i, j]), torch.cat([j, i])
        return NeighborList(i, j, torch.zeros(i.shape[0], 3, dtype=torch.long, device=device))
    if not ghosts:  # every tested pair as (i, j, s) and (j, i, −s)
        return NeighborList(
            torch.cat(out_i + out_j), torch.cat(out_j + out_i), torch.cat(out_s + [torch.neg(x) for x in out_s])
        )
    i, j, s = torch.cat(out_i), torch.cat(out_j), torch.cat(out_s)
    il = torch.nonzero(i < n_local).reshape(-1)  # each tested pair from each local end
    jl = torch.nonzero(j < n_local).reshape(-1)
    return NeighborList(
        torch.cat([i.index_select(0, il), j.index_select(0, jl)]),
        torch.cat([j.index_select(0, il), i.index_select(0, jl)]),
        torch.cat([s.index_select(0, il), torch.neg(s.index_select(0, jl))]),
    )


BACKENDS = ("auto", "cell_list", "vesin")


def neighbor_list(
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    frame_index: Optional[torch.Tensor] = None,
) -> NeighborList:
    """All pairs closer than ``cutoff`` (Å), full list, in the format of :mod:`mlpot.neighbors`.

    positions: (n_atoms, 3) Å; cells: (n_frames, 3, 3) Å; pbc: (n_frames, 3) or (3,) bool;
    frame_index: (n_atoms,) int64, default all atoms in frame 0.

    O(N) work and memory, no gradient. One frame in float64 on the CPU goes to vesin when it is
    installed (:mod:`mlpot.neighbors.vesin_backend`, faster there); everything else (batches of
    frames, float32, GPU) to the torch cell-list kernel of this module, batched over frames, on the
    device of ``positions``, binning in float64 and comparing distances in the dtype of
    ``positions``. Both give the same pair set. Raises :class:`mlpot.errors.DataError` for a
    singular periodic cell.
    """
    return neighbor_list_with("auto", positions, cells, pbc, cutoff, frame_index)


def neighbor_list_with(
    backend: str,
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    frame_index: Optional[torch.Tensor] = None,
) -> NeighborList:
    """:func:`neighbor_list` with an explicit ``backend``: "auto" (its dispatch rule),
    "cell_list" (always the torch kernel) or "vesin" (one frame only; ImportError without vesin)."""
    if backend not in BACKENDS:
        raise ValueError(f"neighbor_list backend: expected one of {BACKENDS}, got {backend!r}")
    device = positions.device
    n_atoms = positions.shape[0]
    cell64 = cells.detach().to(device=device, dtype=torch.float64).reshape(-1, 3, 3)
    n_frames = cell64.shape[0]
    pbc = torch.as_tensor(pbc, device=device).to(torch.bool).reshape(-1, 3).expand(n_frames, 3)
    cutoff = float(cutoff)
    if n_atoms == 0 or n_frames == 0 or cutoff <= 0.0:
        return _empty_list(device)
    with torch.no_grad():
        inv, info = torch.linalg.inv_ex(_binning_cells(cell64, pbc))
        bad_t = (info != 0) | ~torch.isfinite(inv.norm(dim=-2)).all(dim=1)
        if bool(bad_t.any()):
            bad = torch.nonzero(bad_t).reshape(-1).tolist()
            from mlpot.errors import DataError

            raise DataError(f"neighbor_list: cells of frames {bad[:10]} are singular in their periodic directions")
        if backend == "vesin" or (backend == "auto" and vesin_backend.use_vesin(positions, n_frames)):
            if n_frames != 1:
                raise ValueError(f"neighbor_list backend 'vesin': one frame only, got {n_frames}")
            nl = vesin_backend.vesin_neighbor_list(positions, cell64[0], pbc[0], cutoff)
            return NeighborList(nl.centers.to(device), nl.neighbors.to(device), nl.shifts.to(device))
        if frame_index is None:
            fi = torch.zeros(n_atoms, dtype=torch.long, device=device)
        else:
            fi = frame_index.to(device=device, dtype=torch.long)
        return _search(positions, cell64, inv, pbc, cutoff, fi, n_atoms)


def local_pair_list(positions: torch.Tensor, n_local: int, cutoff: float) -> NeighborList:
    """Full pair list of the non-periodic cluster ``positions`` (n_all, 3) Å restricted to the
    centers ``[:n_local]`` (neighbors may be any atom): every (i, j) with i < n_local, j ≠ i and
    |r_j − r_i| < ``cutoff`` (Å), zero shifts. Pairs of two atoms ≥ n_local (ghost–ghost) are never
    generated, not even as candidates.

    The cell-list kernel of :func:`neighbor_list` on one non-periodic frame (Cartesian bins ≥ cutoff
    wide over the bounding box, half stencil) with the atoms ``[n_local:]`` as ghosts (see module
    docstring). Whole-tensor ops, O(n_all) work and memory, no gradient.
    """
    dev = positions.device
    n_all = positions.shape[0]
    if n_local == 0 or n_all < 2 or cutoff <= 0.0:
        return _empty_list(dev)
    with torch.no_grad():
        zero = torch.zeros(1, 3, 3, dtype=torch.float64, device=dev)
        eye = torch.eye(3, dtype=torch.float64, device=dev).unsqueeze(0)
        pbc = torch.zeros(1, 3, dtype=torch.bool, device=dev)
        fi = torch.zeros(n_all, dtype=torch.long, device=dev)
        return _search(positions, zero, eye, pbc, float(cutoff), fi, int(n_local), periodic=False)


__all__ = ["neighbor_list", "neighbor_list_with", "local_pair_list", "BACKENDS"]
