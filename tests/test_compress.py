"""Model compression (issue 14): tables vs the nets they replace, the compressed model vs the
uncompressed one (float64 to 1e-10, float32 to 1e-4), forces vs finite differences of the compressed
energy, continuity across intervals and at the table ends, the model file, ``mlpot compress`` and its
refusals, NVE energy conservation, the trainer's min_nbor_dist record.

References are independent of the code under test: the embedding nets themselves (autograd for
their slopes), the uncompressed model, finite differences."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from conftest import DATA, ROOT
from mlpot import testing
from mlpot.cli import main
from mlpot.data import io
from mlpot.descriptors import tabulate as tab
from mlpot.errors import ConfigError, ModelError
from mlpot.export import load_model, read_model_file, save_model
from mlpot.model import evaluate
from mlpot.neighbors import neighbor_list

PBC = [True, True, True]
R_MIN = 0.88  # Å, a little below the bundled water's shortest pair (0.8854 Å)


@pytest.fixture(autouse=True)
def _numba_tables():
    """The numba kernels (what "auto" takes on CPU) unless a test chooses; "numba" never switches to
    torch.compile after 50 calls (a compile time the suite need not pay; the compiled kernels have
    their own tests), and the eager path is checked against it in tests/test_compress_numba.py."""
    tab.set_backend("numba")
    yield
    tab.set_backend("auto")


@pytest.fixture(scope="module")
def water():
    s = io.read(DATA / "water" / "data_0")[0]
    return s


def frame(s, f=0):
    return s.positions[f], s.atom_types, s.cells[f]


def compressed_pair(kind="se_e2_a", precision="float64", **kw):
    """(uncompressed, compressed) tiny models with water statistics."""
    s = io.read(DATA / "water" / "data_0")[0]
    ref = testing.tiny_model(kind, precision=precision, stats=[s.read(slice(0, 3))], **kw)
    import copy

    cmp_ = copy.deepcopy(ref)
    cmp_.compress(R_MIN)
    return ref, cmp_


# ------------------------------------------------------------------------------------------ tables
def _net_and_table(step=0.01, extrapolate=5.0, neuron=(8, 16, 32), resnet_dt=True):
    from mlpot.nn import EmbeddingNet

    g = torch.Generator().manual_seed(3)
    net = EmbeddingNet(1, list(neuron), "tanh", resnet_dt, torch.float64, g)
    data, info = tab.build_table(net, -1.0, 6.0, extrapolate, step, 10 * step)
    ft = tab.flat_tables([data], [info], torch.float64, torch.device("cpu"))
    return net, ft, info


def _net_g_dg(net, x):
    xg = x.clone().requires_grad_(True)
    y = net(xg[:, None])
    dy = torch.stack([torch.autograd.grad(y[:, c].sum(), xg, retain_graph=True)[0] for c in range(y.shape[1])], 1)
    return y.detach(), dy


def test_table_matches_net_both_strides():
    net, ft, info = _net_and_table()
    lo, up, mx = float(info[0]), float(info[1]), float(info[2])
    assert (lo, up, mx) == (-1.0, 6.0, 30.0)
    g = torch.Generator().manual_seed(0)
    for a, b, tol_g, tol_d in ((lo, up, 1e-13, 1e-10), (up, mx, 1e-11, 1e-8)):
        x = a + (b - a) * torch.rand(3000, generator=g, dtype=torch.float64)
        ids = torch.zeros(3000, dtype=torch.long)
        y, dy = _net_g_dg(net, x)
        assert (tab.eval_table(x, ids, ft) - y).abs().max() < tol_g
        assert (tab.eval_table(x, ids, ft, derivative=True) - dy).abs().max() < tol_d


def test_grid_and_size_match_deepmd_rule():
    # DeePMD-kit's grid: arange(lower, upper, s0) + arange(upper, e*upper, s1) + [e*upper]; the water
    # example (lower -1, upper 9, s0 0.01, e 5) has 1,000 + 360 = 1,360 intervals
    xx, nspline = tab.table_grid(-1.0, 9.0, 5.0, 0.01, 0.1)
    assert nspline == 1360 and xx.shape == (1361,)
    assert xx[0] == -1.0 and xx[-1] == 45.0 and abs(xx[1000] - 9.0) < 1e-12
    lower, upper = tab.env_range(np.array([0.0504]), np.array([0.1398]), 0.8925, 0.5, 6.0)
    assert (lower[0], upper[0]) == (-1.0, 8.0)


def test_continuity_across_intervals_and_table_ends():
    net, ft, info = _net_and_table()
    lo, up, mx = float(info[0]), float(info[1]), float(info[2])
    ids = torch.zeros(1, dtype=torch.long)
    nodes = [lo + 0.37, lo + 1.0, up, up + 0.5, mx]  # interior nodes of both tables, the table joint, the end
    eps = 1e-9
    for x0 in nodes:
        xl = torch.tensor([x0 - eps], dtype=torch.float64)
        xr = torch.tensor([x0 + eps], dtype=torch.float64)
        gl, gr = tab.eval_table(xl, ids, ft), tab.eval_table(xr, ids, ft)
        dl, dr = tab.eval_table(xl, ids, ft, True), tab.eval_table(xr, ids, ft, True)
        scale_d = float(dl.abs().max()) + 1.0
        assert (gl - gr).abs().max() < 1e-8 * scale_d, x0  # C0 (the jump is ~ 2 eps · slope)
        assert (dl - dr).abs().max() < 1e-6 * scale_d, x0  # C1
    # beyond the end and below the start: straight lines with the end slopes (C1 linear extrapolation)
    for x0, sgn in ((mx, 1.0), (lo, -1.0)):
        xs = torch.tensor([x0, x0 + sgn * 0.5, x0 + sgn * 3.0], dtype=torch.float64)
        g = tab.eval_table(xs, torch.zeros(3, dtype=torch.long), ft)
        d = tab.eval_table(xs, torch.zeros(3, dtype=torch.long), ft, True)
        assert torch.allclose(g[1], g[0] + sgn * 0.5 * d[0], atol=1e-12)
        assert torch.allclose(g[2], g[0] + sgn * 3.0 * d[0], atol=1e-11)
        assert torch.allclose(d[2], d[0], atol=1e-12)


def test_fused_contraction_equals_reference_and_its_gradients():
    net, ft, info = _net_and_table()
    g = torch.Generator().manual_seed(1)
    e, n = 700, 23
    center = torch.randint(0, n, (e,), generator=g)
    x = (-1.5 + 40 * torch.rand(e, generator=g, dtype=torch.float64) ** 3).requires_grad_(True)  # both tables and beyond
    r = torch.randn(e, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.zeros(e, dtype=torch.long)
    w = torch.randn(n, 4, 32, generator=g, dtype=torch.float64)
    out = tab.tabulated_contract(x, r, center, ids, n, ft, block_edges=97)  # many blocks
    gx, gr = torch.autograd.grad((out * w).sum(), (x, r))
    ref = torch.zeros(n, 4, 32, dtype=torch.float64).index_add(0, center, r[:, :, None] * tab.eval_table(x, ids, ft)[:, None, :])
    rx, rr = torch.autograd.grad((ref * w).sum(), (x, r))
    assert torch.allclose(out, ref, atol=1e-13, rtol=0)
    assert torch.allclose(gx, rx, atol=1e-11, rtol=0) and torch.allclose(gr, rr, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------ model level
@pytest.mark.parametrize("kind,kw", [("se_e2_a", {}), ("se_e2_a", {"type_one_side": True}), ("se_e2_r", {})])
def test_compressed_equals_uncompressed_float64(kind, kw, water):
    ref, cmp_ = compressed_pair(kind, **kw)
    for f in (0, 7):
        a = evaluate(ref, *frame(water, f), PBC)
        b = evaluate(cmp_, *frame(water, f), PBC)
        assert abs(float(a["energy"] - b["energy"])) < 1e-10 * abs(float(a["energy"]))
        assert float((a["forces"] - b["forces"]).abs().max()) < 1e-10
        assert float((a["virial"] - b["virial"]).abs().max()) < 1e-10
        fmax = float(a["forces"].abs().max())
        assert fmax > 1e-3  # a real force field, not zeros
        assert float((a["forces"] - b["forces"]).abs().max()) < 1e-9 * fmax  # relative to the field, too


def test_compressed_equals_uncompressed_float32(water):
    ref, cmp_ = compressed_pair("se_e2_a", precision="float32")
    assert cmp_.descriptor.compress_data_0_0.dtype == torch.float32
    a = evaluate(ref, *frame(water), PBC)
    b = evaluate(cmp_, *frame(water), PBC)
    assert abs(float(a["energy"] - b["energy"])) < 1e-4 * abs(float(a["energy"]))
    assert float((a["forces"] - b["forces"]).abs().max()) < 1e-4 * max(1.0, float(a["forces"].abs().max()))


def test_trained_water_model_compressed_equals_uncompressed(tmp_path, water, capsys):
    """The shipped trained model (data/models, ng 64, rcut 6 Å) through `mlpot compress`."""
    src = DATA / "models" / "water_se_e2_a.pt"
    out = tmp_path / "c.pt"
    assert main(["compress", str(src), "-o", str(out), "--min-distance", "0.8854"]) == 0
    ref, cmp_ = load_model(src, device="cpu"), load_model(out, device="cpu")
    assert cmp_.compressed and not ref.compressed
    system = io.read(DATA / "water" / "data_3")[0]
    for f in (0, 1):
        a = evaluate(ref, *frame(system, f), PBC)
        b = evaluate(cmp_, *frame(system, f), PBC)
        assert abs(float(a["energy"] - b["energy"])) < 1e-10 * abs(float(a["energy"]))
        assert float((a["forces"] - b["forces"]).abs().max()) < 1e-10
        assert float((a["virial"] - b["virial"]).abs().max()) < 1e-10
    # `mlpot test` uses the tables with no option, and reports the same errors as the uncompressed model
    lines = []
    for m in (src, out):
        assert main(["test", "-m", str(m), "-s", str(DATA / "water" / "data_3"), "-n", "2", "-q", "--device", "cpu"]) == 0
        lines.append([ln for ln in capsys.readouterr().out.splitlines() if "RMSE" in ln])
    assert lines[0] and lines[0] == lines[1]


def test_compressed_forces_equal_finite_differences():
    ref, cmp_ = compressed_pair("se_e2_a")
    s = io.read(DATA / "water" / "data_0")[0]
    keep = 48
    pos, types, cell = s.positions[0][:keep], s.atom_types[:keep], s.cells[0]
    pos_t, cell_t = torch.tensor(pos), torch.tensor(cell)
    nl = neighbor_list(pos_t, cell_t.reshape(1, 3, 3), torch.tensor([PBC]), cmp_.rcut + 0.5)
    f = evaluate(cmp_, pos_t, types, cell_t, PBC, nl=nl)["forces"]
    testing.check_forces_fd(testing.model_energy_fn(cmp_, types, PBC, nl), f, pos_t, cell_t,
                            [(0, 0), (5, 2), (20, 1), (33, 0), (47, 2)], rtol=1e-6)


def test_close_pair_uses_extrapolation_smoothly():
    """Two atoms much closer than min_nbor_dist × … : beyond the table the embedding is linear, the
    energy stays differentiable (forces = −dE/dr by finite differences) and the counter warns."""
    ref, _ = compressed_pair("se_e2_a")
    cmp_ = ref
    cmp_.compress(2.5, check_frequency=1)  # table range from 2.5 Å: a 0.3 Å pair lies far beyond 5×upper
    pos = np.array([[0.0, 0.0, 0.0], [0.3, 0.1, 0.0], [1.2, 0.9, 0.4]])
    types = np.array([0, 1, 1])
    cell = np.zeros((3, 3))
    pos_t = torch.tensor(pos)
    with pytest.warns(UserWarning, match="beyond the tables"):
        f = evaluate(cmp_, pos_t, types, cell_t := torch.tensor(cell), [False] * 3)["forces"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        testing.check_forces_fd(testing.model_energy_fn(cmp_, types, [False] * 3), f, pos_t, cell_t,
                                [(0, 0), (1, 1), (2, 2)], h=1e-4, rtol=1e-5)


def test_nve_energy_conserved_as_uncompressed():
    from ase import Atoms, units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    import mlpot

    s = io.read(DATA / "water" / "data_0")[0]
    drifts = {}
    for name, model in zip(("ref", "cmp"), compressed_pair("se_e2_a", type_one_side=True)):
        atoms = Atoms(symbols=s.symbols, positions=s.positions[0], cell=s.cells[0], pbc=True)
        atoms.calc = mlpot.DeepPotCalculator(model=model, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
        Stationary(atoms)
        dyn = VelocityVerlet(atoms, 0.5 * units.fs)
        e: list[float] = []
        dyn.attach(lambda: e.append(atoms.get_total_energy() / len(atoms)), interval=1)
        dyn.run(40)
        e_arr = np.asarray(e)
        drifts[name] = (np.abs(e_arr - e_arr[0]).max(), e_arr)
    (dev_ref, e_ref), (dev_cmp, e_cmp) = drifts["ref"], drifts["cmp"]
    assert dev_cmp < 2 * dev_ref + 1e-9  # conserved as well as the uncompressed model
    assert np.abs(e_cmp - e_ref).max() < 1e-9  # and the same trajectory (tables exact to ~1e-12)


# ------------------------------------------------------------------------------------------ file + CLI
def test_model_file_records_compression_and_round_trips(tmp_path, water):
    ref, cmp_ = compressed_pair("se_e2_a")
    p = save_model(cmp_, tmp_path / "c.pt")
    tensors, meta = read_model_file(p)  # weights-only, checksummed
    rec = meta["compression"]
    assert rec["step"] == 0.01 and rec["extrapolate"] == 5.0 and rec["min_nbor_dist"] == R_MIN
    assert meta["min_nbor_dist"] == R_MIN
    assert set(rec["tables"]) == {"0_0", "0_1", "1_0", "1_1"}
    assert tensors["descriptor.compress_data_0_0"].shape == (rec["tables"]["0_0"][3], 6 * 16)
    assert "descriptor.embeddings.0_0.layers.0.matrix" in tensors  # the original weights are kept
    back = load_model(p, device="cpu")
    assert back.compressed
    a, b = evaluate(cmp_, *frame(water), PBC), evaluate(back, *frame(water), PBC)
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])


def test_cli_compress_prints_size_and_deviation(tmp_path, capsys):
    ref, _ = compressed_pair("se_e2_r")
    src = save_model(ref, tmp_path / "m.pt")
    out = tmp_path / "m-c.pt"
    rc = main(["compress", str(src), "-o", str(out), "--min-distance", "0.9", "--step", "0.02",
               "-s", str(DATA / "water" / "data_0")])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    assert "MiB" in text and "max deviation table vs net" in text and "|dF|" in text
    assert json.loads(json.dumps(read_model_file(out)[1]["compression"]))["step"] == 0.02


@pytest.mark.parametrize("extra,match", [
    (["--step", "0"], "positive table stride"),
    (["--step", "-0.01"], "positive table stride"),
    (["--extrapolate", "0.5"], "factor >= 1"),
    (["--min-distance", "7"], "minimum neighbor distance"),
    ([], "records no minimum neighbor distance"),
])
def test_cli_refuses_bad_input(tmp_path, capsys, extra, match):
    ref, _ = compressed_pair("se_e2_a")
    ref.min_nbor_dist = None  # as a model trained before mlpot recorded it
    src = save_model(ref, tmp_path / "m.pt")
    out = tmp_path / "out.pt"
    rc = main(["compress", str(src), "-o", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists() and not list(tmp_path.glob("out*"))
    assert match in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_compressed_and_uncompressible(tmp_path, capsys, monkeypatch):
    _, cmp_ = compressed_pair("se_e2_a")
    src = save_model(cmp_, tmp_path / "c.pt")
    out = tmp_path / "out.pt"
    assert main(["compress", str(src), "-o", str(out)]) == 2
    assert "already compressed" in capsys.readouterr().err and not out.exists()
    ref, _ = compressed_pair("se_e2_a")
    src2 = save_model(ref, tmp_path / "m.pt")
    from mlpot.descriptors.se_e2_a import DescriptorSeA

    monkeypatch.setattr(DescriptorSeA, "compress", None)  # a descriptor without tables
    assert main(["compress", str(src2), "-o", str(out), "--min-distance", "1.0"]) == 2
    assert "cannot be compressed" in capsys.readouterr().err and not out.exists()


def test_compressed_model_refuses_training(tmp_path):
    _, cmp_ = compressed_pair("se_e2_a")
    cmp_.train()
    s = io.read(DATA / "water" / "data_0")[0]
    with pytest.raises(ModelError, match="cannot be trained"):
        evaluate(cmp_, *frame(s), PBC)
    from mlpot.train import checkpoint

    p = save_model(cmp_.eval(), tmp_path / "c.pt")
    with pytest.raises(ModelError, match="compressed model"):
        checkpoint.read_weights(p)


def test_check_parameters_errors_are_config_errors():
    with pytest.raises(ConfigError, match="stride"):
        tab.check_parameters(0.0, 5.0, 1.0, 6.0)
    with pytest.raises(ModelError, match="already compressed"):
        compressed_pair("se_e2_r")[1].compress(1.0)


def test_trainer_records_min_nbor_dist(tmp_path):
    """A short training records the data's shortest pair distance; freeze carries it to the model file."""
    from mlpot.data.neighbor_stat import neighbor_stat
    from mlpot.train.trainer import Trainer

    model_cfg = testing.tiny_model_config("se_e2_a", neuron=(4, 8), fitting=(8,))
    model_cfg["descriptor"]["sel"] = "auto"  # its neighbor statistics see every frame: the exact minimum
    cfg = {
        "model": model_cfg,
        "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-4},
        "loss": {},
        "training": {"training_data": {"systems": [str(DATA / "water" / "data_0")], "batch_size": 1},
                     "numb_steps": 1, "disp_freq": 1, "save_freq": 1, "seed": 1, "output_dir": str(tmp_path / "t")},
    }
    tr = Trainer.from_config(cfg, device="cpu", quiet=True)
    expected = neighbor_stat(io.read(DATA / "water" / "data_0"), tr.model.rcut).min_dist
    assert tr.model.min_nbor_dist == pytest.approx(expected, abs=1e-12) and 0.8 < expected < 1.2
    tr.train()
    p = tr.freeze(tmp_path / "m.pt")
    assert read_model_file(p)[1]["min_nbor_dist"] == pytest.approx(expected, abs=1e-12)
    out = tmp_path / "c.pt"
    assert main(["compress", str(p), "-o", str(out)]) == 0  # no --min-distance needed
    assert load_model(out, device="cpu").descriptor.compression["min_nbor_dist"] == pytest.approx(expected)
    # an explicit sel: the minimum over the statistics frames (no extra pass over the data)
    cfg["model"] = testing.tiny_model_config("se_e2_a", neuron=(4, 8), fitting=(8,))
    cfg["training"]["output_dir"] = str(tmp_path / "t2")
    tr2 = Trainer.from_config(cfg, device="cpu", quiet=True)
    assert expected <= tr2.model.min_nbor_dist < expected + 0.2


