"""The CPU kernels of the tabulated contraction, compiled by numba (LLVM ships inside its wheel, so no
C compiler is needed on the user's machine).

Two entry points, each one forward and one backward kernel per call (the math is in
:mod:`mlpot.descriptors.tabulate`'s docstring):

* :func:`numba_env_contract` (what se_e2_a / se_e2_r run): from the pair vectors rij, in any order
  (grouped by center inside, by a counting sort); the switch, the environment row and its
  normalisation are computed per edge in the kernel and the backward returns d/d rij;
* :func:`numba_contract` (the ``numba`` back-end of ``tabulated_contract``): from given s̃ and R̃,
  edges sorted by center.

``ptr`` (n_centers + 1,) is the CSR row pointer. Per center, per edge, in one pass over the ng
channels of its 6 coefficient rows:

* forward: the table lookup (interval, local coordinate t, distance δ beyond the table), G(s̃) and
  ``A_i += R̃_j ⊗ G`` (k × ng, k = 4 for se_e2_a, 1 for se_e2_r);
* backward: G and G′ again from the table (re-reading 6 rows from cache takes about as long as
  storing 2·ng values per edge and reading them back, and needs no memory per edge:
  benchmarks/RESULTS.md "Compression speed, session 9"), ``dR̃_jm = Σ_c dA_imc G_c`` and
  ``dx_j = Σ_c (Σ_m R̃_jm dA_imc) G′_c``.

No (edges × ng) tensor is ever formed. Each center is summed in one fixed order, so results do not
depend on the thread count. Threads: the centers are split into contiguous ranges of about equal edge
counts, one per thread of a small pool (the kernels release the GIL), as many as
``torch.get_num_threads()``; numba's own threading layer is not used (its workqueue layer aborts on
concurrent calls and its OpenMP layer is not fork-safe).
"""

from __future__ import annotations

import os
import threading
from typing import Optional

import numpy as np
import torch

try:  # numba is a dependency; without it the table op falls back to torch (tabulate.active_backend)
    import numba
except Exception:  # noqa: BLE001 - ImportError, or numba refusing this numpy, or llvmlite's library failing to load
    numba = None

#: LLVM flags: reassociation lets the channel reductions vectorise; no "arcp", so the interval index
#: floor((x − lower)/stride) is the same division as in :func:`mlpot.descriptors.tabulate.locate`
_FASTMATH = {"reassoc", "contract", "nsz"}

_STATE: dict = {"pool": None, "pid": None, "size": 0, "lock": threading.Lock()}


def available() -> bool:
    """Whether numba imports here (the kernels compile on first use, then come from numba's cache)."""
    return numba is not None


