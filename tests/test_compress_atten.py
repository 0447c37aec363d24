"""Compression of se_atten / se_atten_v2 with attn_layer 0 and tebd_input_mode strip (issue 15
item 5): the geometric net N_s tabulated, the type-pair gate precomputed (DeePMD-kit's
``type_embd_data``); float64 energy, forces and virial equal to the uncompressed model to 1e-10 on
water and on several-element alloy frames; forces = finite differences of the compressed energy; the
model file and ``mlpot compress``; refusals of the variants that cannot be compressed.

References are independent of the code under test: the uncompressed model (padded per-slot
evaluation through the nets), DeePMD-kit's own numbers for an imported model, finite differences."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA
from mlpot import testing
from mlpot.cli import main
from mlpot.data import io
from mlpot.data.neighbor_stat import neighbor_stat
from mlpot.descriptors import tabulate as tab
from mlpot.errors import ModelError
from mlpot.export import load_model, read_model_file, save_model
from mlpot.model import evaluate
from mlpot.neighbors import neighbor_list

PBC = [True, True, True]
REF = Path(__file__).resolve().parent / "data" / "se_atten"
RCUT = 4.0


@pytest.fixture(autouse=True)
def _eager_tables():
    tab.set_backend("eager")
    yield
    tab.set_backend("auto")


def _system(name):
    path = DATA / "water" / "data_0" if name == "water" else DATA / "alloy_emt" / "AlCuAgAuNiPdPt_liquid"
    return io.read(path)[0]


@pytest.fixture(scope="module")
def systems():
    return {name: _system(name) for name in ("water", "alloy")}


def _pair(s, kind="se_atten_v2", **kw):
    """(uncompressed, compressed) tiny attn_layer-0 strip models with statistics from s's first frames."""
    kw.setdefault("attn_layer", 0)
    frames = s.read(slice(0, 2))
    ref = testing.tiny_model(kind, type_map=tuple(s.type_map), sel=(72,), rcut=RCUT, rcut_smth=1.0, tebd_dim=4,
                             attn=8, stats=[frames], **kw)
    r_min = neighbor_stat([frames], RCUT).min_dist
    cmp_ = copy.deepcopy(ref)
    cmp_.compress(float(r_min))
    assert cmp_.compressed and not ref.compressed
    return ref, cmp_


def _frame(s, f=0):
    return s.positions[f], s.atom_types, s.cells[f]


VARIANTS = [
    ("se_atten_v2", {}),
    ("se_atten_v2", {"type_one_side": True}),
    ("se_atten", {"tebd_input_mode": "strip", "smooth_type_embedding": True}),
    ("se_atten", {"tebd_input_mode": "strip"}),  # not smooth: the gate of empty slots counts
]


@pytest.mark.parametrize("name", ["water", "alloy"])
@pytest.mark.parametrize("kind,kw", VARIANTS)
def test_compressed_equals_uncompressed_float64(systems, name, kind, kw):
    s = systems[name]
    assert name == "water" or len(set(s.atom_types.tolist())) >= 5  # several elements
    ref, cmp_ = _pair(s, kind, **kw)
    assert cmp_.descriptor.compression["tables"]["geo"][3] > 100
    for f in (0, 1):
        a = evaluate(ref, *_frame(s, f), PBC)
        b = evaluate(cmp_, *_frame(s, f), PBC)
        assert abs(float(a["energy"] - b["energy"])) < 1e-10 * abs(float(a["energy"]))
        assert float((a["forces"] - b["forces"]).abs().max()) < 1e-10
        assert float((a["virial"] - b["virial"]).abs().max()) < 1e-10
        assert float(a["forces"].abs().max()) > 1e-3  # a real force field


def test_compressed_forces_and_virial_equal_finite_differences(systems):
    s = systems["alloy"]
    _, cmp_ = _pair(s)
    pos_t, cell_t = torch.tensor(s.positions[0]), torch.tensor(s.cells[0])
    nl = neighbor_list(pos_t, cell_t.reshape(1, 3, 3), torch.tensor([PBC]), cmp_.rcut + 0.5)
    out = evaluate(cmp_, pos_t, s.atom_types, cell_t, PBC, nl=nl)
    fn = testing.model_energy_fn(cmp_, s.atom_types, PBC, nl)
    testing.check_forces_fd(fn, out["forces"], pos_t, cell_t, [(0, 0), (3, 1), (11, 2), (20, 0)], rtol=1e-6)
    testing.check_virial_fd(fn, out["virial"].reshape(3, 3), pos_t, cell_t, [(0, 0), (0, 1), (2, 2)], rtol=1e-6)


