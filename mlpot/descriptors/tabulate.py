"""Model compression: embedding nets replaced by quintic Hermite tables (pure functions).

The embedding nets of se_e2_a / se_e2_r (and the geometric net N_s of se_atten / se_atten_v2 with
attn_layer 0 in strip mode, whose type gate is a precomputed table) have a 1-D input, the normalised radial entry
``s̃ = (sw(r)/r − davg)/dstd``; each of the ng output channels is a scalar function of s̃ and is
tabulated piecewise (DeePMD-kit's algorithm and layout, ``deepmd/utils/tabulate.py``):

* grid: ``lower = floor(−davg/dstd)`` (a neighbor at or beyond rcut), ``upper =
  ceil((sw(r_min)/r_min − davg)/dstd)`` with r_min (Å) the minimum neighbor distance of the training
  data; first table ``arange(lower, upper, stride0)``, second table ``arange(upper, extrapolate·upper,
  stride1)`` plus the end point ``extrapolate·upper``, ``stride1 = 10·stride0``;
* on interval l the channel is ``a0 + a1 t + … + a5 t⁵`` in the local coordinate ``t = s̃ − x_l``
  with value, slope and curvature of the net matched at both ends (C², forces C¹); y, y′, y″ come from
  forward-mode autograd of the net itself (:func:`torch.func.jacfwd`), always in float64;
* beyond the table (``s̃ < lower`` or ``s̃ ≥ extrapolate·upper``) the polynomial is continued linearly
  (C¹): ``g(s̃) = p(t_end) + p′(t_end)·(s̃ − bound)``.

Stored layout (DeePMD's ``compress_data``): ``(nspline, 6·ng)``, the 6 coefficients of one channel
contiguous; ``info`` (DeePMD's ``compress_info``): ``[lower, upper, extrapolate·upper, stride0,
stride1, check_frequency]`` float64.

Evaluation works on a *flat* coefficient-major copy of all tables, ``(Σ nspline·6, ng)``: one row per
(interval, power). Per edge only 6 rows are used, with weights ``w_k = t^k (+ δ·k·t^{k−1}
beyond the table)``, so ``G = Σ_k w_k C[row_k]`` is an ``embedding_bag`` with per-sample weights and
``dG/ds̃ = Σ_k k t^{k−1} C[row_k]`` another. :func:`tabulated_contract` evaluates
``A_i = Σ_j R̃_j ⊗ G(s̃_j)`` per center atom in blocks of atoms with its own backward: the forward
pass reads each edge's 6 coefficient rows once for both G and G′ (one embedding_bag of 12 weighted
rows per edge) and keeps them (2·ng values per edge, bounded by the chunked evaluation), so the
backward is one bmm per block and never touches the tables. The same op has a second back-end for
G and G′, torch.compile of :func:`_kernel_values` (gathers and both sums in one loop), chosen by
:func:`set_backend` / ``MLPOT_TABULATE_BACKEND`` with a clean fall-back to the eager one.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mlpot.errors import ConfigError, ModelError

#: DeePMD-kit's ``dp compress`` defaults: stride0, extrapolate, check frequency (−1: off)
DEFAULT_STEP = 0.01
DEFAULT_EXTRAPOLATE = 5.0
DEFAULT_CHECK_FREQUENCY = -1
#: edges per block of :func:`tabulated_contract` (bounds its transient (edges × ng) tensors)
BLOCK_EDGES_CPU = 8192
BLOCK_EDGES_CUDA = 1 << 22


def smooth_switch_scalar(r: float, rcut_smth: float, rcut: float) -> float:
    """DeePMD's quintic switch at one distance r (Å), as :func:`mlpot.descriptors.env.smooth_switch`."""
    if r < rcut_smth:
        return 1.0
    if r < rcut:
        u = (r - rcut_smth) / (rcut - rcut_smth)
        return u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
    return 0.0


def check_parameters(step: float, extrapolate: float, min_nbor_dist: Optional[float], rcut: float) -> None:
    """ConfigError unless step > 0, extrapolate >= 1 and 0 < min_nbor_dist (Å) < rcut (Å) (not checked if None)."""
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise ConfigError(f"compress --step: expected a positive table stride (default {DEFAULT_STEP}), found {step}")
    if not (isinstance(extrapolate, (int, float)) and math.isfinite(extrapolate) and extrapolate >= 1):
        raise ConfigError(f"compress --extrapolate: expected a factor >= 1 (default {DEFAULT_EXTRAPOLATE:g}), found {extrapolate}")
    if min_nbor_dist is not None and not (math.isfinite(min_nbor_dist) and 0 < min_nbor_dist < rcut):
        raise ConfigError(
            f"compress --min-distance: expected a minimum neighbor distance in (0, rcut = {rcut:g}) Å, found {min_nbor_dist}"
        )


