"""DeePMD-kit interop: imported models reproduce DeePMD-kit's own numbers; export/import round trip;
refusals of unsupported or damaged files; the DeePMD behaviours mlpot's model must match.

Reference: tests/data/deepmd_water_se_e2_a (trained and evaluated once with DeePMD-kit 3.2.0, see its
README.md). deepmd-kit is not needed here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpot.errors import ModelError
from mlpot.interop.deepmd import (
    export_deepmd,
    import_deepmd,
    model_from_tree,
    model_to_tree,
    read_deepmd_file,
    write_deepmd_file,
)
from mlpot.model import evaluate

REF = Path(__file__).resolve().parent / "data" / "deepmd_water_se_e2_a"
MODELS = {
    "se_e2_a": REF / "model.dp",
    "se_e2_a_two_side": REF / "se_e2_a_two_side" / "model.dp",
    "se_e2_r": REF / "se_e2_r" / "model.dp",
    "se_e2_a_checkpoint": REF / "model.ckpt-200.pt",
}


def _ref_dir(case: str) -> Path:
    return MODELS[case].parent


def _eval_ref(model, ref: dict, pbc: bool) -> dict[str, np.ndarray]:
    n, nat = ref["coord"].shape[:2]
    cells = ref["box"] if pbc else np.zeros((n, 3, 3))
    out = evaluate(model, ref["coord"].reshape(-1, 3), np.tile(ref["atype"], n), cells, [pbc] * 3,
                   frame_index=np.repeat(np.arange(n), nat))
    g = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return {"energy": g(out["energy"]), "force": g(out["forces"]).reshape(n, nat, 3), "virial": g(out["virial"]),
            "atom_energy": g(out["atom_energy"]).reshape(n, nat)}


@pytest.mark.parametrize("case", sorted(MODELS))
@pytest.mark.parametrize("pbc", [True, False], ids=["pbc", "nopbc"])
def test_import_reproduces_deepmd_kit(case: str, pbc: bool) -> None:
    """E to 1e-10 relative, F to 1e-9 eV/Å, virial to 1e-8 eV, atomic energies to 1e-9 eV, against
    DeePMD-kit's DeepPot (PyTorch backend, float64) on 3 water frames and a 19-atom open cluster."""
    model = import_deepmd(MODELS[case], device="cpu")
    ref = dict(np.load(_ref_dir(case) / f"reference_{'pbc' if pbc else 'nopbc'}.npz"))
    got = _eval_ref(model, ref, pbc)
    assert np.all(np.abs(got["energy"] - ref["energy"]) <= 1e-10 * np.abs(ref["energy"]))
    assert np.max(np.abs(got["force"] - ref["force"])) <= 1e-9
    assert np.max(np.abs(got["virial"] - ref["virial"])) <= 1e-8
    assert np.max(np.abs(got["atom_energy"] - ref["atom_energy"])) <= 1e-9
    assert np.max(np.abs(ref["force"])) > 1e-3  # the reference is not trivially zero


def test_imported_metadata_and_config() -> None:
    model = import_deepmd(MODELS["se_e2_a"], device="cpu")
    cfg = model.get_config()
    assert model.type_map == ["O", "H"] and model.rcut == 6.0
    assert cfg["descriptor"]["sel"] == [46, 92] and cfg["descriptor"]["rcut_smth"] == 0.5
    assert cfg["descriptor"]["axis_neuron"] == 4 and cfg["descriptor"]["type_one_side"] is True
    assert cfg["descriptor"]["precision"] == "float64" and cfg["fitting_net"]["resnet_dt"] is True
    assert model.metadata["imported_from"]["version"] == "3.2.0"
    # the fitting timesteps were trained away from their N(0.1, 0.001) start: imported, not re-initialised
    idt = model.fitting.nets["0"].layers[1].idt
    assert idt is not None and float((idt.detach() - 0.1).abs().max()) > 1e-3