def test_imported_deepmd_l0_model_compressed_matches_deepmd_kit():
    """A DeePMD-kit 3.2.0 se_atten_v2 attn_layer-0 model: compressed, it still gives DeePMD-kit's numbers."""
    from mlpot.interop.deepmd import import_deepmd

    case = REF / "v2_l0_one_side"
    model = import_deepmd(case / "model.dp", device="cpu")
    ref = np.load(case / "reference.npz")
    coord = ref["nopbc_coord"]
    nf, n = coord.shape[:2]
    d = np.linalg.norm(coord[:, :, None, :] - coord[:, None, :, :], axis=-1) + 1e9 * np.eye(n)
    model.compress(float(d.min()))
    out = evaluate(model, torch.tensor(coord.reshape(-1, 3)), torch.tensor(np.tile(ref["nopbc_atype"], nf)),
                   torch.zeros(nf, 3, 3, dtype=torch.float64), torch.zeros(nf, 3, dtype=torch.bool),
                   torch.arange(nf).repeat_interleave(n), outputs=("energy", "forces", "virial"))
    for key, got in (("energy", out["energy"]), ("force", out["forces"].reshape(nf, n, 3)), ("virial", out["virial"])):
        want = ref[f"nopbc_{key}"]
        assert np.abs(got.detach().numpy().reshape(want.shape) - want).max() < 1e-10 * max(1.0, np.abs(want).max()), key


def test_model_file_and_cli_round_trip(tmp_path, systems, capsys):
    s = systems["alloy"]
    ref, _ = _pair(s)
    src = save_model(ref, tmp_path / "m.pt")
    out = tmp_path / "m-c.pt"
    r_min = neighbor_stat([s.read(slice(0, 2))], RCUT).min_dist
    assert main(["compress", str(src), "-o", str(out), "--min-distance", f"{r_min:.6f}"]) == 0
    assert "max deviation table vs net" in capsys.readouterr().out
    tensors, meta = read_model_file(out)
    assert set(meta["compression"]["tables"]) == {"geo"}
    n1 = len(s.type_map) + 1
    assert tensors["descriptor.type_embd_data"].shape == (n1 * n1, 16)
    assert "descriptor.embedding_net.layers.0.matrix" in tensors  # the original weights are kept
    back = load_model(out, device="cpu")  # the tables are used with no option
    assert back.compressed
    a, b = evaluate(ref, *_frame(s), PBC), evaluate(back, *_frame(s), PBC)
    assert float((a["forces"] - b["forces"]).abs().max()) < 1e-10
    assert abs(float(a["energy"] - b["energy"])) < 1e-10 * abs(float(a["energy"]))


@pytest.mark.parametrize("kind,kw,match", [
    ("se_atten_v2", {"attn_layer": 1}, "se_atten_v2 with attn_layer 1 cannot be compressed (attention layers act on the whole neighbor set)"),
    ("se_atten", {"attn_layer": 0}, "se_atten with tebd_input_mode 'concat' cannot be compressed"),
])
def test_cli_refuses_attention_and_concat(tmp_path, capsys, systems, kind, kw, match):
    s = systems["water"]
    model = testing.tiny_model(kind, type_map=tuple(s.type_map), sel=(72,), rcut=RCUT, tebd_dim=4, attn=8, **kw)
    src = save_model(model, tmp_path / "m.pt")
    out = tmp_path / "out.pt"
    assert main(["compress", str(src), "-o", str(out), "--min-distance", "0.9"]) == 2
    err = capsys.readouterr().err
    assert match in err and "DeePMD-kit" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("out*"))
    with pytest.raises(ModelError, match="cannot be compressed"):
        model.compress(0.9)
    assert not model.compressed


def test_compressed_refuses_training_and_second_derivatives(systems):
    s = systems["water"]
    _, cmp_ = _pair(s)
    with pytest.raises(ModelError, match="second derivatives"):
        evaluate(cmp_, *_frame(s), PBC, create_graph=True)
    cmp_.train()
    with pytest.raises(ModelError, match="cannot be trained"):
        evaluate(cmp_, *_frame(s), PBC)


def test_compressed_float32_and_chunked(systems):
    s = systems["alloy"]
    ref, cmp_ = _pair(s, "se_atten_v2", precision="float32")
    assert cmp_.descriptor.compress_data_geo.dtype == torch.float32 and cmp_.descriptor.type_embd_data.dtype == torch.float32
    a, b = evaluate(ref, *_frame(s), PBC), evaluate(cmp_, *_frame(s), PBC)
    assert abs(float(a["energy"] - b["energy"])) < 1e-4 * abs(float(a["energy"]))
    assert float((a["forces"] - b["forces"]).abs().max()) < 1e-4 * max(1.0, float(a["forces"].abs().max()))
    # chunks of centers (the empty-slot type is the frame's first atom in every chunk): same numbers
    ref, cmp_ = _pair(s, "se_atten", tebd_input_mode="strip")
    a = evaluate(ref, *_frame(s), PBC)
    b = evaluate(cmp_, *_frame(s), PBC, chunk_atoms=7)
    assert float((a["forces"] - b["forces"]).abs().max()) < 1e-10
    assert float((a["virial"] - b["virial"]).abs().max()) < 1e-10