def env_range(davg0: np.ndarray, dstd0: np.ndarray, min_nbor_dist: float, rcut_smth: float, rcut: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer table bounds per center type: ``floor(−davg/dstd)``, ``ceil((sw(r_min)/r_min − davg)/dstd)``.

    davg0, dstd0: (ntypes,) or (ntypes, k) mean / std (1/Å); min_nbor_dist, rcut_smth, rcut in Å."""
    sw = smooth_switch_scalar(min_nbor_dist, rcut_smth, rcut)
    lower = -davg0 / dstd0
    upper = (sw / min_nbor_dist - davg0) / dstd0
    return np.floor(lower), np.ceil(upper)


def table_grid(lower: float, upper: float, extrapolate: float, stride0: float, stride1: float) -> tuple[np.ndarray, int]:
    """The nodes (nspline + 1,) float64 and nspline of one table, exactly as DeePMD-kit builds them."""
    xx = np.arange(lower, upper, stride0, dtype=np.float64)
    xx = np.append(xx, np.arange(upper, extrapolate * upper, stride1, dtype=np.float64))
    xx = np.append(xx, np.array([extrapolate * upper], dtype=np.float64))
    nspline = int((upper - lower) / stride0 + (extrapolate * upper - upper) / stride1)
    if nspline < 1 or xx.shape[0] < nspline + 1:
        raise ModelError(f"compress: empty table for the range [{lower:g}, {upper:g}] (stride {stride0:g})")
    return xx, nspline


def net_values(net: Callable[[torch.Tensor], torch.Tensor], xx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y, dy/dx, d²y/dx² of a 1-input net at the nodes xx (n,), each (n, ng) float64.

    ``net`` maps (n, 1) → (n, ng) and must already be float64 (see :func:`float64_copy`)."""
    from torch.func import jacfwd, vmap

    def f(x: torch.Tensor) -> torch.Tensor:  # scalar → (ng,)
        return net(x.reshape(1, 1)).reshape(-1)

    x = torch.as_tensor(xx, dtype=torch.float64)
    with torch.no_grad():
        y = net(x.reshape(-1, 1))
        d1 = vmap(jacfwd(f))(x)
        d2 = vmap(jacfwd(jacfwd(f)))(x)
    return y.numpy(), d1.numpy(), d2.numpy()


def float64_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A detached float64 CPU copy of ``module`` (coefficients are always computed in float64)."""
    import copy

    m = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def hermite_coefficients(
    y: np.ndarray, dy: np.ndarray, d2y: np.ndarray, nspline: int, n_first: int, stride0: float, stride1: float
) -> np.ndarray:
    """Quintic Hermite coefficients (nspline, 6·ng) float64, DeePMD's layout (a0..a5 of a channel contiguous).

    y, dy, d2y: (≥ nspline + 1, ng) at the nodes; the first ``n_first`` intervals have width stride0,
    the others stride1."""
    ng = y.shape[1]
    tt = np.full((nspline, ng), stride1, dtype=np.float64)
    tt[:n_first, :] = stride0
    y0, y1 = y[:nspline], y[1 : nspline + 1]
    d0, d1 = dy[:nspline], dy[1 : nspline + 1]
    s0, s1 = d2y[:nspline], d2y[1 : nspline + 1]
    hh = y1 - y0
    out = np.zeros((nspline, 6 * ng), dtype=np.float64)
    out[:, 0::6] = y0
    out[:, 1::6] = d0
    out[:, 2::6] = 0.5 * s0
    out[:, 3::6] = (20 * hh - (8 * d1 + 12 * d0) * tt - (3 * s0 - s1) * tt * tt) / (2 * tt**3)
    out[:, 4::6] = (-30 * hh + (14 * d1 + 16 * d0) * tt + (3 * s0 - 2 * s1) * tt * tt) / (2 * tt**4)
    out[:, 5::6] = (12 * hh - 6 * (d1 + d0) * tt + (s1 - s0) * tt * tt) / (2 * tt**5)
    return out


def build_table(
    net: torch.nn.Module, lower: float, upper: float, extrapolate: float, stride0: float, stride1: float,
    check_frequency: int = DEFAULT_CHECK_FREQUENCY,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One embedding net → (``data`` (nspline, 6·ng) float64, ``info`` (6,) float64), see the module docstring."""
    xx, nspline = table_grid(lower, upper, extrapolate, stride0, stride1)
    y, dy, d2y = net_values(float64_copy(net), xx[: nspline + 1])
    n_first = int((upper - lower) / stride0)
    data = hermite_coefficients(y, dy, d2y, nspline, n_first, stride0, stride1)
    info = torch.tensor([lower, upper, extrapolate * upper, stride0, stride1, float(check_frequency)], dtype=torch.float64)
    return torch.from_numpy(data), info


def coefficient_major(data: torch.Tensor) -> torch.Tensor:
    """DeePMD layout (nspline, 6·ng) → flat evaluation rows (nspline·6, ng): row 6·l + k holds a_k of interval l."""
    nspline = data.shape[0]
    ng = data.shape[1] // 6
    return data.reshape(nspline, ng, 6).transpose(1, 2).reshape(nspline * 6, ng).contiguous()


class FlatTables:
    """All tables of a descriptor concatenated for evaluation (built by :func:`flat_tables`).

    ``rows`` (Σ nspline·6, ng) model dtype; ``params`` (ntables, 7) float64 per table: lower, upper,
    max, stride0, stride1, n_first (intervals of the first table), nspline; ``offset`` (ntables,) int64
    first row of each table."""

    def __init__(self, rows: torch.Tensor, params: torch.Tensor, offset: torch.Tensor) -> None:
        self.rows, self.params, self.offset = rows, params, offset

    @property
    def ng(self) -> int:
        return int(self.rows.shape[1])


def flat_tables(datas: Sequence[torch.Tensor], infos: Sequence[torch.Tensor], dtype: torch.dtype, device: torch.device) -> FlatTables:
    """:class:`FlatTables` from per-net ``compress_data`` / ``compress_info`` tensors (in table-id order)."""
    rows, params, offsets, off = [], [], [], 0
    for data, info in zip(datas, infos):
        lo, up, mx, s0, s1 = (float(v) for v in info[:5])
        nspline = int(data.shape[0])
        params.append([lo, up, mx, s0, s1, float(int((up - lo) / s0)), float(nspline)])
        rows.append(coefficient_major(data.detach().to(torch.float64)))
        offsets.append(off)
        off += nspline * 6
    return FlatTables(
        torch.cat(rows).to(device=device, dtype=dtype),
        torch.tensor(params, dtype=torch.float64, device=device),
        torch.tensor(offsets, dtype=torch.long, device=device),
    )


def locate(x: torch.Tensor, tid: torch.Tensor, tables: FlatTables) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Table lookup of s̃ values ``x`` (E,) in tables ``tid`` (E,): (first row (E,) int64, t (E,), δ (E,)).

    t is the local coordinate within the interval, δ the distance beyond the table (0 inside;
    x − lower below it, x − max above it), all in x's dtype (DeePMD's ``locate_xx``)."""
    return _locate(x, tid, tables.params, tables.offset)


def _locate(x: torch.Tensor, tid: torch.Tensor, params: torch.Tensor, offset: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`locate` on the tables' ``params`` (ntables, 7) and ``offset`` (ntables,) (plain tensors,
    so that torch.compile can trace it)."""
    p = params.to(x.dtype)[tid]  # (E, 7)
    lo, up, mx, s0, s1, nfirst, nspl = p.unbind(1)
    xd = x.detach()
    below, first, second = xd < lo, xd < up, xd < mx
    i1 = torch.floor((xd - lo) / s0)
    i2 = nfirst + torch.floor((xd - up) / s1)
    idx = torch.where(first, i1, torch.where(second, i2, nspl - 1))
    idx = torch.where(below, torch.zeros_like(idx), idx)
    idx = torch.minimum(torch.maximum(idx, torch.zeros_like(idx)), nspl - 1)
    start = torch.where(idx < nfirst, lo + idx * s0, up + (idx - nfirst) * s1)  # left node of the interval
    xc = torch.minimum(torch.maximum(x, lo), mx)  # t stays inside [0, width]; beyond: δ
    t = xc - start
    delta = x - xc
    row = offset[tid] + 6 * idx.to(torch.long)
    return row, t, delta