@pytest.mark.slow
def test_compiled_kernels_equal_eager(water):
    """The torch.compile block kernels (the fast CPU/GPU path) give the eager results (needs a compiler)."""
    if not tab.compiler_available(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile")
    _, cmp_ = compressed_pair("se_e2_a")
    try:
        tab.set_backend("eager")
        a = evaluate(cmp_, *frame(water), PBC)
        tab.set_backend("compile")
        b = evaluate(cmp_, *frame(water), PBC)
        assert tab.active_backend(torch.device("cpu")) == "compile"  # it did not fall back
    finally:
        tab.set_backend("auto")
    assert torch.allclose(a["energy"], b["energy"], rtol=1e-13, atol=0)
    assert float((a["forces"] - b["forces"]).abs().max()) < 1e-12
    assert float((a["virial"] - b["virial"]).abs().max()) < 1e-12


@pytest.mark.slow
def test_compiled_contract_blocks_and_empty_centers_equal_eager(water):
    """The compiled path's padded layout (plan_padded) against the eager embedding_bag path and a
    plain gather: several blocks, centers without edges (first, middle, last), values beyond both
    ends of the table; A and both gradients."""
    if not tab.compiler_available(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile")
    _, cmp_ = compressed_pair("se_e2_a")
    ft = cmp_.descriptor.flat_tables()
    g = torch.Generator().manual_seed(3)
    n_c = 9
    counts = torch.tensor([0, 5, 1, 0, 7, 3, 0, 2, 0])
    center = torch.repeat_interleave(torch.arange(n_c), counts)
    e = int(center.shape[0])
    lo, mx = float(ft.params[0, 0]), float(ft.params[0, 2])
    x = lo - 0.5 + (mx - lo + 1.0) * torch.rand(e, generator=g, dtype=torch.float64)
    tid = torch.randint(0, ft.params.shape[0], (e,), generator=g)
    rows = torch.randn(e, 4, generator=g, dtype=torch.float64)
    d_a = torch.randn(n_c, 4, ft.ng, generator=g, dtype=torch.float64)

    def run(backend, block_edges):
        xx, rr = x.clone().requires_grad_(True), rows.clone().requires_grad_(True)
        tab.set_backend(backend)
        a = tab.tabulated_contract(xx, rr, center, tid, n_c, ft, block_edges=block_edges)
        dx, dr = torch.autograd.grad((a * d_a).sum(), (xx, rr))
        return a.detach(), dx, dr

    try:
        ref = run("eager", 4)
        for block_edges in (1, 8, 1000):
            out = run("compile", block_edges)
            assert tab.active_backend(torch.device("cpu")) == "compile"
            for u, v in zip(ref, out):
                assert float((u - v).abs().max()) < 1e-12
    finally:
        tab.set_backend("auto")
    # and A itself against the plain gather of the tables
    gx = tab.eval_table(x, tid, ft)
    brute = torch.zeros(n_c, 4, ft.ng, dtype=torch.float64).index_add_(0, center, rows[:, :, None] * gx[:, None, :])
    assert float((ref[0] - brute).abs().max()) < 1e-12


def test_backend_choice_and_clean_fallback(water, monkeypatch, caplog):
    """auto: numba on CPU (eager for the gated op); without numba, eager for the first calls and in
    float32 on CPU; a failing compile falls back to the eager evaluation (same numbers) with one
    logged warning, for good."""
    cpu = torch.device("cpu")
    try:
        tab.set_backend("auto")
        monkeypatch.setitem(tab._BACKEND, "calls", 0)
        assert tab.active_backend(cpu) == "numba" and tab.active_backend(cpu, torch.float32) == "numba"
        assert tab.active_backend(cpu, gated=True) == "eager"
        assert tab.active_backend(torch.device("meta")) == "eager"  # numba is for CPU tensors only
        monkeypatch.setitem(tab._BACKEND, "numba_failed", True)  # as without numba
        tab._BACKEND["name"] = "numba"
        assert tab.active_backend(cpu) == "eager"  # "numba" where it cannot run: eager, never compiled
        monkeypatch.setitem(tab._BACKEND, "calls", tab.AUTO_COMPILE_AFTER)
        assert tab.active_backend(cpu) == "eager"
        tab._BACKEND["name"] = "auto"
        monkeypatch.setitem(tab._BACKEND, "calls", 0)
        assert tab.active_backend(cpu) == "eager"
        monkeypatch.setitem(tab._BACKEND, "calls", tab.AUTO_COMPILE_AFTER)
        assert tab.active_backend(cpu, torch.float32) == "eager"
        assert tab.active_backend(cpu, torch.float64) == ("compile" if tab.compiler_available(cpu) else "eager")
        _, cmp_ = compressed_pair("se_e2_a")
        tab.set_backend("eager")
        a = evaluate(cmp_, *frame(water), PBC)

        def broken():
            raise RuntimeError("no compiler today")

        monkeypatch.setattr(tab, "_compiled_kernels", broken)
        tab.set_backend("compile")
        with caplog.at_level("WARNING", logger="mlpot"):
            b = evaluate(cmp_, *frame(water), PBC)
        assert tab.active_backend(cpu) == "eager"
        assert any("torch.compile of the table kernels failed" in r.message for r in caplog.records)
        assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])
    finally:
        tab.set_backend("auto")
    with pytest.raises(ConfigError, match="backend"):
        tab.set_backend("fast")


