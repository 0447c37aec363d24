"""Chunked evaluation (``mlpot.model.evaluate(..., chunk_atoms=...)``, create_graph=False).

References: the one-pass evaluation (``chunk_atoms=0``, itself checked against finite differences in
tests/test_model.py) to 1e-12 relative in float64, and central finite differences of the energy for
the forces of a chunked evaluation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlpot.model as model_mod
from mlpot.errors import ModelError
from mlpot.model import evaluate
from mlpot.neighbors import NeighborList, neighbor_list

RC = 3.0
KEYS = ("energy", "atom_energy", "forces", "virial", "atom_virial")


#: the hyperparameters of this file's models: every pair inside sel, statistics drawn per entry
#: (``gaussian``, seed 5) and a per-type energy bias, so that the padding terms matter
C = dict(rcut=RC, rcut_smth=0.8, sel=(80, 80), neuron=(4, 8), fitting=(8, 8), axis_neuron=3, seed=1, fitting_seed=2,
         resnet_dt=False, stats="gaussian", stats_seed=5, energy_bias=(-3.0, -1.5))


def _batch():
    """Two frames: 30 atoms in a sheared 6.5 Å box, and 11 atoms in a small cell with edges of 2.8-2.9 Å
    (shorter than rcut = 3 Å: every atom sees periodic images of itself and of its neighbors)."""
    rng = np.random.default_rng(11)
    cells = np.array([
        [[6.5, 0.0, 0.0], [0.8, 6.3, 0.0], [0.3, -0.5, 6.6]],
        [[2.9, 0.0, 0.0], [0.0, 2.8, 0.0], [0.3, 0.0, 2.85]],
    ])
    n = [30, 11]
    pos = np.concatenate([rng.random((k, 3)) @ c for k, c in zip(n, cells)])
    types = np.concatenate([rng.integers(0, 2, k) for k in n])
    fidx = np.repeat(np.arange(2), n)
    return (torch.tensor(pos), torch.tensor(types), torch.tensor(cells), torch.ones(2, 3, dtype=torch.bool),
            torch.tensor(fidx))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _check_same(out: dict, ref: dict, tol: float = 1e-12) -> None:
    assert set(out) == set(ref)
    for k in ref:
        assert out[k].shape == ref[k].shape, k
        assert _rel(out[k], ref[k]) < tol, (k, _rel(out[k], ref[k]))


@pytest.fixture(scope="module")
def batch():
    return _batch()


@pytest.mark.parametrize("kind,tos", [("se_e2_a", True), ("se_e2_a", False), ("se_e2_r", True)])
def test_chunks_equal_one_pass(tiny_model, batch, kind, tos):
    m = tiny_model(kind, type_one_side=tos, **C)
    pos, types, cells, pbc, fidx = batch
    with torch.no_grad():
        ref = evaluate(m, pos, types, cells, pbc, fidx, outputs=KEYS, chunk_atoms=0)
        assert torch.all(ref["virial"].abs().sum(dim=(1, 2)) > 0)
        # 1 atom per chunk; 7 and 25 cross the frame boundary at atom 30; 40 leaves a 1-atom chunk
        for chunk in (1, 7, 25, 40):
            _check_same(evaluate(m, pos, types, cells, pbc, fidx, outputs=KEYS, chunk_atoms=chunk), ref)


def test_unsorted_pair_list_and_skin_pairs(tiny_model, batch):
    """Pairs in random order and pairs beyond rcut (Verlet skin) give the same result."""
    m = tiny_model(type_one_side=True, **C)
    pos, types, cells, pbc, fidx = batch
    nl = neighbor_list(pos, cells, pbc, RC + 0.7, fidx)
    assert bool((nl.centers == nl.neighbors).any())  # periodic self-images in the small cell
    perm = torch.randperm(nl.centers.shape[0], generator=torch.Generator().manual_seed(0))
    shuffled = NeighborList(*(t[perm] for t in nl))
    with torch.no_grad():
        ref = evaluate(m, pos, types, cells, pbc, fidx, outputs=KEYS, chunk_atoms=0)
        out = evaluate(m, pos, types, cells, pbc, fidx, nl=shuffled, outputs=KEYS, chunk_atoms=6)
    _check_same(out, ref)


def test_chunked_forces_finite_differences(tiny_model):
    m = tiny_model(type_one_side=True, **C)
    pos, types, cells, pbc, fidx = _batch()
    f = evaluate(m, pos, types, cells, pbc, fidx, chunk_atoms=4)["forces"]
    h = 1e-5
    for atom, d in [(0, 0), (17, 2), (29, 1), (31, 0), (40, 2)]:
        e = []
        for s in (h, -h):
            p = pos.clone()
            p[atom, d] += s
            with torch.no_grad():
                e.append(float(evaluate(m, p, types, cells, pbc, fidx, outputs=("energy",), chunk_atoms=4)["energy"].sum()))
        assert abs(-(e[0] - e[1]) / (2 * h) - float(f[atom, d])) < 1e-7


def test_n_centers_chunked(tiny_model, batch):
    """Only the first n atoms carry energy (ghost-atom path): chunks over [0, n) only."""
    m = tiny_model(type_one_side=True, **C)
    pos, types, cells, _, fidx = batch
    pos, types = pos[:30], types[:30]  # frame 0 as a non-periodic cluster
    zero, nopbc = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.bool)
    with torch.no_grad():
        ref = evaluate(m, pos, types, zero, nopbc, n_centers=19, outputs=KEYS, chunk_atoms=0)
        assert ref["atom_energy"].shape == (19,) and ref["forces"].shape == (30, 3)
        for chunk in (1, 5, 18):
            _check_same(evaluate(m, pos, types, zero, nopbc, n_centers=19, outputs=KEYS, chunk_atoms=chunk), ref)
    with pytest.raises(ModelError, match="n_centers"):
        evaluate(m, pos, types, zero, nopbc, n_centers=31, chunk_atoms=5)


def test_default_chunk_from_pair_budget(tiny_model, batch, monkeypatch):
    """chunk_atoms=None: chunks of budget // (pairs per center) atoms (a small budget forces chunks)."""
    m = tiny_model(type_one_side=True, **C)
    pos, types, cells, pbc, fidx = batch
    calls = []
    real = model_mod._evaluate_chunked

    def spy(*args, **kwargs):
        calls.append(args[7])  # the chunk boundaries
        return real(*args, **kwargs)

    monkeypatch.setattr(model_mod, "_evaluate_chunked", spy)
    monkeypatch.setattr(model_mod, "CHUNK_PAIRS_CPU", 100)
    with torch.no_grad():
        out = evaluate(m, pos, types, cells, pbc, fidx, outputs=KEYS)
        n_pairs = neighbor_list(pos, cells, pbc, RC, fidx).centers.shape[0]
        ref = evaluate(m, pos, types, cells, pbc, fidx, outputs=KEYS, chunk_atoms=0)
    chunk = max(1, 100 * 41 // n_pairs)
    # the default chunks, then chunk_atoms=0: one pass is the single-chunk case
    assert calls == [list(range(0, 41, chunk)) + [41], [0, 41]] and len(calls[0]) > 2
    _check_same(out, ref)


def test_create_graph_is_not_chunked(tiny_model, batch, monkeypatch):
    """create_graph=True (force training) takes the one-pass path: forces stay differentiable."""
    m = tiny_model(type_one_side=True, **C)
    pos, types, cells, pbc, fidx = batch

    real = model_mod._evaluate_chunked

    def one_chunk_only(*args, **kwargs):
        if args[7] != [0, 41]:
            raise AssertionError(f"chunked path used with create_graph=True: chunks {args[7]}")
        return real(*args, **kwargs)

    plain = evaluate(m, pos, types, cells, pbc, fidx, outputs=KEYS, chunk_atoms=3)
    monkeypatch.setattr(model_mod, "_evaluate_chunked", one_chunk_only)
    out = evaluate(m, pos, types, cells, pbc, fidx, outputs=KEYS, create_graph=True, chunk_atoms=3)
    assert out["forces"].requires_grad and out["virial"].requires_grad
    _check_same({k: v.detach() for k, v in out.items()}, plain)
    loss = (out["forces"] ** 2).sum() + (out["virial"] ** 2).sum()
    grads = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_energy_only_keeps_graph_when_grad_enabled(tiny_model, batch):
    """outputs=("energy",) with autograd on: chunked energies stay differentiable in the parameters,
    with the same gradient as the one-pass evaluation."""
    m = tiny_model(type_one_side=True, **C)
    pos, types, cells, pbc, fidx = batch
    params = [p for p in m.parameters() if p.requires_grad]

    def grads(chunk):
        e = evaluate(m, pos, types, cells, pbc, fidx, outputs=("energy",), chunk_atoms=chunk)["energy"]
        return e.detach(), torch.autograd.grad(e.sum(), params)

    e0, g0 = grads(0)
    e1, g1 = grads(9)
    assert _rel(e1, e0) < 1e-12
    for a, b in zip(g1, g0):
        assert _rel(a, b) < 1e-11


def test_center_range_energies(tiny_model, batch):
    """energy_from_edges(center_range=...) over a partition of the atoms sums to the full energy."""
    m = tiny_model(type_one_side=True, **C)
    pos, types, cells, pbc, fidx = batch
    nl = neighbor_list(pos, cells, pbc, RC, fidx)
    with torch.no_grad():
        full = m(pos, types, cells, fidx, *nl, 2)
        parts = [m(pos, types, cells, fidx, *nl, 2, center_range=r) for r in [(0, 13), (13, 32), (32, 41)]]
    assert _rel(sum(p["energy"] for p in parts), full["energy"]) < 1e-13
    assert _rel(torch.cat([p["atom_energy"] for p in parts]), full["atom_energy"]) < 1e-13
    with pytest.raises(ModelError, match="center_range"):
        m(pos, types, cells, fidx, *nl, 2, center_range=(5, 42))
    with pytest.raises(ModelError, match="one or the other"):
        m(pos, types, cells, fidx, *nl, 2, n_centers=3, center_range=(0, 3))


def test_overflow_message_and_bad_chunk(tiny_model, batch):
    """The sel-overflow error names the same frame and atom with and without chunks (here an atom of
    frame 1, i.e. inside a chunk that does not start at atom 0)."""
    pos, types, cells, pbc, fidx = batch
    m = tiny_model(type_one_side=True, **C)
    nl = neighbor_list(pos, cells, pbc, RC, fidx)
    counts = m.descriptor.neighbor_counts(nl.centers, types[nl.neighbors], 41)  # sel is large enough here
    sel = counts[:30].max(dim=0).values  # enough for frame 0, too small for the denser frame 1
    assert bool((counts[30:] > sel).any())
    m.descriptor.sel_list = [int(v) for v in sel]
    m.descriptor.sel.copy_(sel)
    msgs = []
    for chunk in (0, 1, 4, 7):
        with pytest.raises(ModelError, match="neighbor overflow: frame 1") as exc:
            evaluate(m, pos, types, cells, pbc, fidx, chunk_atoms=chunk)
        msgs.append(str(exc.value))
    assert len(set(msgs)) == 1, msgs
    with pytest.raises(ModelError, match="chunk_atoms"):
        evaluate(tiny_model(type_one_side=True, **C), pos, types, cells, pbc, fidx, chunk_atoms=-1)