def basis_weights(t: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, 6) weights of the 6 coefficient rows for G (``t^k + δ·k·t^{k−1}``) and for dG/ds̃ (``k·t^{k−1}``)."""
    ones = torch.ones_like(t)
    p = [ones, t]
    for _ in range(4):
        p.append(p[-1] * t)
    pw = torch.stack(p, dim=1)  # t^0..t^5
    zeros = torch.zeros_like(t)
    dp = torch.stack([zeros, ones, 2 * p[1], 3 * p[2], 4 * p[3], 5 * p[4]], dim=1)  # k t^{k-1}
    w = pw + delta[:, None] * dp
    return w, dp


def eval_table(x: torch.Tensor, tid: torch.Tensor, tables: FlatTables, derivative: bool = False) -> torch.Tensor:
    """G(x) (or dG/dx) per value, (E, ng): the plain, differentiable reference evaluation (gather + sum)."""
    row, t, delta = locate(x, tid, tables)
    w, dw = basis_weights(t, delta)
    c = tables.rows[row[:, None] + torch.arange(6, device=row.device)]  # (E, 6, ng)
    return torch.einsum("ek,ekg->eg", dw if derivative else w, c)


class _Block:
    """One block of consecutive centers [a0, a1) and their edges [e0, e1) (edges sorted by center) in
    the padded per-center layout (n = a1 − a0 centers × nmax slots): ``ind`` (6·e,) coefficient rows,
    ``offsets`` (n·nmax,) embedding_bag offsets (empty slots: empty bags), ``slot`` (e,) the padded
    position of each edge; for the value-and-derivative bags (:func:`_bag_values`: per center first
    its nmax G bags, then its nmax G′ bags) ``ind2`` (12·e,), ``offsets2`` (2·n·nmax,) and ``src2``
    (2·e,) the entry of ``cat([w, dw])`` (block edges) each bag takes its 6 weights from."""

    __slots__ = ("a0", "a1", "e0", "e1", "nmax", "ind", "offsets", "slot", "ind2", "offsets2", "src2")

    def __init__(self, a0: int, a1: int, e0: int, e1: int, nmax: int, ind: torch.Tensor, offsets: torch.Tensor, slot: torch.Tensor):
        self.a0, self.a1, self.e0, self.e1, self.nmax = a0, a1, e0, e1, nmax
        self.ind, self.offsets, self.slot = ind, offsets, slot
        self.ind2 = self.offsets2 = self.src2 = None


def plan_blocks(center: torch.Tensor, row: torch.Tensor, n_centers: int, block_edges: int, values: bool = False) -> list[_Block]:
    """Split centers into blocks of about ``block_edges`` edges and build each block's padded layout.
    ``center`` (E,) sorted (non-decreasing); ``row`` (E,) first coefficient row of each edge;
    ``values``: also the (G, G′) bag layout of :func:`_bag_values`."""
    e = int(center.shape[0])
    if e == 0 or n_centers == 0:
        return []
    dev = center.device
    counts = torch.bincount(center, minlength=n_centers)
    ptr_t = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    ptr = ptr_t.tolist()
    bounds, a0 = [], 0
    while a0 < n_centers:
        a1 = int(np.searchsorted(ptr, ptr[a0] + block_edges, side="right")) - 1
        a1 = min(max(a1, a0 + 1), n_centers)
        bounds.append((a0, a1))
        a0 = a1
    rank = torch.arange(e, device=dev) - ptr_t[center]  # position of each edge among its center's edges
    ar6 = torch.arange(6, device=dev)
    out = []
    for a0, a1 in bounds:
        e0, e1 = ptr[a0], ptr[a1]
        nb = a1 - a0
        nmax = max(int(counts[a0:a1].max()), 1)
        la = center[e0:e1] - a0
        rk = rank[e0:e1]
        slot = la * nmax + rk
        filled = torch.zeros(nb * nmax, dtype=torch.long, device=dev)
        filled[slot] = 1
        offsets = 6 * (torch.cumsum(filled, 0) - filled)
        ind = (row[e0:e1, None] + ar6).reshape(-1)
        b = _Block(a0, a1, e0, e1, nmax, ind, offsets, slot)
        if values:
            ne = e1 - e0
            start = ptr_t[center[e0:e1]] - e0  # first edge of each edge's center, block-local
            cnt = counts[center[e0:e1]]
            pos_g = 2 * start + rk  # bag entries ordered (center, half, slot)
            src2 = torch.empty(2 * ne, dtype=torch.long, device=dev)
            src2[pos_g] = torch.arange(ne, device=dev)
            src2[pos_g + cnt] = torch.arange(ne, 2 * ne, device=dev)
            filled2 = torch.zeros(nb * 2 * nmax, dtype=torch.long, device=dev)
            filled2[la * 2 * nmax + rk] = 1
            filled2[la * 2 * nmax + nmax + rk] = 1
            b.offsets2 = 6 * (torch.cumsum(filled2, 0) - filled2)
            b.ind2 = ind.reshape(ne, 6).repeat(2, 1)[src2].reshape(-1)
            b.src2 = src2
        out.append(b)
    return out


def _bag_padded(rows: torch.Tensor, b: _Block, weights: torch.Tensor) -> torch.Tensor:
    """Σ_k weights[j, k] · rows[row_j + k] for the edges of block b, in its padded layout (n·nmax, ng);
    empty slots are zero (empty bags). One embedding_bag: no (E, 6, ng) gather."""
    return F.embedding_bag(b.ind, rows, b.offsets, mode="sum", per_sample_weights=weights[b.e0 : b.e1].reshape(-1))


def _bag_values(rows: torch.Tensor, b: _Block, w: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
    """G and G′ = dG/ds̃ of block b's edges in one embedding_bag, (n, 2, nmax, ng): [:, 0] G, [:, 1] G′,
    zeros in empty slots (empty bags)."""
    wts = torch.cat([w[b.e0 : b.e1], dw[b.e0 : b.e1]])[b.src2].reshape(-1)
    v = F.embedding_bag(b.ind2, rows, b.offsets2, mode="sum", per_sample_weights=wts)
    return v.reshape(b.a1 - b.a0, 2, b.nmax, rows.shape[1])


def _pad(values: torch.Tensor, b: _Block) -> torch.Tensor:
    """Per-edge values (e, k) of block b → padded (n, nmax, k), zeros in empty slots."""
    out = values.new_zeros((b.a1 - b.a0) * b.nmax, values.shape[1])
    out[b.slot] = values[b.e0 : b.e1]
    return out.reshape(b.a1 - b.a0, b.nmax, values.shape[1])


# ------------------------------------------------------------------------- compiled block kernels
def _kernel_values(tab_rows: torch.Tensor, row0: torch.Tensor, w: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
    """G and G′ (n, 2, nmax, ng) from padded row0 (n, nmax), weights w, dw (n, nmax, 6): G = Σ_p w_p ·
    rows[row0 + p], G′ = Σ_p dw_p · rows[row0 + p]. Written for torch.compile: the 6 gathers and both
    sums in one loop, each coefficient row read once for both (empty slots: w = dw = 0)."""
    return torch.stack(_values_and_slopes(tab_rows, row0, w, dw), dim=1)


def _values_and_slopes(tab_rows: torch.Tensor, row0: torch.Tensor, w: torch.Tensor,
                       dw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, G′), each (n, nmax, ng), of :func:`_kernel_values`: one pass over the 6 coefficient rows."""
    c = tab_rows[row0]
    g = w[..., 0:1] * c
    gp = dw[..., 0:1] * c
    for p in range(1, 6):
        c = tab_rows[row0 + p]
        g = g + w[..., p : p + 1] * c
        gp = gp + dw[..., p : p + 1] * c
    return g, gp