if numba is not None:

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True, inline="always")
    def _locate_one(x, p):  # pragma: no cover - compiled
        """(interval, t, δ) of one s̃ value x in one table, p = (lower, upper, max, stride0, stride1,
        n_first, nspline) float64 (as :func:`mlpot.descriptors.tabulate._locate`)."""
        lo, up, mx, s0, s1, nfirst, nspl = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
        if x < lo:
            idx = 0.0
        elif x < up:
            idx = np.floor((x - lo) / s0)
        elif x < mx:
            idx = nfirst + np.floor((x - up) / s1)
        else:
            idx = nspl - 1.0
        idx = min(max(idx, 0.0), nspl - 1.0)
        start = lo + idx * s0 if idx < nfirst else up + (idx - nfirst) * s1
        xc = min(max(x, lo), mx)
        return int(idx), xc - start, x - xc

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True, inline="always")
    def _weights(x, tid, params, offset, w, v):  # pragma: no cover - compiled
        """First coefficient row of the edge; fills w (6,) with t^k + δ·k·t^(k−1) and v (6,) with k·t^(k−1)."""
        idx, t, d = _locate_one(x, params[tid])
        t2 = t * t
        t3 = t2 * t
        t4 = t3 * t
        w[0] = 1.0
        w[1] = t + d
        w[2] = t2 + 2.0 * d * t
        w[3] = t3 + 3.0 * d * t2
        w[4] = t4 + 4.0 * d * t3
        w[5] = t4 * t + 5.0 * d * t4
        v[0] = 0.0
        v[1] = 1.0
        v[2] = 2.0 * t
        v[3] = 3.0 * t2
        v[4] = 4.0 * t3
        v[5] = 5.0 * t4
        return offset[tid] + 6 * idx

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _forward(a0, a1, x, tid, r, ptr, params, offset, rows, out):  # pragma: no cover - compiled
        """out[i] = Σ_{j of center i} r[j] ⊗ G(x[j]) for centers a0 ≤ i < a1; out (n, k, ng)."""
        ng = rows.shape[1]
        k = r.shape[1]
        w = np.empty(6, dtype=rows.dtype)
        v = np.empty(6, dtype=rows.dtype)
        g = np.empty(ng, dtype=rows.dtype)
        for i in range(a0, a1):
            for m in range(k):
                for c in range(ng):
                    out[i, m, c] = 0.0
            for j in range(ptr[i], ptr[i + 1]):
                row = _weights(x[j], tid[j], params, offset, w, v)
                w1, w2, w3, w4, w5 = w[1], w[2], w[3], w[4], w[5]
                if k == 4:  # se_e2_a: one fused loop (1.2× faster than through the buffer g)
                    _acc4(out, i, rows, row, w1, w2, w3, w4, w5, r[j, 0], r[j, 1], r[j, 2], r[j, 3])
                    continue
                for c in range(ng):
                    g[c] = (rows[row, c] + w1 * rows[row + 1, c] + w2 * rows[row + 2, c] + w3 * rows[row + 3, c]
                            + w4 * rows[row + 4, c] + w5 * rows[row + 5, c])
                for m in range(k):
                    rm = r[j, m]
                    for c in range(ng):
                        out[i, m, c] += rm * g[c]

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _backward(a0, a1, d_out, x, tid, r, ptr, params, offset, rows, dr, dx):  # pragma: no cover - compiled
        """dr[j, m] = Σ_c d_out[i, m, c] G_c(x_j), dx[j] = Σ_c (Σ_m r[j, m] d_out[i, m, c]) G′_c(x_j)
        for the edges of centers a0 ≤ i < a1."""
        ng = rows.shape[1]
        k = r.shape[1]
        w = np.empty(6, dtype=rows.dtype)
        v = np.empty(6, dtype=rows.dtype)
        g = np.empty(ng, dtype=rows.dtype)
        gp = np.empty(ng, dtype=rows.dtype)
        q = np.empty(ng, dtype=rows.dtype)
        for i in range(a0, a1):
            for j in range(ptr[i], ptr[i + 1]):
                row = _weights(x[j], tid[j], params, offset, w, v)
                w1, w2, w3, w4, w5 = w[1], w[2], w[3], w[4], w[5]
                v2, v3, v4, v5 = v[2], v[3], v[4], v[5]
                if k == 4:  # se_e2_a: one fused loop (1.35× faster than through the buffers)
                    d0, d1, d2, d3, sx = _grad4(d_out, i, rows, row, w1, w2, w3, w4, w5, v2, v3, v4, v5,
                                                r[j, 0], r[j, 1], r[j, 2], r[j, 3], v[0])
                    dr[j, 0], dr[j, 1], dr[j, 2], dr[j, 3] = d0, d1, d2, d3
                    dx[j] = sx
                    continue
                for c in range(ng):
                    c1, c2, c3, c4, c5 = rows[row + 1, c], rows[row + 2, c], rows[row + 3, c], rows[row + 4, c], rows[row + 5, c]
                    g[c] = rows[row, c] + w1 * c1 + w2 * c2 + w3 * c3 + w4 * c4 + w5 * c5
                    gp[c] = c1 + v2 * c2 + v3 * c3 + v4 * c4 + v5 * c5
                    q[c] = 0.0
                for m in range(k):
                    rm = r[j, m]
                    s = v[0]
                    for c in range(ng):
                        e = d_out[i, m, c]
                        s += e * g[c]
                        q[c] += rm * e
                    dr[j, m] = s
                s = v[0]
                for c in range(ng):
                    s += q[c] * gp[c]
                dx[j] = s


    @numba.njit(nogil=True, cache=True)
    def _csr(center, n_centers):  # pragma: no cover - compiled
        """(ptr (n_centers + 1,), order (E,)) int64: the edges of center i are order[ptr[i]:ptr[i + 1]], in
        their input order (a stable counting sort, O(E): no argsort and no gathered copy of rij)."""
        ptr = np.zeros(n_centers + 1, dtype=np.int64)
        for j in range(center.shape[0]):
            ptr[center[j] + 1] += 1
        for i in range(n_centers):
            ptr[i + 1] += ptr[i]
        fill = ptr[:-1].copy()
        order = np.empty(center.shape[0], dtype=np.int64)
        for j in range(center.shape[0]):
            c = center[j]
            order[fill[c]] = j
            fill[c] += 1
        return ptr, order

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True, inline="always")
    def _edge_env(rij, j, c, avg, istd, rcut_smth, inv_width):  # pragma: no cover - compiled
        """Of edge j with center type c: s = sw(r)/r (1/Å), ds/dr (1/Å²), 1/r, the unit vector and
        s̃ = (s − avg[c, 0])·istd[c, 0]. DeePMD's quintic switch (:func:`mlpot.descriptors.env.smooth_switch`),
        ``inv_width`` = 1/(rcut − rcut_smth) Å⁻¹; reciprocals instead of divisions: a scalar division
        costs as much as a third of the edge's 100-channel loop."""
        x0, y0, z0 = rij[j, 0], rij[j, 1], rij[j, 2]
        r = np.sqrt(x0 * x0 + y0 * y0 + z0 * z0)
        inv_r = 1.0 / r
        u = (r - rcut_smth) * inv_width
        if u <= 0.0:
            sw, dsw = 1.0, 0.0
        elif u >= 1.0:
            sw, dsw = 0.0, 0.0
        else:
            u2 = u * u
            sw = u2 * u * (-6.0 * u2 + 15.0 * u - 10.0) + 1.0
            dsw = u2 * (-30.0 * u2 + 60.0 * u - 30.0) * inv_width
        s = sw * inv_r
        ds = (dsw - s) * inv_r
        return s, ds, inv_r, x0 * inv_r, y0 * inv_r, z0 * inv_r, (s - avg[c, 0]) * istd[c, 0]

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _acc4(out, i, rows, row, w1, w2, w3, w4, w5, r0, r1, r2, r3):  # pragma: no cover - compiled
        """out[i, m] += r_m · G over the ng channels, G from the 6 coefficient rows at ``row``."""
        for ch in range(rows.shape[1]):
            gc = (rows[row, ch] + w1 * rows[row + 1, ch] + w2 * rows[row + 2, ch] + w3 * rows[row + 3, ch]
                  + w4 * rows[row + 4, ch] + w5 * rows[row + 5, ch])
            out[i, 0, ch] += r0 * gc
            out[i, 1, ch] += r1 * gc
            out[i, 2, ch] += r2 * gc
            out[i, 3, ch] += r3 * gc

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _grad4(d_out, i, rows, row, w1, w2, w3, w4, w5, v2, v3, v4, v5, r0, r1, r2, r3, zero):  # pragma: no cover - compiled
        """(Σ_c d_out[i, m, c] G_c for m = 0..3, Σ_c (Σ_m r_m d_out[i, m, c]) G′_c) over the ng channels;
        ``zero`` of the table dtype, so that a float32 model sums in float32 (vectorised, no conversions)."""
        d0 = d1 = d2 = d3 = sx = zero
        for ch in range(rows.shape[1]):
            c1, c2, c3, c4, c5 = rows[row + 1, ch], rows[row + 2, ch], rows[row + 3, ch], rows[row + 4, ch], rows[row + 5, ch]
            gc = rows[row, ch] + w1 * c1 + w2 * c2 + w3 * c3 + w4 * c4 + w5 * c5
            gpc = c1 + v2 * c2 + v3 * c3 + v4 * c4 + v5 * c5
            e0, e1, e2, e3 = d_out[i, 0, ch], d_out[i, 1, ch], d_out[i, 2, ch], d_out[i, 3, ch]
            d0 += e0 * gc
            d1 += e1 * gc
            d2 += e2 * gc
            d3 += e3 * gc
            sx += (r0 * e0 + r1 * e1 + r2 * e2 + r3 * e3) * gpc
        return d0, d1, d2, d3, sx

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _forward_env4(a0, a1, rij, ctype, tid, ptr, order, avg, istd, rcut_smth, inv_width, params, offset, rows, out):  # pragma: no cover
        """se_e2_a: as :func:`_forward` from the pair vectors rij (E, 3) Å, the environment row of each
        edge, ``R̃ = ((s, s·x/r, s·y/r, s·z/r) − avg[c]) / std[c]`` (avg, std (ntypes, 4)), computed
        here (``istd`` = 1/std); out (n, 4, ng)."""
        ng = rows.shape[1]
        w = np.empty(6, dtype=rows.dtype)
        v = np.empty(6, dtype=rows.dtype)
        rr = np.empty(4, dtype=rows.dtype)
        for i in range(a0, a1):
            c = ctype[i]
            for m in range(4):
                for ch in range(ng):
                    out[i, m, ch] = 0.0
            for jj in range(ptr[i], ptr[i + 1]):
                j = order[jj]
                s, ds, inv_r, ux, uy, uz, r0 = _edge_env(rij, j, c, avg, istd, rcut_smth, inv_width)
                row = _weights(r0, tid[j], params, offset, w, v)
                rr[0] = r0  # the row in the table dtype (the scalar chain runs in float64)
                rr[1] = (s * ux - avg[c, 1]) * istd[c, 1]
                rr[2] = (s * uy - avg[c, 2]) * istd[c, 2]
                rr[3] = (s * uz - avg[c, 3]) * istd[c, 3]
                _acc4(out, i, rows, row, w[1], w[2], w[3], w[4], w[5], rr[0], rr[1], rr[2], rr[3])

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _forward_env1(a0, a1, rij, ctype, tid, ptr, order, avg, istd, rcut_smth, inv_width, params, offset, rows, out):  # pragma: no cover
        """se_e2_r: out[i, 0] = Σ_j G(s̃_j) (out (n, 1, ng)), s̃ = (s − avg[c]) / std[c] (avg, istd = 1/std (ntypes, 1))."""
        ng = rows.shape[1]
        w = np.empty(6, dtype=rows.dtype)
        v = np.empty(6, dtype=rows.dtype)
        for i in range(a0, a1):
            c = ctype[i]
            for ch in range(ng):
                out[i, 0, ch] = 0.0
            for jj in range(ptr[i], ptr[i + 1]):
                j = order[jj]
                s, ds, inv_r, ux, uy, uz, r0 = _edge_env(rij, j, c, avg, istd, rcut_smth, inv_width)
                row = _weights(r0, tid[j], params, offset, w, v)
                w1, w2, w3, w4, w5 = w[1], w[2], w[3], w[4], w[5]
                for ch in range(ng):
                    out[i, 0, ch] += (rows[row, ch] + w1 * rows[row + 1, ch] + w2 * rows[row + 2, ch] + w3 * rows[row + 3, ch]
                                      + w4 * rows[row + 4, ch] + w5 * rows[row + 5, ch])

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _backward_env4(a0, a1, d_out, rij, ctype, tid, ptr, order, avg, istd, rcut_smth, inv_width, params, offset, rows, drij):  # pragma: no cover
        """drij[j] = ∂(Σ d_out·A)/∂rij_j (E, 3) for the edges of centers a0 ≤ i < a1 (:func:`_forward_env4`)."""
        ng = rows.shape[1]
        w = np.empty(6, dtype=rows.dtype)
        v = np.empty(6, dtype=rows.dtype)
        rr = np.empty(4, dtype=rows.dtype)
        for i in range(a0, a1):
            c = ctype[i]
            for jj in range(ptr[i], ptr[i + 1]):
                j = order[jj]
                s, ds, inv_r, ux, uy, uz, r0 = _edge_env(rij, j, c, avg, istd, rcut_smth, inv_width)
                row = _weights(r0, tid[j], params, offset, w, v)
                w1, w2, w3, w4, w5 = w[1], w[2], w[3], w[4], w[5]
                v2, v3, v4, v5 = v[2], v[3], v[4], v[5]
                rr[0] = r0
                rr[1] = (s * ux - avg[c, 1]) * istd[c, 1]
                rr[2] = (s * uy - avg[c, 2]) * istd[c, 2]
                rr[3] = (s * uz - avg[c, 3]) * istd[c, 3]
                d0, d1, d2, d3, sx = _grad4(d_out, i, rows, row, w1, w2, w3, w4, w5, v2, v3, v4, v5, rr[0], rr[1], rr[2], rr[3], v[0])
                # back through the normalisation and R = (s, s·u): ∂R_0/∂r = s′u,
                # ∂(s u_a)/∂r_b = s′ u_a u_b + s (δ_ab − u_a u_b)/r
                g0 = (d0 + sx) * istd[c, 0]
                gx, gy, gz = d1 * istd[c, 1], d2 * istd[c, 2], d3 * istd[c, 3]
                dot = gx * ux + gy * uy + gz * uz
                a = ds * (g0 + dot)
                b = s * inv_r
                drij[j, 0] = a * ux + b * (gx - dot * ux)
                drij[j, 1] = a * uy + b * (gy - dot * uy)
                drij[j, 2] = a * uz + b * (gz - dot * uz)

    @numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
    def _backward_env1(a0, a1, d_out, rij, ctype, tid, ptr, order, avg, istd, rcut_smth, inv_width, params, offset, rows, drij):  # pragma: no cover
        """drij (E, 3) of :func:`_forward_env1`: ∂s̃/∂rij = (ds/dr / std) · u."""
        ng = rows.shape[1]
        w = np.empty(6, dtype=rows.dtype)
        v = np.empty(6, dtype=rows.dtype)
        for i in range(a0, a1):
            c = ctype[i]
            for jj in range(ptr[i], ptr[i + 1]):
                j = order[jj]
                s, ds, inv_r, ux, uy, uz, r0 = _edge_env(rij, j, c, avg, istd, rcut_smth, inv_width)
                row = _weights(r0, tid[j], params, offset, w, v)
                v2, v3, v4, v5 = v[2], v[3], v[4], v[5]
                sx = v[0]  # 0 in the table dtype
                for ch in range(ng):
                    sx += d_out[i, 0, ch] * (rows[row + 1, ch] + v2 * rows[row + 2, ch] + v3 * rows[row + 3, ch]
                                             + v4 * rows[row + 4, ch] + v5 * rows[row + 5, ch])
                a = ds * sx * istd[c, 0]
                drij[j, 0] = a * ux
                drij[j, 1] = a * uy
                drij[j, 2] = a * uz