def test_gated_kernel_path_math_and_backward_fallback(systems, monkeypatch, caplog):
    """The compile back-end's gated kernels, run uncompiled (plain torch ops), equal the eager
    evaluation; a failing backward kernel falls back to the eager backward."""
    s = systems["alloy"]
    _, cmp_ = _pair(s, "se_atten", tebd_input_mode="strip", smooth_type_embedding=True)
    try:
        tab.set_backend("eager")
        a = evaluate(cmp_, *_frame(s), PBC)
        monkeypatch.setitem(tab._BACKEND, "gated_kernels", (tab._kernel_forward_gated, tab._kernel_backward_gated))
        tab.set_backend("compile")
        b = evaluate(cmp_, *_frame(s), PBC)
        assert tab.active_backend(torch.device("cpu")) == "compile"
        assert abs(float(a["energy"] - b["energy"])) < 1e-12 * abs(float(a["energy"]))
        assert float((a["forces"] - b["forces"]).abs().max()) < 1e-13
        assert float((a["virial"] - b["virial"]).abs().max()) < 1e-12

        def broken_backward(*args):
            raise RuntimeError("inductor failed")

        monkeypatch.setitem(tab._BACKEND, "gated_kernels", (tab._kernel_forward_gated, broken_backward))
        with caplog.at_level("WARNING", logger="mlpot"):
            c = evaluate(cmp_, *_frame(s), PBC)
        assert tab.active_backend(torch.device("cpu")) == "eager"
        assert float((a["forces"] - c["forces"]).abs().max()) < 1e-13
    finally:
        tab.set_backend("auto")


@pytest.mark.slow
def test_compiled_gated_kernels_equal_eager(systems):
    """torch.compile of the gated kernels (needs a C++ compiler) gives the eager results."""
    if not tab.compiler_available(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile")
    s = systems["water"]
    _, cmp_ = _pair(s)
    try:
        tab.set_backend("eager")
        a = evaluate(cmp_, *_frame(s), PBC)
        tab.set_backend("compile")
        b = evaluate(cmp_, *_frame(s), PBC)
        assert tab.active_backend(torch.device("cpu")) == "compile"
    finally:
        tab.set_backend("auto")
    assert torch.allclose(a["energy"], b["energy"], rtol=1e-13, atol=0)
    assert float((a["forces"] - b["forces"]).abs().max()) < 1e-12
    assert float((a["virial"] - b["virial"]).abs().max()) < 1e-12


@pytest.mark.parametrize("backend", ["eager", "compile"])
def test_gated_contract_many_blocks_equals_gather_reference(systems, backend):
    """The gated table op over many blocks of centers (a block boundary in every few centers, centers
    without edges) against the plain gather: A = Σ R̃ ⊗ [G(s̃) ⊙ (1 + sw·T[pair])] and its gradients in
    s̃, R̃ and sw. (The eager path once padded the gate of every block after the first wrongly.)"""
    if backend == "compile" and not tab.compiler_available(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile")
    _, cmp_ = _pair(systems["water"])
    ft = cmp_.descriptor.flat_tables()
    t_rows = cmp_.descriptor.type_embd_data
    g = torch.Generator().manual_seed(4)
    counts = torch.tensor([0, 6, 1, 0, 9, 3, 0, 5, 2, 0, 7])
    n_c = int(counts.shape[0])
    center = torch.repeat_interleave(torch.arange(n_c), counts)
    e = int(center.shape[0])
    lo, up = float(ft.params[0, 0]), float(ft.params[0, 1])
    x = lo + (up - lo) * torch.rand(e, generator=g, dtype=torch.float64)
    tid = torch.zeros(e, dtype=torch.long)
    rows = torch.randn(e, 4, generator=g, dtype=torch.float64)
    pair = torch.randint(0, t_rows.shape[0], (e,), generator=g)
    sw = torch.rand(e, generator=g, dtype=torch.float64)
    d_a = torch.randn(n_c, 4, ft.ng, generator=g, dtype=torch.float64)

    def grads(fn):
        xx, rr, ss = (v.clone().requires_grad_(True) for v in (x, rows, sw))
        a = fn(xx, rr, ss)
        return (a.detach(),) + torch.autograd.grad((a * d_a).sum(), (xx, rr, ss))

    tab.set_backend(backend)
    out = grads(lambda xx, rr, ss: tab.tabulated_contract(xx, rr, center, tid, n_c, ft, block_edges=8, gate=(t_rows, pair, ss)))
    ref = grads(lambda xx, rr, ss: torch.zeros(n_c, 4, ft.ng, dtype=torch.float64).index_add(
        0, center, rr[:, :, None] * (tab.eval_table(xx, tid, ft) * (1 + ss[:, None] * t_rows[pair]))[:, None, :]))
    for u, v in zip(out, ref):
        assert float((u - v).abs().max()) < 1e-12 * max(1.0, float(v.abs().max()))