#: which evaluation of the tables runs: "numba" (the CPU kernels of :mod:`.tabulate_numba`, compiled
#: by numba: no C compiler needed; eager where they cannot run), "eager" (embedding_bag + bmm, any
#: machine), "compile" (torch.compile of the block kernels: needs a C++ compiler on CPU, Triton on
#: CUDA) or "auto" (the default): on CPU numba where it imports; otherwise (CUDA, no numba, and the
#: gated op of se_atten, which has no numba kernel) eager first, then compiled once the op has run
#: AUTO_COMPILE_AFTER times in the process and a compiler is found, float64 only on CPU. A failed
#: numba or torch.compile kernel falls back for good, with one logged warning. Environment:
#: MLPOT_TABULATE_BACKEND.
_BACKEND = {
    "name": os.environ.get("MLPOT_TABULATE_BACKEND", "auto").lower(), "calls": 0, "failed": False, "kernels": None,
    "gated_kernels": None, "locate": None, "numba_failed": False,
}
BACKENDS = ("auto", "numba", "eager", "compile")
AUTO_COMPILE_AFTER = 50


def set_backend(name: str) -> None:
    """Choose the table evaluation: "auto", "numba", "eager" or "compile" (see :data:`_BACKEND`)."""
    if name not in BACKENDS:
        raise ConfigError(f"tabulate backend: expected one of {', '.join(repr(b) for b in BACKENDS)}, found {name!r}")
    _BACKEND["name"] = name
    _BACKEND["failed"] = False
    _BACKEND["numba_failed"] = False


def compiler_available(device: torch.device) -> bool:
    """Whether torch.compile can generate code here: a C++ compiler (CPU) or Triton (CUDA)."""
    import shutil

    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))


def _compiled_kernels():
    """(the compiled :func:`_kernel_values`,), made once per process."""
    if _BACKEND["kernels"] is None:
        _BACKEND["kernels"] = (torch.compile(_kernel_values, dynamic=True),)
    return _BACKEND["kernels"]


def numba_usable(device: torch.device) -> bool:
    """Whether the numba kernels can run for tensors on ``device`` (CPU, numba imports, none failed)."""
    from mlpot.descriptors import tabulate_numba

    return device.type == "cpu" and not _BACKEND["numba_failed"] and tabulate_numba.available()