@pytest.mark.parametrize("case", ["se_e2_a", "se_e2_a_two_side", "se_e2_r"])
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_round_trip_identical(case: str, suffix: str, tmp_path: Path) -> None:
    """mlpot → export → import: the same tensors bit for bit, hence identical outputs."""
    model = import_deepmd(MODELS[case], device="cpu")
    out = export_deepmd(model, tmp_path / f"m{suffix}")
    back = import_deepmd(out, device="cpu")
    assert back.get_config() == model.get_config()
    sa, sb = model.state_dict(), back.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ref = dict(np.load(_ref_dir(case) / "reference_nopbc.npz"))
    a, b = _eval_ref(model, ref, False), _eval_ref(back, ref, False)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_round_trip_float32_model(tmp_path: Path) -> None:
    """A float32 mlpot model exports float32 arrays and comes back bit-identical."""
    from mlpot.model import EnergyModel

    cfg = {"type_map": ["O", "H"],
           "descriptor": {"type": "se_e2_a", "rcut": 5.0, "rcut_smth": 1.0, "sel": [30, 60], "neuron": [4, 8],
                          "axis_neuron": 2, "type_one_side": False, "resnet_dt": True, "precision": "float32", "seed": 1},
           "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "precision": "float32", "seed": 2}}
    model = EnergyModel.from_config(cfg, device="cpu")
    export_deepmd(model, tmp_path / "f32.dp")
    tree = read_deepmd_file(tmp_path / "f32.dp")
    assert tree["model"]["descriptor"]["@variables"]["davg"].dtype == np.float32
    assert tree["model"]["descriptor"]["precision"] == "float32"
    back = import_deepmd(tmp_path / "f32.dp", device="cpu")
    strip = lambda c: {k: {kk: vv for kk, vv in v.items() if kk != "seed"} if isinstance(v, dict) else v  # noqa: E731
                       for k, v in c.items()}
    assert strip(back.get_config()) == strip(model.get_config())  # the init seed is not part of a DeePMD model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))


def _arrays(tree, path=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _arrays(v, f"{path}.{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _arrays(v, f"{path}[{i}]")
    elif isinstance(tree, np.ndarray):
        yield path, tree


def _keys(tree):
    if isinstance(tree, dict):
        return {k: _keys(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_keys(v) for v in tree]
    return None


@pytest.mark.parametrize("case", ["se_e2_a", "se_e2_a_two_side", "se_e2_r"])
def test_export_layout_matches_deepmd_kit(case: str) -> None:
    """The exported tree has DeePMD-kit's own layout (every key of the 'model' section) and arrays,
    dtypes and shapes (what `dp convert-backend` rebuilds a model from)."""
    original = read_deepmd_file(MODELS[case])
    exported = model_to_tree(import_deepmd(MODELS[case], device="cpu"))
    assert _keys(exported["model"]) == _keys(original["model"])
    a, b = dict(_arrays(original["model"])), dict(_arrays(exported["model"]))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        if not k.endswith("out_std"):  # out_std is unused by energy models; exported as ones
            assert np.array_equal(a[k], b[k]), k
    for key in ("type_map", "descriptor", "fitting_net"):
        assert key in exported["model_def_script"]


# --------------------------------------------------------------------------------------- refusals
def _tree() -> dict:
    return read_deepmd_file(MODELS["se_e2_a"])


def _one_line_error(path: Path, *needles: str) -> str:
    with pytest.raises(ModelError) as info:
        import_deepmd(path, device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and str(path.name) in msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


@pytest.mark.parametrize(
    "edit, needles",
    [
        # se_atten is imported (tests/test_se_atten.py); an se_e2_a tree relabelled so is not a valid one
        (lambda t: t["model"]["descriptor"].update(type="se_atten"), ["model.fitting.mixed_types", "type embedding"]),
        (lambda t: t["model"]["descriptor"].update(type="dpa3"), ["'dpa3'", "model.descriptor.type"]),
        (lambda t: t["model"]["descriptor"].update(type="dpa2"), ["'dpa2'"]),
        (lambda t: t["model"]["fitting"].update(type="dipole"), ["dipole", "model.fitting.type"]),
        (lambda t: t["model"]["fitting"].update(type="dos"), ["DOS"]),
        (lambda t: t["model"].update(type="spin_ener"), ["'spin_ener'", "model.type"]),
        (lambda t: t["model"]["fitting"].update(numb_fparam=2), ["model.fitting.numb_fparam"]),
        (lambda t: t["model"].update(pair_exclude_types=[[0, 1]]), ["model.pair_exclude_types"]),
    ],
    ids=["se_atten", "dpa3", "dpa2", "dipole", "dos", "spin", "fparam", "exclude"],
)
def test_unsupported_models_refused(edit, needles, tmp_path: Path) -> None:
    tree = _tree()
    edit(tree)
    for suffix in (".yaml", ".dp"):
        path = write_deepmd_file(tree, tmp_path / f"bad{suffix}")
        _one_line_error(path, *needles)


def test_slot_dependent_statistics_refused() -> None:
    tree = _tree()
    tree["model"]["descriptor"]["@variables"]["davg"][0, 5, 0] += 1.0
    with pytest.raises(ModelError, match="differs between neighbor slots"):
        model_from_tree(tree, "modified tree")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    raw = MODELS["se_e2_a"].read_bytes()
    for n in (100, len(raw) // 2, len(raw) - 10):
        p = tmp_path / f"trunc_{n}.dp"
        p.write_bytes(raw[:n])
        _one_line_error(p, "truncated")
    text = (tmp_path / "m.yaml")
    export_deepmd(import_deepmd(MODELS["se_e2_a"], device="cpu"), text)
    cut = tmp_path / "cut.yaml"
    cut.write_text(text.read_text()[: len(text.read_text()) // 3])
    _one_line_error(cut)
    ckpt = MODELS["se_e2_a_checkpoint"].read_bytes()
    (tmp_path / "trunc.pt").write_bytes(ckpt[: len(ckpt) // 2])
    _one_line_error(tmp_path / "trunc.pt", "truncated")
    # wrong file types: a DeePMD data file, a text file named .dp, an mlpot model, a TorchScript program
    raw_file = Path(__file__).resolve().parent.parent / "data" / "water" / "data_0" / "type.raw"
    _one_line_error(raw_file, "not a DeePMD-kit model file")
    (tmp_path / "text.dp").write_text("hello")
    _one_line_error(tmp_path / "text.dp", "not an HDF5 file")
    from mlpot.export import save_model

    save_model(import_deepmd(MODELS["se_e2_a"], device="cpu"), tmp_path / "mine.pt")
    _one_line_error(tmp_path / "mine.pt", "mlpot model file")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "frozen.pth"))
    _one_line_error(tmp_path / "frozen.pth", "TorchScript", "dp convert-backend")
    _one_line_error(tmp_path / "missing.dp", "no such file")


def test_cli(tmp_path: Path, capsys) -> None:
    from mlpot.cli import main
    from mlpot.export import load_model

    out = tmp_path / "model.pt"
    assert main(["import-deepmd", str(MODELS["se_e2_a"]), "-o", str(out)]) == 0
    model = load_model(out, device="cpu")
    ref = dict(np.load(REF / "reference_nopbc.npz"))
    assert abs(_eval_ref(model, ref, False)["energy"][0] - ref["energy"][0]) <= 1e-10 * abs(ref["energy"][0])
    assert main(["export-deepmd", str(out), "-o", str(tmp_path / "back.dp")]) == 0
    assert main(["import-deepmd", str(tmp_path / "back.dp"), "-o", str(tmp_path / "again.pt")]) == 0
    again = load_model(tmp_path / "again.pt", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    capsys.readouterr()
    bad = tmp_path / "bad.dp"
    bad.write_bytes(MODELS["se_e2_a"].read_bytes()[:500])
    assert main(["import-deepmd", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlpot import-deepmd: error:") and "truncated" in err
    assert not (tmp_path / "x.pt").exists()
    assert main(["export-deepmd", str(out), "-o", str(tmp_path / "x.json")]) == 2
    assert "expected one of .dp" in capsys.readouterr().err


# ------------------------------------------------------- DeePMD behaviours, checked independently
def _tanh_net(layers, x, last_linear):
    for k, ly in enumerate(layers):
        v = ly["@variables"]
        y = x @ v["w"] + v["b"]
        if not (last_linear and k == len(layers) - 1):
            y = np.tanh(y)
        if v["idt"] is not None:
            y = y * v["idt"]
        if ly["resnet"] and v["w"].shape[1] == v["w"].shape[0]:
            y = y + x
        elif ly["resnet"] and v["w"].shape[1] == 2 * v["w"].shape[0]:
            y = y + np.concatenate([x, x], axis=-1)
        x = y
    return x


def _dense_se_a_energies(tree, coord, atype, pad="deepmd", scale="nnei"):
    """Atomic energies of an se_e2_a model (type_one_side) on an open cluster, the way DeePMD-kit
    computes them: a dense (n_atoms, Σsel) neighbor matrix, slots grouped by neighbor type and sorted
    by distance, empty slots as zero rows normalised like the others, A = (1/nnei) R̃ᵀG.
    ``pad="zero"`` / ``scale="nreal"`` are the tempting alternatives (empty slots contributing nothing;
    dividing by the number of real neighbors) that DeePMD-kit does *not* do."""
    m = tree["model"]
    d, f = m["descriptor"], m["fitting"]
    sel, rc, rs, m2 = d["sel"], d["rcut"], d["rcut_smth"], d["axis_neuron"]
    davg, dstd = d["@variables"]["davg"], d["@variables"]["dstd"]
    nnei = sum(sel)
    n = len(atype)
    energies = np.zeros(n)
    for i in range(n):
        rows = np.zeros((nnei, 4))
        real = np.zeros(nnei, dtype=bool)
        start = 0
        for t, st in enumerate(sel):
            js = [j for j in range(n) if j != i and atype[j] == t and np.linalg.norm(coord[j] - coord[i]) < rc]
            js.sort(key=lambda j: np.linalg.norm(coord[j] - coord[i]))
            assert len(js) <= st
            for s, j in enumerate(js):
                rij = coord[j] - coord[i]
                r = np.linalg.norm(rij)
                u = min(max((r - rs) / (rc - rs), 0.0), 1.0)
                sw = u**3 * (-6 * u**2 + 15 * u - 10) + 1
                rows[start + s] = sw / r * np.array([1.0, *(rij / r)])
                real[start + s] = True
            start += st
        rt = (rows - davg[atype[i]]) / dstd[atype[i]]
        g = np.zeros((nnei, d["neuron"][-1]))
        start = 0
        for t, st in enumerate(sel):
            g[start : start + st] = _tanh_net(d["embeddings"]["networks"][t]["layers"], rt[start : start + st, :1], False)
            start += st
        if pad == "zero":
            rt, g = rt[real], g[real]
        a = rt.T @ g / (nnei if scale == "nnei" else real.sum())
        desc = (a.T @ a[:, :m2]).reshape(-1)
        e = _tanh_net(f["nets"]["networks"][atype[i]]["layers"], desc[None], True)[0, 0]
        energies[i] = e + f["@variables"]["bias_atom_e"][atype[i], 0] + m["@variables"]["out_bias"][0, atype[i], 0]
    return energies


def test_deepmd_padding_and_scaling_behaviour() -> None:
    """Empty neighbor slots enter as −davg/dstd rows (embedded and summed), the sum is scaled by
    1/Σsel, neighbors are grouped by type: a dense NumPy re-implementation with exactly these rules
    reproduces DeePMD-kit's atomic energies, mlpot's edge-based model agrees with both, and each
    alternative rule is off by far more than the tolerance."""
    tree = read_deepmd_file(MODELS["se_e2_a"])
    ref = dict(np.load(REF / "reference_nopbc.npz"))
    coord, atype = ref["coord"][0].astype(np.float64), ref["atype"]  # stored as float32, as in the data
    dense = _dense_se_a_energies(tree, coord, atype)
    assert np.max(np.abs(dense - ref["atom_energy"][0])) < 1e-10
    mine = _eval_ref(import_deepmd(MODELS["se_e2_a"], device="cpu"), ref, False)["atom_energy"][0]
    assert np.max(np.abs(mine - dense)) < 1e-10
    for variant in ({"pad": "zero"}, {"scale": "nreal"}):
        other = _dense_se_a_energies(tree, coord, atype, **variant)
        assert np.max(np.abs(other - ref["atom_energy"][0])) > 1e-3, variant


def test_sel_overflow_is_an_error_not_a_truncation() -> None:
    """DeePMD-kit silently keeps the sel[t] closest neighbors of each type; mlpot refuses instead."""
    tree = copy.deepcopy(read_deepmd_file(MODELS["se_e2_a"]))
    d = tree["model"]["descriptor"]
    d["sel"] = [10, 20]
    for k in ("davg", "dstd"):
        d["@variables"][k] = np.ascontiguousarray(d["@variables"][k][:, :30])
    model = model_from_tree(tree, "modified tree")
    ref = dict(np.load(REF / "reference_pbc.npz"))
    with pytest.raises(ModelError, match=r"sel\[\d\]"):
        _eval_ref(model, ref, True)


def test_resnet_timestep_initialisation_matches_deepmd() -> None:
    """DeePMD-kit's PyTorch backend starts every timestep at N(0.1, 0.001²); mlpot's fresh model too."""
    from mlpot.model import EnergyModel

    cfg = {"type_map": ["O", "H"],
           "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92], "neuron": [8, 16, 32],
                          "axis_neuron": 4, "type_one_side": True, "resnet_dt": True, "seed": 3},
           "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 4}}
    model = EnergyModel.from_config(cfg, device="cpu")
    idt = torch.cat([p.detach().reshape(-1) for n, p in model.named_parameters() if n.endswith(".idt")])
    assert idt.numel() == 2 * 2 * 240 + 2 * (16 + 32)  # only layers with a skip connection get one
    assert abs(float(idt.mean()) - 0.1) < 2e-4 and 0.0008 < float(idt.std()) < 0.0012


def test_learning_rate_is_stepped_like_deepmd() -> None:
    """The lr column of DeePMD-kit's lcurve.out for this training (start 1e-3, stop 1e-5, decay_steps 50,
    200 steps; display step k shows the lr of 0-based step k−1) is the stepped exponential decay."""
    from mlpot.train.schedule import ExpDecayLR

    cfg = json.loads((REF / "input.json").read_text())["learning_rate"]
    lines = [ln.split() for ln in (REF / "lcurve.out").read_text().splitlines() if not ln.startswith("#")]
    sched = ExpDecayLR(start_lr=cfg["start_lr"], stop_lr=cfg["stop_lr"], decay_steps=cfg["decay_steps"], numb_steps=200)
    rate = (cfg["stop_lr"] / cfg["start_lr"]) ** (cfg["decay_steps"] / 200)
    for cols in lines:
        step, lr = int(cols[0]) - 1, float(cols[-1])
        assert sched.value(step) == pytest.approx(lr, rel=0.05)  # lcurve prints 2 significant digits
        smooth = cfg["start_lr"] * rate ** (step / cfg["decay_steps"])
        if step >= cfg["decay_steps"]:
            assert smooth != pytest.approx(lr, rel=0.05)  # the smooth variant would not match