def test_kernel_path_math_and_backward_fallback(water, monkeypatch, caplog):
    """The compile back-end's value kernel, run uncompiled (plain torch ops), equals the eager
    evaluation; a kernel that fails falls back to the eager evaluation for that call and after."""
    _, cmp_ = compressed_pair("se_e2_a")
    try:
        tab.set_backend("eager")
        a = evaluate(cmp_, *frame(water), PBC)
        monkeypatch.setitem(tab._BACKEND, "kernels", (tab._kernel_values,))
        tab.set_backend("compile")
        b = evaluate(cmp_, *frame(water), PBC)
        assert float((a["forces"] - b["forces"]).abs().max()) < 1e-13
        assert float((a["virial"] - b["virial"]).abs().max()) < 1e-12

        def broken_kernel(*args):
            raise RuntimeError("inductor failed")

        monkeypatch.setitem(tab._BACKEND, "kernels", (broken_kernel,))
        with caplog.at_level("WARNING", logger="mlpot"):
            c = evaluate(cmp_, *frame(water), PBC)
        assert tab.active_backend(torch.device("cpu")) == "eager"
        assert any("torch.compile of the table kernels failed" in r.message for r in caplog.records)
        assert float((a["forces"] - c["forces"]).abs().max()) < 1e-13
    finally:
        tab.set_backend("auto")


def test_second_derivatives_through_tables_raise(water):
    """Forces of a compressed model are not differentiable again (force training, Hessians): an
    error, never silently incomplete second derivatives."""
    _, cmp_ = compressed_pair("se_e2_a")
    with pytest.raises(ModelError, match="second derivatives"):
        evaluate(cmp_, *frame(water), PBC, create_graph=True)