def active_backend(device: torch.device, dtype: torch.dtype = torch.float64, gated: bool = False) -> str:
    """The backend the next call on ``device`` in ``dtype`` uses ("numba", "eager" or "compile";
    ``gated``: for the se_atten gate, which has no numba kernel). "auto" takes numba on CPU; without
    it, it compiles float64 only: in float32 on CPU the eager embedding_bag (FBGEMM) was as fast or
    faster (benchmarks/RESULTS.md, "Compression")."""
    name = _BACKEND["name"]
    if name in ("auto", "numba") and not gated and numba_usable(device):
        return "numba"
    if name == "eager" or name == "numba" or _BACKEND["failed"]:  # "numba" where it cannot run: eager
        return "eager"
    if name == "compile":
        return "compile"
    if device.type == "cpu" and dtype != torch.float64:
        return "eager"
    return "compile" if (_BACKEND["calls"] >= AUTO_COMPILE_AFTER and compiler_available(device)) else "eager"


def _numba_failed(exc: BaseException) -> None:
    import logging

    _BACKEND["numba_failed"] = True
    logging.getLogger("mlpot").warning(
        "compressed model: the numba table kernels failed (%s: %s); using the torch evaluation",
        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
    )


def _compile_failed(exc: BaseException) -> None:
    import logging

    _BACKEND["failed"] = True
    logging.getLogger("mlpot").warning(
        "compressed model: torch.compile of the table kernels failed (%s: %s); using the eager evaluation",
        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
    )


def _padded_inputs(b: "_Block", row: torch.Tensor, w: torch.Tensor, dw: torch.Tensor, rows_r: torch.Tensor):
    n = b.a1 - b.a0
    row0 = row.new_zeros(n * b.nmax)
    row0[b.slot] = row[b.e0 : b.e1]
    return row0.reshape(n, b.nmax), _pad(w, b), _pad(dw, b), _pad(rows_r, b)


def _refuse_double_backward() -> None:
    """The backward of the table op is not itself differentiable: with ``create_graph`` (force
    training, Hessians) raise instead of returning incomplete second derivatives."""
    if torch.is_grad_enabled():
        raise ModelError(
            "compressed model: second derivatives through the tables are not supported (force training, "
            "Hessians by autograd); use the uncompressed model for them"
        )


class _TabulatedContract(torch.autograd.Function):
    """A = Σ_j R̃_j ⊗ G(s̃_j) per center (see :func:`tabulated_contract`); backward to s̃ and R̃.
    The eager evaluation (any machine; :class:`_CompiledContract` is the compiled one).

    Forward, per block: G and G′ of its edges in one embedding_bag over the coefficient rows, then
    A = R̃ᵀG by bmm. G and G′ are kept (2·ng values per edge; the chunked evaluation bounds the edges
    per call), so the backward does not touch the tables: one bmm P = [G; G′] dAᵀ gives dR̃_jm = P_jm
    and dx_j = Σ_m R̃_jm (G′_j · dA_m)."""

    @staticmethod
    def forward(ctx, x, rows_r, w, dw, row, blocks, n_centers, table_rows):  # type: ignore[override]
        k, ng = rows_r.shape[1], table_rows.shape[1]
        out = torch.zeros(n_centers, k, ng, dtype=table_rows.dtype, device=table_rows.device)
        saved = []
        for b in blocks:
            v = _bag_values(table_rows, b, w, dw)
            rp = _pad(rows_r, b)
            torch.bmm(rp.transpose(1, 2), v[:, 0], out=out[b.a0 : b.a1])
            saved.append((v, rp))
        ctx.saved = saved
        ctx.blocks = blocks
        ctx.shape = (rows_r.shape[0], k)
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        _refuse_double_backward()
        n_e, k = ctx.shape
        d_out = d_out.contiguous()
        dx = torch.zeros(n_e, dtype=d_out.dtype, device=d_out.device)
        dr = torch.zeros(n_e, k, dtype=d_out.dtype, device=d_out.device)
        for b, (v, rp) in zip(ctx.blocks, ctx.saved):
            nb, nmax = b.a1 - b.a0, b.nmax
            p = torch.bmm(v.reshape(nb, 2 * nmax, -1), d_out[b.a0 : b.a1].transpose(1, 2))  # (n, 2·nmax, k)
            dr[b.e0 : b.e1] = p[:, :nmax].reshape(nb * nmax, k)[b.slot]
            dx[b.e0 : b.e1] = (p[:, nmax:] * rp).sum(-1).reshape(-1)[b.slot]
        ctx.saved = None
        return dx, dr, None, None, None, None, None, None


class _GatedContract(torch.autograd.Function):
    """A = Σ_j R̃_j ⊗ [G(s̃_j) ⊙ (1 + sw_j·T[p_j])] per center (the strip-mode type gate of
    se_atten / se_atten_v2 with attn_layer 0, see :func:`tabulated_contract`); backward to s̃, R̃ and
    sw (T is a constant table). Eager: embedding_bag + bmm per block, G recomputed in backward."""

    @staticmethod
    def forward(ctx, x, rows_r, sw, w, dw, pair, blocks, n_centers, table_rows, gate_rows):  # type: ignore[override]
        k, ng = rows_r.shape[1], table_rows.shape[1]
        out = torch.zeros(n_centers, k, ng, dtype=table_rows.dtype, device=table_rows.device)
        for b in blocks:
            g = _bag_padded(table_rows, b, w).reshape(b.a1 - b.a0, b.nmax, ng)
            gate = _pad_gate(b, pair, sw, gate_rows)  # sw·T, (n, nmax, ng); 0 in empty slots
            torch.bmm(_pad(rows_r, b).transpose(1, 2), g + g * gate, out=out[b.a0 : b.a1])
        ctx.save_for_backward(rows_r, sw, w, dw, pair, table_rows, gate_rows)
        ctx.blocks = blocks
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        _refuse_double_backward()
        rows_r, sw, w, dw, pair, table_rows, gate_rows = ctx.saved_tensors
        d_out = d_out.contiguous()
        dx = torch.zeros(rows_r.shape[0], dtype=rows_r.dtype, device=rows_r.device)
        dsw = torch.zeros_like(dx)
        dr = torch.zeros_like(rows_r)
        for b in ctx.blocks:
            _eager_gated_backward_block(b, rows_r, sw, w, dw, pair, table_rows, gate_rows, d_out, dx, dr, dsw)
        return dx, dr, dsw, None, None, None, None, None, None, None


