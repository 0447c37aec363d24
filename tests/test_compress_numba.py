"""The numba CPU kernels of the compressed models (:mod:`mlpot.descriptors.tabulate_numba`) against
independent references: the plain gather of the tables with autograd (contraction level), the eager
torch path that builds the environment rows with torch ops (model level), finite differences of
the energy; results independent of the thread count and of the edge order; a clean fall-back."""

from __future__ import annotations

import threading

import numpy as np

import pytest
import torch

from conftest import DATA
from mlpot import testing
from mlpot.data import io
from mlpot.descriptors import tabulate as tab
from mlpot.descriptors import tabulate_numba as tn
from mlpot.descriptors.environment import Environment
from mlpot.model import evaluate

pytestmark = pytest.mark.skipif(not tn.available(), reason="numba is not installed")

PBC = [True, True, True]
R_MIN = 0.88  # Å, a little below the bundled water's shortest pair (0.8854 Å)


@pytest.fixture(autouse=True)
def _restore_backend():
    yield
    tab.set_backend("auto")


@pytest.fixture(scope="module")
def water():
    return io.read(DATA / "water" / "data_0")[0]


def frame(s, f=0):
    return s.positions[f], s.atom_types, s.cells[f]


def compressed(kind="se_e2_a", precision="float64", **kw):
    s = io.read(DATA / "water" / "data_0")[0]
    model = testing.tiny_model(kind, precision=precision, stats=[s.read(slice(0, 3))], **kw)
    model.compress(R_MIN)
    return model


def _tables(dtype=torch.float64):
    model = compressed("se_e2_a")
    ft = model.descriptor.flat_tables()
    return tab.FlatTables(ft.rows.to(dtype), ft.params, ft.offset)


@pytest.mark.parametrize("k", [4, 1])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-4)])
def test_contract_equals_gather_reference(k, dtype, tol):
    """A = Σ R̃ ⊗ G and both gradients against the plain gather of the tables (autograd through
    eval_table): centers without edges (first, middle, last), values below and beyond both tables."""
    ft = _tables(dtype)
    g = torch.Generator().manual_seed(5)
    counts = torch.tensor([0, 5, 1, 0, 70, 3, 0, 2, 0])
    n_c = int(counts.shape[0])
    center = torch.repeat_interleave(torch.arange(n_c), counts)
    e = int(center.shape[0])
    lo, mx = float(ft.params[0, 0]), float(ft.params[0, 2])
    x = (lo - 0.5 + (mx - lo + 1.0) * torch.rand(e, generator=g, dtype=torch.float64)).to(dtype)
    tid = torch.randint(0, ft.params.shape[0], (e,), generator=g)
    rows = torch.randn(e, k, generator=g, dtype=torch.float64).to(dtype)
    d_a = torch.randn(n_c, k, ft.ng, generator=g, dtype=torch.float64).to(dtype)

    xx, rr = x.clone().requires_grad_(True), rows.clone().requires_grad_(True)
    a = tn.numba_contract(xx, rr, center, tid, n_c, ft)
    dx, dr = torch.autograd.grad((a * d_a).sum(), (xx, rr))

    ft64 = tab.FlatTables(ft.rows.double(), ft.params, ft.offset)
    x64, r64 = x.double().requires_grad_(True), rows.double().requires_grad_(True)
    gx = tab.eval_table(x64, tid, ft64)  # differentiable in x through t and δ
    ref = torch.zeros(n_c, k, ft.ng, dtype=torch.float64).index_add(0, center, r64[:, :, None] * gx[:, None, :])
    rdx, rdr = torch.autograd.grad((ref * d_a.double()).sum(), (x64, r64))
    scale = float(ref.abs().max())
    assert a.dtype == dtype
    assert float((a.double() - ref).abs().max()) < tol * scale
    assert float((dx.double() - rdx).abs().max()) < tol * float(rdx.abs().max())
    assert float((dr.double() - rdr).abs().max()) < tol * float(rdr.abs().max())


def test_results_do_not_depend_on_threads():
    """Each center is summed in one order: 1, 2 and 3 threads give bit-identical A and gradients."""
    ft = _tables()
    g = torch.Generator().manual_seed(2)
    n_c = 300
    center = torch.sort(torch.randint(0, n_c, (30_000,), generator=g)).values
    x = -0.5 + 6 * torch.rand(center.shape[0], generator=g, dtype=torch.float64)
    tid = torch.randint(0, 2, center.shape, generator=g)
    rows = torch.randn(center.shape[0], 4, generator=g, dtype=torch.float64)
    out = []
    for n_threads in (1, 2, 3):
        xx, rr = x.clone().requires_grad_(True), rows.clone().requires_grad_(True)
        a = tn.numba_contract(xx, rr, center, tid, n_c, ft, n_threads=n_threads)
        out.append((a.detach(),) + torch.autograd.grad(a.square().sum(), (xx, rr)))
    for other in out[1:]:
        for u, v in zip(out[0], other):
            assert torch.equal(u, v)


@pytest.mark.parametrize("kind,kw", [("se_e2_a", {}), ("se_e2_a", {"type_one_side": True}), ("se_e2_r", {})])
def test_model_equals_eager_path(kind, kw, water):
    """The fused kernel from rij (environment rows, normalisation, tables, backward to rij) against
    the eager path, whose rows and their derivatives come from torch ops: energy, forces, virial."""
    model = compressed(kind, **kw)
    for f in (0, 9):
        tab.set_backend("eager")
        a = evaluate(model, *frame(water, f), PBC)
        tab.set_backend("numba")
        b = evaluate(model, *frame(water, f), PBC)
        assert abs(float(a["energy"] - b["energy"])) < 1e-12 * abs(float(a["energy"]))
        assert float((a["forces"] - b["forces"]).abs().max()) < 1e-12
        assert float((a["virial"] - b["virial"]).abs().max()) < 1e-11