def _pool(n: int):
    """The thread pool of this process (made again after a fork: a pool's threads do not survive it)."""
    from concurrent.futures import ThreadPoolExecutor

    with _STATE["lock"]:
        if _STATE["pool"] is None or _STATE["pid"] != os.getpid() or _STATE["size"] < n:
            _STATE["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="mlpot-tab")
            _STATE["pid"], _STATE["size"] = os.getpid(), n
        return _STATE["pool"]


def _ranges(ptr: np.ndarray, n_threads: int) -> list[tuple[int, int]]:
    """Contiguous center ranges [a0, a1) of about equal edge counts, at most ``n_threads``."""
    n = ptr.shape[0] - 1
    n_edges = int(ptr[-1])
    parts = max(1, min(int(n_threads), n, n_edges // 2048 or 1))  # small calls: one thread
    cuts = np.searchsorted(ptr, np.linspace(0, n_edges, parts + 1)[1:-1], side="left").tolist()
    bounds = sorted({0, n, *[min(max(int(c), 0), n) for c in cuts]})
    return list(zip(bounds[:-1], bounds[1:]))


def _run(kernel, ranges: list[tuple[int, int]], *args) -> None:
    if len(ranges) == 1:
        kernel(ranges[0][0], ranges[0][1], *args)
        return
    futures = [_pool(len(ranges)).submit(kernel, a0, a1, *args) for a0, a1 in ranges]
    for f in futures:
        f.result()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class NumbaContract(torch.autograd.Function):
    """A = Σ_j R̃_j ⊗ G(s̃_j) per center by the numba kernels (CPU); backward to s̃ and R̃ (see the
    module docstring). Inputs as :func:`mlpot.descriptors.tabulate.tabulated_contract`, edges sorted by center."""

    @staticmethod
    def forward(ctx, x, rows_r, center, tid, n_centers, tables, n_threads):  # type: ignore[override]
        dtype = tables.rows.dtype
        k, ng = rows_r.shape[1], tables.rows.shape[1]
        ptr, _ = _csr(_np(center.to(torch.int64)), int(n_centers))  # edges sorted by center: the order is the identity
        args = (_np(x.to(dtype)), _np(tid.to(torch.int64)), _np(rows_r), ptr, _np(tables.params), _np(tables.offset), _np(tables.rows))
        out = torch.empty(n_centers, k, ng, dtype=dtype)
        ranges = _ranges(ptr, n_threads)
        if n_centers:
            _run(_forward, ranges, *args, out.numpy())
        ctx.args, ctx.ranges, ctx.shape = args, ranges, (rows_r.shape[0], k)
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        from mlpot.descriptors.tabulate import _refuse_double_backward

        _refuse_double_backward()
        n_e, k = ctx.shape
        dx = torch.empty(n_e, dtype=d_out.dtype)
        dr = torch.empty(n_e, k, dtype=d_out.dtype)
        if n_e:
            _run(_backward, ctx.ranges, _np(d_out), *ctx.args, dr.numpy(), dx.numpy())
        ctx.args = None
        return dx, dr, None, None, None, None, None


def numba_contract(x: torch.Tensor, rows_r: torch.Tensor, center: torch.Tensor, tid: torch.Tensor, n_centers: int,
                   tables, n_threads: Optional[int] = None) -> torch.Tensor:
    """(n_centers, k, ng): :class:`NumbaContract` on CPU tensors, ``n_threads`` default torch's."""
    return NumbaContract.apply(x, rows_r, center, tid, int(n_centers), tables,
                               int(n_threads or torch.get_num_threads()))


class NumbaEnvContract(torch.autograd.Function):
    """A per center straight from the pair vectors (:func:`_forward_env4`, :func:`_forward_env1`): the environment rows, their
    normalisation and the tabulated contraction in one kernel, backward to rij (E, 3) Å."""

    @staticmethod
    def forward(ctx, rij, center, center_types, tid, n_centers, avg, std, rcut_smth, rcut, weighted, tables, n_threads):  # type: ignore[override]
        dtype = tables.rows.dtype
        ng = tables.rows.shape[1]
        ptr, order = _csr(_np(center.to(torch.int64)), int(n_centers))  # the edges need not be sorted
        args = (_np(rij.to(dtype)), _np(center_types.to(torch.int64)), _np(tid.to(torch.int64)), ptr, order,
                _np(avg.to(torch.float64)), _np(1.0 / std.to(torch.float64)), float(rcut_smth), 1.0 / (float(rcut) - float(rcut_smth)),
                _np(tables.params), _np(tables.offset), _np(tables.rows))
        out = torch.empty(n_centers, 4 if weighted else 1, ng, dtype=dtype)
        ranges = _ranges(ptr, n_threads)
        if n_centers:
            _run(_forward_env4 if weighted else _forward_env1, ranges, *args, out.numpy())
        ctx.args, ctx.ranges, ctx.n_e, ctx.rij_dtype, ctx.weighted = args, ranges, rij.shape[0], rij.dtype, bool(weighted)
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        from mlpot.descriptors.tabulate import _refuse_double_backward

        _refuse_double_backward()
        drij = torch.empty(ctx.n_e, 3, dtype=d_out.dtype)
        if ctx.n_e:
            _run(_backward_env4 if ctx.weighted else _backward_env1, ctx.ranges, _np(d_out), *ctx.args, drij.numpy())
        ctx.args = None
        return drij.to(ctx.rij_dtype), None, None, None, None, None, None, None, None, None, None, None


def numba_env_contract(rij: torch.Tensor, center: torch.Tensor, center_types: torch.Tensor, tid: torch.Tensor, n_centers: int,
                       avg: torch.Tensor, std: torch.Tensor, rcut_smth: float, rcut: float, weighted: bool, tables,
                       n_threads: Optional[int] = None) -> torch.Tensor:
    """A (n_centers, 4, ng) = Σ_j R̃_j ⊗ G(s̃_j) (``weighted``, se_e2_a) or (n_centers, 1, ng) = Σ_j G(s̃_j)
    (se_e2_r) from the pair vectors ``rij`` (E, 3) Å of centers ``center`` (E,) (any order); ``center_types`` (n_centers,),
    ``tid`` (E,) table ids, ``avg`` / ``std`` (ntypes, 4 or 1) the descriptor statistics, rcut_smth / rcut Å."""
    return NumbaEnvContract.apply(rij, center, center_types, tid, int(n_centers), avg, std, float(rcut_smth), float(rcut),
                                  bool(weighted), tables, int(n_threads or torch.get_num_threads()))


__all__ = ["available", "numba_contract", "NumbaContract", "numba_env_contract", "NumbaEnvContract"]