def _eager_gated_backward_block(b, rows_r, sw, w, dw, pair, table_rows, gate_rows, d_out, dx, dr, dsw) -> None:
    """dx, dR̃, dsw of block b's edges (in place) for dA = d_out, gated contraction, embedding_bag + bmm."""
    nb, ng = b.a1 - b.a0, table_rows.shape[1]
    da = d_out[b.a0 : b.a1]  # (n, k, ng)
    g = _bag_padded(table_rows, b, w).reshape(nb, b.nmax, ng)
    gp = _bag_padded(table_rows, b, dw).reshape(nb, b.nmax, ng)
    tp = _pad_gate(b, pair, None, gate_rows)  # T, (n, nmax, ng)
    swp = _pad(sw[:, None], b)  # (n, nmax, 1)
    f = 1.0 + swp * tp
    # dR̃_jm = Σ_c dA_imc G_jc (1 + sw_j T_jc)
    dr[b.e0 : b.e1] = torch.bmm(g * f, da.transpose(1, 2)).reshape(nb * b.nmax, -1)[b.slot]
    q = torch.bmm(_pad(rows_r, b), da)  # Σ_m R̃_jm dA_imc, (n, nmax, ng)
    dx[b.e0 : b.e1] = (q * gp * f).sum(-1).reshape(-1)[b.slot]
    dsw[b.e0 : b.e1] = (q * g * tp).sum(-1).reshape(-1)[b.slot]


def _kernel_forward_gated(tab_rows, row0, w, r, gate_rows, pair0, swp) -> torch.Tensor:
    """As :func:`_kernel_forward` with the type gate: G ← G ⊙ (1 + sw·T[pair]); pair0, swp (n, nmax)
    (sw 0 in empty slots)."""
    g = w[..., 0:1] * tab_rows[row0]
    for p in range(1, 6):
        g = g + w[..., p : p + 1] * tab_rows[row0 + p]
    g = g * (1.0 + swp[..., None] * gate_rows[pair0])
    return (r[..., None] * g[..., None, :]).sum(1)


def _kernel_backward_gated(tab_rows, row0, w, dw, r, d_a, gate_rows, pair0, swp):
    """(dR̃ (n, nmax, k), dx (n, nmax), dsw (n, nmax)) of the gated contraction for dA (n, k, ng)."""
    g, gp = _values_and_slopes(tab_rows, row0, w, dw)
    t = gate_rows[pair0]
    f = 1.0 + swp[..., None] * t
    d_r = ((g * f)[:, :, None, :] * d_a[:, None, :, :]).sum(-1)
    q = (r[..., None] * d_a[:, None, :, :]).sum(2)  # Σ_m R̃_jm dA_mc
    return d_r, (q * gp * f).sum(-1), (q * g * t).sum(-1)


def _compiled_gated_kernels():
    if _BACKEND.get("gated_kernels") is None:
        _BACKEND["gated_kernels"] = (
            torch.compile(_kernel_forward_gated, dynamic=True),
            torch.compile(_kernel_backward_gated, dynamic=True),
        )
    return _BACKEND["gated_kernels"]


def _padded_gate_inputs(b: "_Block", pair: torch.Tensor, sw: torch.Tensor):
    n = b.a1 - b.a0
    pair0 = pair.new_zeros(n * b.nmax)
    pair0[b.slot] = pair[b.e0 : b.e1]
    swp = sw.new_zeros(n * b.nmax)
    swp[b.slot] = sw[b.e0 : b.e1]
    return pair0.reshape(n, b.nmax), swp.reshape(n, b.nmax)


class _CompiledGatedContract(torch.autograd.Function):
    """As :class:`_GatedContract` with the compiled block kernels (eager again, for good, if a
    backward kernel fails)."""

    @staticmethod
    def forward(ctx, x, rows_r, sw, w, dw, row, pair, blocks, n_centers, table_rows, gate_rows):  # type: ignore[override]
        fwd, _ = _compiled_gated_kernels()
        k, ng = rows_r.shape[1], table_rows.shape[1]
        out = torch.zeros(n_centers, k, ng, dtype=table_rows.dtype, device=table_rows.device)
        for b in blocks:
            row0, wp, _, rp = _padded_inputs(b, row, w, dw, rows_r)
            pair0, swp = _padded_gate_inputs(b, pair, sw)
            out[b.a0 : b.a1] = fwd(table_rows, row0, wp, rp, gate_rows, pair0, swp)
        ctx.save_for_backward(rows_r, sw, w, dw, row, pair, table_rows, gate_rows)
        ctx.blocks = blocks
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        _refuse_double_backward()
        rows_r, sw, w, dw, row, pair, table_rows, gate_rows = ctx.saved_tensors
        d_out = d_out.contiguous()
        dx = torch.zeros(rows_r.shape[0], dtype=rows_r.dtype, device=rows_r.device)
        dsw = torch.zeros_like(dx)
        dr = torch.zeros_like(rows_r)
        for b in ctx.blocks:
            if not _BACKEND["failed"]:
                try:
                    _, bwd = _compiled_gated_kernels()
                    row0, wp, dwp, rp = _padded_inputs(b, row, w, dw, rows_r)
                    pair0, swp = _padded_gate_inputs(b, pair, sw)
                    d_rp, dxp, dswp = bwd(table_rows, row0, wp, dwp, rp, d_out[b.a0 : b.a1], gate_rows, pair0, swp)
                    dr[b.e0 : b.e1] = d_rp.reshape(-1, rows_r.shape[1])[b.slot]
                    dx[b.e0 : b.e1] = dxp.reshape(-1)[b.slot]
                    dsw[b.e0 : b.e1] = dswp.reshape(-1)[b.slot]
                    continue
                except Exception as exc:  # noqa: BLE001 - the backward kernel failed to compile: eager
                    _compile_failed(exc)
            _eager_gated_backward_block(b, rows_r, sw, w, dw, pair, table_rows, gate_rows, d_out, dx, dr, dsw)
        return dx, dr, dsw, None, None, None, None, None, None, None, None