def test_float32_model_equals_eager_path(water):
    model = compressed("se_e2_a", precision="float32")
    tab.set_backend("eager")
    a = evaluate(model, *frame(water), PBC)
    tab.set_backend("numba")
    b = evaluate(model, *frame(water), PBC)
    assert b["forces"].dtype == torch.float32
    assert abs(float(a["energy"] - b["energy"])) < 1e-5 * abs(float(a["energy"]))
    assert float((a["forces"] - b["forces"]).abs().max()) < 1e-4


def test_forces_equal_finite_differences_with_extrapolated_pair(water):
    """Forces of the numba path against central differences of its own energy, with one pair pushed
    below r_min (its s̃ beyond the table: linear extrapolation) and one near rcut_smth."""
    model = compressed("se_e2_a")
    tab.set_backend("numba")
    pos, types, cell = frame(water)
    pos = pos.copy()
    pos[1] = pos[0] + 0.6 * (pos[1] - pos[0]) / ((pos[1] - pos[0]) ** 2).sum() ** 0.5  # 0.6 Å < r_min
    out = evaluate(model, pos, types, cell, PBC)
    h = 1e-5
    for atom, axis in ((0, 0), (1, 2), (5, 1)):
        e = []
        for sgn in (1, -1):
            p = pos.copy()
            p[atom, axis] += sgn * h
            e.append(float(evaluate(model, p, types, cell, PBC, outputs=("energy",))["energy"]))
        fd = -(e[0] - e[1]) / (2 * h)
        assert abs(fd - float(out["forces"][atom, axis])) < 1e-6 * max(1.0, abs(fd))


def test_unsorted_edges_equal_sorted(water):
    """The descriptor sorts the edges by center itself: a shuffled environment gives the same descriptor
    and the same gradient with respect to each pair vector."""
    model = compressed("se_e2_a")
    tab.set_backend("numba")
    d = model.descriptor
    g = torch.Generator().manual_seed(0)
    e, n_c = 2000, 40
    center = torch.sort(torch.randint(0, n_c, (e,), generator=g)).values
    direction = torch.nn.functional.normalize(torch.randn(e, 3, generator=g, dtype=torch.float64), dim=1)
    rij = direction * (1.0 + 4.5 * torch.rand(e, 1, generator=g, dtype=torch.float64))
    ntype = torch.randint(0, 2, (e,), generator=g)
    ctypes = torch.randint(0, 2, (n_c,), generator=g)
    perm = torch.randperm(e, generator=g)
    sel = d.sel
    d.sel = torch.full_like(sel, e)  # no sel overflow check in the way
    try:
        out = []
        for order in (torch.arange(e), perm):
            r = rij[order].clone().requires_grad_(True)
            env = Environment(r, center[order], ntype[order], ctypes, 2)
            desc = d(env)
            (gr,) = torch.autograd.grad(desc.square().sum(), r)
            grad = torch.empty_like(gr)
            grad[order] = gr
            out.append((desc.detach(), grad))
    finally:
        d.sel = sel
    for u, v in zip(out[0], out[1]):  # the same sums in another order: equal to rounding
        assert float((u - v).abs().max()) < 1e-13 * float(u.abs().max())


def test_concurrent_calls_from_threads(water):
    """Two Python threads evaluating at once (an ASE calculator per thread) share the kernel pool safely."""
    model = compressed("se_e2_a")
    tab.set_backend("numba")
    ref = evaluate(model, *frame(water), PBC)["forces"]
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(evaluate(model, *frame(water), PBC)["forces"])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 6
    assert all(torch.equal(r, ref) for r in results)


def test_failing_kernel_falls_back_to_eager(water, monkeypatch, caplog):
    """A numba failure (an LLVM error, say) logs one warning and the torch path gives the same numbers."""
    model = compressed("se_e2_a")
    tab.set_backend("eager")
    a = evaluate(model, *frame(water), PBC)
    tab.set_backend("numba")

    def broken(*args, **kw):
        raise RuntimeError("LLVM ERROR today")

    monkeypatch.setattr(tn, "numba_env_contract", broken)
    with caplog.at_level("WARNING", logger="mlpot"):
        b = evaluate(model, *frame(water), PBC)
    assert any("numba table kernels failed" in r.message for r in caplog.records)
    assert tab.active_backend(torch.device("cpu")) == "eager"
    assert torch.equal(a["forces"], b["forces"])


def test_forked_child_evaluates(water):
    """After a fork (multiprocessing's default on Linux) the child makes its own kernel pool: a child
    process of a process that has already run the kernels gives the same forces."""
    import multiprocessing as mp

    model = compressed("se_e2_a")
    tab.set_backend("numba")
    ref = evaluate(model, *frame(water), PBC)["forces"]  # the pool exists now
    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def child():
        queue.put(evaluate(model, *frame(water), PBC)["forces"].numpy())

    p = ctx.Process(target=child)
    p.start()
    out = queue.get(timeout=120)
    p.join(timeout=60)
    assert p.exitcode == 0
    assert np.array_equal(out, ref.numpy())