def _locate_weights(x: torch.Tensor, tid: torch.Tensor, params: torch.Tensor, offset: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`locate` + :func:`basis_weights` in one function (for torch.compile: one pointwise loop
    instead of ~40 eager passes over the edges): first rows (E,), weights w and dw (E, 6)."""
    row, t, delta = _locate(x, tid, params, offset)
    w, dw = basis_weights(t, delta)
    return row, w, dw


def _compiled_locate():
    if _BACKEND["locate"] is None:
        _BACKEND["locate"] = torch.compile(_locate_weights, dynamic=True)
    return _BACKEND["locate"]


def plan_padded(center: torch.Tensor, n_centers: int, block_edges: int) -> tuple[torch.Tensor, int, list[int]]:
    """The padded per-center layout of the compiled path, vectorised: (slot (E,) = center·nmax + rank
    of the edge among its center's edges, nmax = the largest count, block bounds over the centers of
    about ``block_edges`` slots each). ``center`` (E,) sorted."""
    counts = torch.bincount(center, minlength=n_centers)
    ptr = torch.cumsum(counts, 0) - counts  # first edge of each center
    nmax = max(int(counts.max()), 1)
    slot = center * nmax + (torch.arange(center.shape[0], device=center.device) - ptr[center])
    per = max(2, int(block_edges) // nmax)
    bounds = list(range(0, n_centers, per)) + [n_centers]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 2:  # no 1-center block: torch.compile specialises
        del bounds[-2]  # size 1 and would compile the kernel again mid-run
    return slot, nmax, bounds


class _CompiledContract(torch.autograd.Function):
    """A = Σ_j R̃_j ⊗ G(s̃_j) per center with the compiled kernels (see :func:`tabulated_contract`).

    The lookup (:func:`_locate_weights`) runs compiled over all edges; the edges are scattered once
    into one padded (n_centers, nmax) layout (:func:`plan_padded`), whose blocks of centers are views:
    per block G and G′ in one compiled pass over the coefficient rows (:func:`_kernel_values`), A =
    R̃ᵀG by bmm. G and G′ are kept for the backward (one bmm per block, no table access)."""

    @staticmethod
    def forward(ctx, x, rows_r, center, tid, n_centers, tables, block_edges):  # type: ignore[override]
        (kern,) = _compiled_kernels()
        row, w, dw = _compiled_locate()(x.detach(), tid, tables.params, tables.offset)
        dtype = tables.rows.dtype
        k, ng = rows_r.shape[1], tables.rows.shape[1]
        out = torch.zeros(n_centers, k, ng, dtype=dtype, device=tables.rows.device)
        if x.shape[0] == 0 or n_centers == 0:
            ctx.empty = True
            return out
        ctx.empty = False
        slot, nmax, bounds = plan_padded(center, n_centers, block_edges)

        def padded(values: torch.Tensor) -> torch.Tensor:  # per edge (E, ...) → (n_centers, nmax, ...), 0 in empty slots
            out_p = values.new_zeros((n_centers * nmax,) + tuple(values.shape[1:]))
            out_p[slot] = values
            return out_p.view((n_centers, nmax) + tuple(values.shape[1:]))

        row0, wp, dwp, rp = padded(row), padded(w.to(dtype)), padded(dw.to(dtype)), padded(rows_r)
        saved = []
        for a0, a1 in zip(bounds[:-1], bounds[1:]):
            v = kern(tables.rows, row0[a0:a1], wp[a0:a1], dwp[a0:a1])  # (n, 2, nmax, ng)
            torch.bmm(rp[a0:a1].transpose(1, 2), v[:, 0], out=out[a0:a1])
            saved.append(v)
        ctx.saved, ctx.rp, ctx.slot, ctx.bounds = saved, rp, slot, bounds
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        _refuse_double_backward()
        if ctx.empty:
            return None, None, None, None, None, None, None
        d_out = d_out.contiguous()
        rp = ctx.rp
        n_c, nmax, k = rp.shape
        # Pᵀ = dA·[G; G′]ᵀ per block, (n, 4, 2·nmax): in this operand order the batched GEMM reads
        # the saved G, G′ 1.1–1.4× faster than as [G; G′]·dAᵀ (benchmarks/compress_floor.py)
        pt = d_out.new_empty(n_c, k, 2 * nmax)
        for (a0, a1), v in zip(zip(ctx.bounds[:-1], ctx.bounds[1:]), ctx.saved):
            torch.bmm(d_out[a0:a1], v.reshape(a1 - a0, 2 * nmax, -1).transpose(1, 2), out=pt[a0:a1])
        dr = pt[:, :, :nmax].transpose(1, 2).reshape(n_c * nmax, k)[ctx.slot]
        dx = (pt[:, :, nmax:] * rp.transpose(1, 2)).sum(1).reshape(-1)[ctx.slot]
        ctx.saved = ctx.rp = None
        return dx, dr, None, None, None, None, None


def _pad_gate(b: "_Block", pair: torch.Tensor, sw: Optional[torch.Tensor], gate_rows: torch.Tensor) -> torch.Tensor:
    """T[p_j] (times sw_j if given) of block b's edges in its padded layout (n, nmax, ng), 0 in empty slots."""
    ng = gate_rows.shape[1]
    t = gate_rows[pair[b.e0 : b.e1]]  # already the block's edges: padded here, not by _pad (which slices again)
    if sw is not None:
        t = t * sw[b.e0 : b.e1, None]
    out = t.new_zeros((b.a1 - b.a0) * b.nmax, ng)
    out[b.slot] = t
    return out.reshape(b.a1 - b.a0, b.nmax, ng)


def tabulated_contract(
    x: torch.Tensor, rows_r: torch.Tensor, center: torch.Tensor, tid: torch.Tensor, n_centers: int, tables: FlatTables,
    block_edges: Optional[int] = None, gate: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
) -> torch.Tensor:
    """``A_i = Σ_{j∈N(i)} R̃_j ⊗ G_{tid_j}(x_j)``: (n_centers, k, ng) from the edges' s̃ values x (E,),
    rows R̃ (E, k) (k = 4 for se_e2_a, 1 with ones for se_e2_r), centers (E,) and table ids (E,).

    Differentiable in x and R̃ by its own backward (the derivative of the tabulated function: the
    plain paths keep G and G′ of every block for it, 2·ng values per edge; the gated ones recompute
    them from the tables); processes blocks of centers of about ``block_edges`` edges (default by
    device), so the transient (edges × ng) tensors of a block are bounded. Backend (:func:`active_backend`):
    :class:`_CompiledContract` (compiled lookup and kernels) or :class:`_TabulatedContract` (eager
    embedding_bag), the eager one also when compiling fails. The edges are sorted by center here if
    they are not already.

    ``gate = (T (P, ng), pair (E,) int64, sw (E,))``: the strip-mode type gate of se_atten /
    se_atten_v2, ``G_j ← G(x_j) ⊙ (1 + sw_j·T[pair_j])``, differentiable in sw too (T constant);
    :class:`_GatedContract` (eager) or :class:`_CompiledGatedContract` by the same backend choice."""
    order = None
    if center.numel() > 1 and bool((center[1:] < center[:-1]).any()):
        order = torch.argsort(center, stable=True)
        x, rows_r, center, tid = x[order], rows_r[order], center[order], tid[order]
        if gate is not None:
            gate = (gate[0], gate[1][order], gate[2][order])
    backend = active_backend(x.device, tables.rows.dtype, gated=gate is not None)
    if block_edges is None:
        block_edges = BLOCK_EDGES_CUDA if x.device.type == "cuda" else BLOCK_EDGES_CPU
    _BACKEND["calls"] += 1
    if backend == "numba":
        from mlpot.descriptors.tabulate_numba import numba_contract

        try:
            return numba_contract(x, rows_r.to(tables.rows.dtype), center, tid, int(n_centers), tables)
        except Exception as exc:  # noqa: BLE001 - a numba/LLVM failure: the torch paths below are exact too
            _numba_failed(exc)
        backend = active_backend(x.device, tables.rows.dtype, gated=True)
    if gate is None and backend == "compile":
        try:
            return _CompiledContract.apply(x, rows_r.to(tables.rows.dtype), center, tid, int(n_centers), tables, int(block_edges))
        except Exception as exc:  # noqa: BLE001 - no compiler, an Inductor bug: the eager path below is exact too
            _compile_failed(exc)
        backend = "eager"
    row, t, delta = locate(x, tid, tables)
    # the weights depend on x through t (inside) or δ (beyond the table) with the same derivative
    # weights dw; the Function returns dE/dx itself
    w, dw = basis_weights(t.detach(), delta.detach())
    w, dw = w.to(tables.rows.dtype), dw.to(tables.rows.dtype)
    blocks = plan_blocks(center, row, int(n_centers), int(block_edges), values=gate is None)
    rows_r = rows_r.to(tables.rows.dtype)
    if gate is not None:
        t_rows, pair, sw = gate
        sw, t_rows = sw.to(tables.rows.dtype), t_rows.to(tables.rows.dtype)
        if backend == "compile":
            try:
                return _CompiledGatedContract.apply(x, rows_r, sw, w, dw, row, pair, blocks, int(n_centers), tables.rows, t_rows)
            except Exception as exc:  # noqa: BLE001 - no compiler, an Inductor bug: the eager path is exact too
                _compile_failed(exc)
        return _GatedContract.apply(x, rows_r, sw, w, dw, pair, blocks, int(n_centers), tables.rows, t_rows)
    return _TabulatedContract.apply(x, rows_r, w, dw, row, blocks, int(n_centers), tables.rows)


def out_of_range(x: torch.Tensor, tid: torch.Tensor, tables: FlatTables) -> int:
    """How many values lie outside their table (below ``lower`` or at/above ``extrapolate·upper``)."""
    p = tables.params.to(x.dtype)[tid]
    xd = x.detach()
    return int(((xd < p[:, 0]) | (xd >= p[:, 2])).sum())


__all__ = [
    "DEFAULT_STEP", "DEFAULT_EXTRAPOLATE", "DEFAULT_CHECK_FREQUENCY", "FlatTables", "build_table", "env_range",
    "table_grid", "hermite_coefficients", "flat_tables", "locate", "eval_table", "tabulated_contract", "out_of_range",
    "check_parameters", "coefficient_major",
]
