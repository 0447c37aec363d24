"""se_atten (DPA-1) and se_atten_v2: DeePMD-kit equality, derivatives, invariances, config, errors.

References: ``tests/data/se_atten/<case>/{model.dp,reference.npz}``, written by DeePMD-kit 3.2.0
(``tests/data/se_atten/make_reference.py``: DeePMD-kit's TorchScript ``DeepPot`` energies, forces,
virials, atomic energies of its own models), and ``tests/data/se_atten/export/``: models written by
mlpot's ``export-deepmd`` and evaluated by DeePMD-kit (``make_export_reference.py``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpot.errors import ConfigError, ModelError
from mlpot.interop.deepmd import import_deepmd, model_from_tree, model_to_tree, read_deepmd_file, write_deepmd_file
from mlpot.model import EnergyModel, evaluate
from mlpot.testing import check_batch_independence, check_forces_fd, check_rotation, check_virial_fd, model_energy_fn, model_outputs, tiny_model

REF = Path(__file__).resolve().parent / "data" / "se_atten"
CASES = sorted(p.name for p in REF.iterdir() if (p / "reference.npz").exists())
ALLOY = Path(__file__).resolve().parents[1] / "data" / "alloy_emt"


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-300, float(np.max(np.abs(b)))))


def _eval_ref(model: EnergyModel, ref, kind: str, **kw) -> dict:
    coord = ref[f"{kind}_coord"]
    nf, n = coord.shape[:2]
    if kind == "pbc":
        cells, pbc = torch.tensor(ref["pbc_box"]), torch.ones(nf, 3, dtype=torch.bool)
    else:
        cells, pbc = torch.zeros(nf, 3, 3, dtype=torch.float64), torch.zeros(nf, 3, dtype=torch.bool)
    out = evaluate(model, torch.tensor(coord.reshape(-1, 3)), torch.tensor(np.tile(ref[f"{kind}_atype"], nf)), cells, pbc,
                   torch.arange(nf).repeat_interleave(n), outputs=("energy", "forces", "virial", "atom_energy"), **kw)
    return {"energy": out["energy"].detach().numpy(), "force": out["forces"].detach().numpy().reshape(nf, n, 3),
            "virial": out["virial"].detach().numpy(), "atom_energy": out["atom_energy"].detach().numpy().reshape(nf, n)}


@pytest.fixture(scope="module")
def imported() -> dict:
    return {case: import_deepmd(REF / case / "model.dp", device="cpu") for case in CASES}


# ------------------------------------------------------------------------------- DeePMD-kit equality
def test_reference_cases_cover_the_issue() -> None:
    kinds = set()
    for case in CASES:
        d = read_deepmd_file(REF / case / "model.dp")["model"]["descriptor"]
        kinds.add((d["type"], d.get("tebd_input_mode", "strip"), d["attn_layer"] > 0, d["type_one_side"],
                   len(d["type_map"])))
    assert {k[0] for k in kinds} == {"dpa1", "se_atten_v2"}
    assert {k[1] for k in kinds} == {"concat", "strip"}
    assert {k[2] for k in kinds} == {True, False} and {k[3] for k in kinds} == {True, False}
    assert {k[4] for k in kinds} >= {2, 3, 7}


@pytest.mark.parametrize("kind", ["pbc", "nopbc"])
@pytest.mark.parametrize("case", CASES)
def test_import_reproduces_deepmd_kit(imported, case: str, kind: str) -> None:
    ref = np.load(REF / case / "reference.npz")
    got = _eval_ref(imported[case], ref, kind)
    for key in ("energy", "force", "virial", "atom_energy"):
        assert _rel(got[key], ref[f"{kind}_{key}"]) < 1e-10, (case, kind, key)


def test_chunked_and_ghost_evaluation_equal(imported) -> None:
    """The chunked path (centers in small groups) and the neighbor-only (ghost) atoms of MD/MPI give
    the same numbers: the empty-slot type is the frame's first atom in every chunk."""
    case = "atten_concat_l2"
    ref = np.load(REF / case / "reference.npz")
    a = _eval_ref(imported[case], ref, "pbc", chunk_atoms=0)
    b = _eval_ref(imported[case], ref, "pbc", chunk_atoms=7)
    for key in a:
        assert _rel(b[key], a[key]) < 1e-12, key
    # a cluster: the first 10 atoms are centers, the rest neighbors only
    m = imported["v2_l2_seven"]
    ref = np.load(REF / "v2_l2_seven" / "reference.npz")
    pos = torch.tensor(ref["nopbc_coord"][0])
    types = torch.tensor(ref["nopbc_atype"])
    full = evaluate(m, pos, types, torch.zeros(3, 3, dtype=torch.float64), [False] * 3, outputs=("atom_energy",))
    part = evaluate(m, pos, types, torch.zeros(3, 3, dtype=torch.float64), [False] * 3, outputs=("atom_energy",), n_centers=10)
    assert torch.allclose(part["atom_energy"], full["atom_energy"][:10], rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------- export
EXPORT = REF / "export"


@pytest.mark.parametrize("case", sorted(p.name for p in EXPORT.iterdir() if p.is_dir()) if EXPORT.exists() else [])
def test_export_evaluated_by_deepmd_kit(case: str, tmp_path: Path) -> None:
    """mlpot's export of its own model, evaluated by DeePMD-kit (TorchScript DeepPot): our numbers;
    exporting the re-imported model writes the same arrays again."""
    model = import_deepmd(EXPORT / case / "model.dp", device="cpu")
    ref = np.load(EXPORT / case / "deepmd_eval.npz")
    got = _eval_ref(model, ref, "pbc")
    for key in ("energy", "force", "virial", "atom_energy"):
        assert _rel(got[key], ref[f"pbc_{key}"]) < 1e-10, (case, key)
    again = tmp_path / "again.dp"
    write_deepmd_file(model_to_tree(model), again)
    m2 = import_deepmd(again, device="cpu")
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1


@pytest.mark.parametrize("case", ["atten_strip_smooth_l1", "v2_l0_one_side", "atten_concat_l2"])
def test_export_layout_matches_deepmd_kit(imported, case: str) -> None:
    """The exported tree has DeePMD-kit's own keys and array shapes (compared with its model.dp)."""
    theirs = read_deepmd_file(REF / case / "model.dp")["model"]
    ours = model_to_tree(imported[case])["model"]

    def walk(a, b, path="model"):
        if isinstance(b, dict):
            assert isinstance(a, dict), path
            assert set(a) == set(b), (path, set(a) ^ set(b))
            for k in b:
                walk(a[k], b[k], f"{path}.{k}")
        elif isinstance(b, list):
            assert isinstance(a, list) and len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        elif isinstance(b, np.ndarray):
            assert np.asarray(a).shape == b.shape, path
            if path.endswith(("out_bias", "bias_atom_e")):  # mlpot writes the whole bias into out_bias
                return
            np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-15, err_msg=path)
        elif path.endswith(("atom_ener", "ln_eps")):
            pass  # None vs [] / stored rounding: equivalent
        else:
            assert a == b or (isinstance(b, float) and abs(a - b) < 1e-12), (path, a, b)

    walk(ours, theirs)
    total = lambda m: m["@variables"]["out_bias"].reshape(-1) + m["fitting"]["@variables"]["bias_atom_e"].reshape(-1)  # noqa: E731
    np.testing.assert_allclose(total(ours), total(theirs), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- derivatives, symmetry
def _cluster(seed: int = 0, n: int = 12, types=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.0, 4.5, (n, 3))
    # keep atoms at least 1.2 Å apart
    for i in range(n):
        for _ in range(100):
            if i == 0 or np.min(np.linalg.norm(pos[:i] - pos[i], axis=1)) > 1.2:
                break
            pos[i] = rng.uniform(0.0, 4.5, 3)
    cell = np.diag([6.5, 6.8, 7.1]) + 0.3 * rng.standard_normal((3, 3))
    return torch.tensor(pos), torch.tensor(cell), torch.tensor([types[i % len(types)] for i in range(n)])


VARIANTS = {
    "concat_l2": dict(kind="se_atten", attn_layer=2),
    "concat_l0_one_side": dict(kind="se_atten", attn_layer=0, type_one_side=True),
    "strip_smooth_l1": dict(kind="se_atten", attn_layer=1, tebd_input_mode="strip", smooth_type_embedding=True,
                            set_davg_zero=False, attn_dotr=False),
    "v2_l0": dict(kind="se_atten_v2", attn_layer=0),
    "v2_l2_one_side": dict(kind="se_atten_v2", attn_layer=2, type_one_side=True, temperature=1.0),
}


def _tiny(name: str, **over):
    kw = dict(VARIANTS[name])
    kind = kw.pop("kind")
    kw.update(over)
    return tiny_model(kind, type_map=("Al", "Cu", "Ni"), sel=(40,), rcut=4.0, rcut_smth=1.0, attn=8, tebd_dim=4, **kw)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_forces_virial_finite_differences(name: str) -> None:
    model = _tiny(name)
    pos, cell, types = _cluster()
    out = model_outputs(model, types, [True] * 3)(pos, cell)
    efn = model_energy_fn(model, types, [True] * 3)
    check_forces_fd(efn, out["forces"], pos, cell, [(0, 0), (3, 1), (7, 2), (11, 0)], h=1e-4, rtol=1e-6)
    check_virial_fd(efn, out["virial"], pos, cell, h=1e-4, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_rotation_permutation_batch(name: str) -> None:
    model = _tiny(name)
    pos, cell, types = _cluster(1)
    check_rotation(model_outputs(model, types, [True] * 3), pos, cell, seed=3, atol=1e-10)
    perm = torch.randperm(len(types), generator=torch.Generator().manual_seed(5))
    a = model_outputs(model, types, [True] * 3)(pos, cell)
    b = model_outputs(model, types[perm], [True] * 3)(pos[perm], cell)
    # smooth variants are invariant exactly; the non-smooth ones too unless the first atom's type
    # changes (DeePMD-kit's empty-slot type): keep atom 0 in place
    if not model.descriptor.smooth and model.descriptor.mode == "concat" and not model.descriptor.set_davg_zero:
        pytest.skip("empty-slot type depends on the first atom")
    if int(types[perm][0]) != int(types[0]):
        perm_keep = torch.cat([torch.tensor([0]), perm[perm != 0]])
        b = model_outputs(model, types[perm_keep], [True] * 3)(pos[perm_keep], cell)
        perm = perm_keep
    assert abs(float(a["energy"] - b["energy"])) < 1e-10
    assert torch.allclose(a["forces"][perm], b["forces"], atol=1e-10)
    pos2, cell2, types2 = _cluster(2, n=9)
    check_batch_independence(model, [(pos, types, cell, [True] * 3), (pos2, types2, cell2, [True] * 3)], atol=1e-10)


def test_smooth_variants_are_continuous_at_rcut() -> None:
    """se_atten_v2 (and strip + smooth_type_embedding) energies go to the same value when a neighbor
    crosses rcut; the non-smooth concat form jumps (DeePMD-kit's documented behaviour)."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.9, 0.3, 0.0], [0.2, 2.1, 0.4], [0.0, 0.0, 0.0]], dtype=torch.float64)
    types = torch.tensor([0, 1, 2, 1])
    zero = torch.zeros(3, 3, dtype=torch.float64)

    def energy(model, x: float) -> float:
        p = pos.clone()
        p[3] = torch.tensor([-x, 0.0, 0.0])  # atom 3's only neighbor is atom 0, at distance x
        return float(evaluate(model, p, types, zero, [False] * 3, outputs=("energy",))["energy"][0].detach())

    for name, smooth in (("v2_l0", True), ("strip_smooth_l1", True), ("v2_l2_one_side", True), ("concat_l2", False)):
        m = _tiny(name)
        jump = abs(energy(m, 4.0 - 1e-7) - energy(m, 4.0 + 1e-7))
        assert (jump < 1e-12) if smooth else (jump > 1e-6), (name, jump)


# ------------------------------------------------------------------------------------ config
def _desc_cfg(**d):
    from mlpot.config.base import validate
    from mlpot.config.model import ModelConfig

    return validate(ModelConfig, {"type_map": ["O", "H"], "descriptor": d}, prefix=("model",)).descriptor


def test_defaults_are_deepmd_kit_s() -> None:
    a = _desc_cfg(type="se_atten", sel=120)
    assert (a.type, a.mode, a.smooth, a.set_davg_zero, a.attn, a.attn_layer, a.attn_dotr, a.tebd_dim, a.axis_neuron,
            list(a.neuron), a.scaling_factor, a.normalize, a.temperature, a.concat_output_tebd, a.type_one_side,
            a.rcut, a.rcut_smth, a.trainable_ln, a.ln_eps) == (
        "se_atten", "concat", False, True, 128, 2, True, 8, 4, [10, 20, 40], 1.0, True, None, True, False, 6.0, 0.5,
        True, None)
    v2 = _desc_cfg(type="se_atten_v2", sel=[40, 80])
    assert (v2.type, v2.mode, v2.smooth, v2.set_davg_zero, v2.sel) == ("se_atten_v2", "strip", True, False, 120)
    assert _desc_cfg(type="dpa1", sel=10).type == "se_atten"
    assert _desc_cfg(type="se_atten", sel=10, stripped_type_embedding=True).mode == "strip"
    assert _desc_cfg(type="se_atten", sel=10, smooth_type_embdding=True).smooth is True
    assert _desc_cfg(type="se_atten", sel=10, attn_mask=False, use_econf_tebd=False, exclude_types=[],
                     env_protection=0.0, trainable=True).attn_layer == 2


@pytest.mark.parametrize("edit, needle", [
    ({"attn_mask": True}, "attn_mask"),
    ({"use_econf_tebd": True}, "use_econf_tebd"),
    ({"exclude_types": [[0, 1]]}, "exclude_types"),
    ({"env_protection": 1e-3}, "env_protection"),
    ({"lmax": 2}, "lmax"),
    ({"tebd_input_mode": "sum"}, "tebd_input_mode"),
    ({"attn_layer": -1}, "attn_layer"),
    ({"axis_neuron": 50}, "axis_neuron"),
    ({"atn": 3}, "atn"),
])
def test_bad_keys_refused_by_name(edit: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _desc_cfg(type="se_atten", sel=10, **edit)


def test_bad_sel_refused() -> None:
    for sel in (0, [0, 0], "many"):
        with pytest.raises(ConfigError, match="sel"):
            _desc_cfg(type="se_atten", sel=sel)


def test_v2_refuses_keys_it_fixes() -> None:
    for key, value in (("tebd_input_mode", "concat"), ("smooth_type_embedding", False)):
        with pytest.raises(ConfigError, match=key):
            _desc_cfg(type="se_atten_v2", sel=10, **{key: value})


def test_deepmd_example_inputs_validate() -> None:
    """DeePMD-kit's example descriptor blocks (examples/water/se_atten*/input*.json) validate unchanged."""
    from mlpot.config.base import validate
    from mlpot.config.model import ModelConfig

    dpa1 = {"type": "dpa1", "sel": 120, "rcut_smth": 0.5, "rcut": 6.0, "neuron": [25, 50, 100], "tebd_dim": 8,
            "axis_neuron": 16, "type_one_side": True, "attn": 128, "attn_layer": 2, "attn_dotr": True,
            "attn_mask": False, "activation_function": "tanh", "scaling_factor": 1.0, "normalize": True,
            "temperature": 1.0, "seed": 1}
    v2 = {"type": "se_atten_v2", "sel": 120, "rcut_smth": 0.5, "rcut": 6.0, "neuron": [25, 50, 100],
          "axis_neuron": 16, "type_one_side": True, "resnet_dt": False, "attn": 128, "attn_layer": 0,
          "attn_dotr": True, "attn_mask": False, "activation_function": "tanh", "scaling_factor": 1.0,
          "normalize": True, "temperature": 1.0, "precision": "float64", "seed": 1, "_comment": " that's all"}
    for d in (dpa1, v2):
        cfg = validate(ModelConfig, {"type_map": ["O", "H"], "descriptor": d,
                                     "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1}},
                       prefix=("model",))
        model = EnergyModel.from_config(cfg, device="cpu")
        assert model.descriptor.dim_out == 100 * 16 + 8


# ------------------------------------------------------------------------------------ errors
def test_sel_overflow_names_frame_and_atom() -> None:
    model = tiny_model("se_atten_v2", type_map=("Al", "Cu", "Ni"), sel=(4,), rcut=4.0, attn=8, tebd_dim=4, attn_layer=1)
    pos, cell, types = _cluster()
    with pytest.raises(ModelError, match=r"frame 0, atom \d+ has \d+ neighbors .*sel = 4"):
        evaluate(model, pos, types, cell, [True] * 3)


def test_import_refusals(tmp_path: Path) -> None:
    tree = read_deepmd_file(REF / "atten_strip_smooth_l1" / "model.dp")
    bad = copy.deepcopy(tree)
    bad["model"]["descriptor"]["type_embedding"]["ntypes"] = 2
    with pytest.raises(ModelError, match="type_embedding.ntypes"):
        model_from_tree(bad, "x")
    bad = copy.deepcopy(tree)
    bad["model"]["descriptor"]["type_embedding"]["embedding"]["layers"][0]["@variables"]["w"] = np.zeros((2, 6))
    with pytest.raises(ModelError, match=r"type_embedding.embedding.layers\[0\].@variables.w.*shape"):
        model_from_tree(bad, "x")
    bad = copy.deepcopy(tree)
    bad["model"]["descriptor"]["exclude_types"] = [[0, 1]]
    with pytest.raises(ModelError, match="exclude_types"):
        model_from_tree(bad, "x")
    bad = copy.deepcopy(tree)
    bad["model"]["descriptor"]["use_econf_tebd"] = True
    with pytest.raises(ModelError, match="use_econf_tebd"):
        model_from_tree(bad, "x")
    bad = copy.deepcopy(tree)
    del bad["model"]["descriptor"]["attention_layers"]["attention_layers"][0]
    with pytest.raises(ModelError, match="attention_layers.*expected attn_layer = 1"):
        model_from_tree(bad, "x")


def test_unknown_element_is_an_error(imported) -> None:
    from mlpot.calculator import DeepPotCalculator
    from ase import Atoms

    m = imported["v2_l2_seven"]
    atoms = Atoms("CuZn", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(Exception, match="Zn"):
        atoms.calc = DeepPotCalculator(model=m, device="cpu")
        atoms.get_potential_energy()


# ------------------------------------------------------------------------------------ training
def _alloy_config(steps: int = 12, **desc) -> dict:
    cfg = json.loads((Path(__file__).resolve().parents[1] / "examples" / "alloy_se_atten_v2.json").read_text())
    d = cfg["model"]["descriptor"]
    d.update(neuron=[4, 8, 16], axis_neuron=4, tebd_dim=4, attn=8, rcut=4.5, rcut_smth=1.5, **desc)
    cfg["model"]["fitting_net"]["neuron"] = [16, 16]
    cfg["training"]["training_data"]["systems"] = [str(ALLOY / s) for s in ("CuAu_solid", "AgAuPdPt_solid")]
    cfg["training"]["validation_data"]["systems"] = [str(ALLOY / "AlCuAgAuNiPdPt_liquid")]
    cfg["training"]["validation_data"]["numb_btch"] = 1
    cfg["training"].update(numb_steps=steps, disp_freq=steps, save_freq=steps)
    cfg["learning_rate"].update(decay_steps=5, start_lr=0.005, stop_lr=1e-3)
    return cfg


def test_train_freeze_and_fine_tune_on_a_subset_of_elements(tmp_path: Path) -> None:
    """se_atten (one attention layer, strip) trains with sel 'auto' (one count, all types) on 2 of the 7
    elements' systems; the frozen model evaluates like the trainer's; --init-model fine-tunes it on a
    system holding 2 elements of the 7, and the result still evaluates a 7-element structure."""
    from mlpot.export import load_model, save_model
    from mlpot.train.trainer import Trainer

    cfg = _alloy_config(steps=12, type="se_atten", attn_layer=1, tebd_input_mode="strip", smooth_type_embedding=True)
    logs: list[str] = []
    trainer = Trainer.from_config(cfg, output_dir=tmp_path / "a", quiet=False, log=logs.append)
    assert isinstance(trainer.model.descriptor.nnei, int) and any("sel: 'auto' ->" in m for m in logs)
    before = trainer.validate(0, trainer.lr_schedule.value(0))
    history = trainer.train()
    assert history[-1]["rmse_f_val"] < before["rmse_f"], (before, history[-1])
    save_model(trainer.model, tmp_path / "a.pt")
    frozen = load_model(tmp_path / "a.pt", device="cpu")
    ref = np.load(REF / "v2_l2_seven" / "reference.npz")  # a 7-element liquid frame
    a = _eval_ref(trainer.model, ref, "pbc")
    b = _eval_ref(frozen, ref, "pbc")
    assert _rel(b["force"], a["force"]) < 1e-12 and _rel(b["energy"], a["energy"]) < 1e-12
    fine_cfg = _alloy_config(steps=4, type="se_atten", attn_layer=1, tebd_input_mode="strip", smooth_type_embedding=True)
    fine_cfg["training"]["training_data"]["systems"] = [str(ALLOY / "CuAu_solid")]
    fine = Trainer.from_config(fine_cfg, output_dir=tmp_path / "b", quiet=True, init_model=tmp_path / "a.pt")
    assert fine.model.descriptor.nnei == trainer.model.descriptor.nnei
    fine.train()
    out = _eval_ref(fine.model, ref, "pbc")
    assert np.all(np.isfinite(out["force"])) and np.all(np.isfinite(out["energy"]))


def test_deepmd_example_compressible_input_trains(tmp_path: Path) -> None:
    """DeePMD-kit's examples/water/se_atten_compressible/input.json, data paths (and the step count) changed."""
    from mlpot.train.trainer import Trainer

    cfg = json.loads((REF / "deepmd_inputs" / "water_se_atten_compressible_input.json").read_text())
    water = Path(__file__).resolve().parents[1] / "data" / "water"
    cfg["training"]["training_data"]["systems"] = [str(water / "data_0")]
    cfg["training"]["validation_data"]["systems"] = [str(water / "data_3")]
    cfg["training"].update(numb_steps=1, disp_freq=1, save_freq=1)
    trainer = Trainer.from_config(cfg, output_dir=tmp_path, quiet=True)
    d = trainer.model.descriptor
    assert (d.type_name, d.attn_layer, d.nnei, d.mode, d.smooth, d.set_davg_zero, d.dim_out) == (
        "se_atten_v2", 0, 120, "strip", True, False, 100 * 16 + 8)
    trainer.train()
    assert (tmp_path / "lcurve.out").exists()


@pytest.mark.parametrize("name", ["water_se_atten_input_torch.json", "water_se_atten_dpa1_compat_input.json",
                                  "nopbc_mixed_input.json"])
def test_deepmd_example_inputs_load(name: str) -> None:
    """DeePMD-kit's dpa1 / se_atten example inputs validate and build unchanged (training them for a step
    is in the slow test below); nopbc/mixed's ``batch_size: "mixed:N"`` (mixed-type batches, which
    DeePMD-kit 3.2's PyTorch backend refuses too: TensorFlow only) is refused by name."""
    from mlpot.config import load_config

    cfg = json.loads((REF / "deepmd_inputs" / name).read_text())
    data = Path(__file__).resolve().parents[1] / "data"
    if name.startswith("nopbc"):
        cfg["training"]["training_data"]["systems"] = str(data / "molecules_nopbc")
    else:
        cfg["training"]["training_data"]["systems"] = [str(data / "water" / "data_0")]
        cfg["training"]["validation_data"]["systems"] = [str(data / "water" / "data_3")]
    if name.startswith("nopbc"):
        with pytest.raises(ConfigError, match="batch_size.*mixed:4"):
            load_config(cfg)
        cfg["training"]["training_data"]["batch_size"] = 4
    c = load_config(cfg)
    model = EnergyModel.from_config(c.model.with_descriptor(sel=120), device="cpu")
    assert model.descriptor.type_name == "se_atten" and model.fitting.mixed_types


@pytest.mark.slow
def test_deepmd_example_dpa1_input_trains_one_step(tmp_path: Path) -> None:
    from mlpot.train.trainer import Trainer

    cfg = json.loads((REF / "deepmd_inputs" / "water_se_atten_input_torch.json").read_text())
    water = Path(__file__).resolve().parents[1] / "data" / "water"
    cfg["training"]["training_data"]["systems"] = [str(water / "data_0")]
    cfg["training"]["validation_data"]["systems"] = [str(water / "data_3")]
    cfg["training"]["validation_data"]["numb_btch"] = 1
    cfg["training"].update(numb_steps=1, disp_freq=1, save_freq=1)  # stat_file stays: accepted, unused
    Trainer.from_config(cfg, output_dir=tmp_path, quiet=True).train()


# ------------------------------------------------------------------------ ASE, MD, MPI, model deviation
def test_cli_import_calculator_md_and_model_devi(tmp_path: Path) -> None:
    """`mlpot import-deepmd` of a DeePMD-kit se_atten model → the ASE calculator gives DeePMD-kit's
    numbers; `mlpot md` runs it (NVE, 10 steps) and `mlpot model-devi` compares it with another model."""
    import yaml
    from ase import Atoms

    from mlpot.calculator import DeepPotCalculator
    from mlpot.cli import main

    case = "v2_l2_seven"
    assert main(["import-deepmd", str(REF / case / "model.dp"), "-o", str(tmp_path / "a.pt")]) == 0
    assert main(["import-deepmd", str(REF / "dpa1_concat_l0_one_side" / "model.dp"), "-o", str(tmp_path / "b.pt")]) == 0
    assert main(["export-deepmd", str(tmp_path / "a.pt"), "-o", str(tmp_path / "a_again.dp")]) == 0
    ref = np.load(REF / case / "reference.npz")
    type_map = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
    atoms = Atoms([type_map[t] for t in ref["pbc_atype"]], positions=ref["pbc_coord"][0], cell=ref["pbc_box"][0], pbc=True)
    atoms.calc = DeepPotCalculator(model=str(tmp_path / "a.pt"), device="cpu")
    assert _rel(atoms.get_potential_energy(), ref["pbc_energy"][0]) < 1e-10
    assert _rel(atoms.get_forces(), ref["pbc_force"][0]) < 1e-10
    v = -atoms.get_stress(voigt=False) * atoms.get_volume()
    assert _rel(v, ref["pbc_virial"][0]) < 1e-10
    atoms.write(tmp_path / "alloy.xyz")
    cfg = {"structure": str(tmp_path / "alloy.xyz"), "potential": {"model": str(tmp_path / "a.pt")},
           "ensemble": "nve", "init_temperature": 600.0, "dt": 1.0, "steps": 10, "thermo_every": 5, "traj_every": 5,
           "output_dir": str(tmp_path / "md"), "device": "cpu", "seed": 1, "progress": False}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["md", str(tmp_path / "md.yaml")]) == 0
    assert (tmp_path / "md" / "traj.h5").exists()
    assert main(["model-devi", "-m", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "-s", str(tmp_path / "md" / "traj.h5"),
                 "-o", str(tmp_path / "devi.out")]) == 0
    rows = [ln.split() for ln in (tmp_path / "devi.out").read_text().splitlines() if not ln.startswith("#")]
    assert len(rows) == 3 and all(float(r[4]) > 0 for r in rows)


def _water_sim(model, ghosts: bool):
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parent / "mpi_scripts"))
    from md_engine import MlpotPotential, Simulation, VelocityVerlet
    from md_worker import model_state

    sim = Simulation(model_state(), MlpotPotential(model, device="cpu"), VelocityVerlet(1.0), skin=0.5, ghosts=ghosts)
    sim.setup()
    g = sim.gathered_state()
    return float(g.energy), g.forces.numpy(), g.virial.numpy()


def _worker_models() -> dict:
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parent / "mpi_scripts"))
    import se_atten_worker

    return se_atten_worker.models()


def test_md_ghost_path_equals_shift_path() -> None:
    """md_engine's ghost-atom path (what MPI uses; centers are the local atoms only) equals the
    periodic-shift path for se_atten models."""
    for name, model in _worker_models().items():
        e0, f0, v0 = _water_sim(model, False)
        e1, f1, v1 = _water_sim(model, True)
        assert abs(e1 - e0) <= 1e-10 * abs(e0) and _rel(f1, f0) < 1e-10 and _rel(v1, v0) < 1e-10, name


@pytest.mark.mpi
def test_md_two_ranks_equal_serial(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys as _sys

    from conftest import MPIRUN

    worker = Path(__file__).resolve().parent / "mpi_scripts" / "se_atten_worker.py"
    out = tmp_path / "f.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([str(MPIRUN), "-n", "2", _sys.executable, str(worker), str(out)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    d = np.load(out)
    assert int(d["size"]) == 2
    for name, model in _worker_models().items():
        e0, f0, v0 = _water_sim(model, False)
        assert abs(float(d[f"{name}_energy"]) - e0) <= 1e-10 * abs(e0), name
        assert _rel(d[f"{name}_forces"], f0) < 1e-10 and _rel(d[f"{name}_virial"], v0) < 1e-10, name


# ------------------------------------------------------------------------ training replay vs DeePMD-kit
STEPS = Path(__file__).resolve().parent / "data" / "se_atten_train_steps"


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """DeePMD-kit 3.2.0's 12 training steps of an se_atten model (tests/data/se_atten_train_steps), replayed
    by mlpot's trainer from DeePMD-kit's initial model on the frames DeePMD-kit drew (tests/deepmd_replay.py)."""
    from deepmd_replay import replay as run_replay

    return run_replay(STEPS, "init.dp", tmp_path_factory.mktemp("atten_replay"))


def test_replay_weights_equal_deepmd(replay) -> None:
    from deepmd_replay import compare_weights

    tr, init, history = replay
    params = {name for name, p in tr.model.named_parameters()}
    moved, worst = compare_weights(tr.model.state_dict(), import_deepmd(STEPS / "final.dp").state_dict(), init,
                                   params, moved_above=1e-5)
    assert moved == len(params), (moved, len(params))  # every trainable tensor moved
    print(f"se_atten replay: {len(params)} tensors, max |mlpot - DeePMD-kit| / update size {worst:.1e}")
    lc = np.loadtxt(STEPS / "lcurve.out", comments="#")
    for h, row in zip(history, lc):
        assert h["rmse_trn"] == pytest.approx(row[2], rel=6e-3)
        assert h["rmse_f_trn"] == pytest.approx(row[6], rel=6e-3)


# ------------------------------------------------------------------------------------ precision, CLI errors
def test_float32_model_agrees_with_float64() -> None:
    """The same weights in float32 give the float64 energies to 1e-5 and forces to 1e-4 relative."""
    m64 = import_deepmd(REF / "v2_l2_seven" / "model.dp", device="cpu")
    cfg = m64.get_config()
    cfg["descriptor"]["precision"] = cfg["fitting_net"]["precision"] = "float32"
    m32 = EnergyModel.from_config(cfg, device="cpu")
    m32.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in m64.state_dict().items()})
    ref = np.load(REF / "v2_l2_seven" / "reference.npz")
    a, b = _eval_ref(m64, ref, "pbc"), _eval_ref(m32, ref, "pbc")
    assert _rel(b["energy"], a["energy"]) < 1e-5 and _rel(b["force"], a["force"]) < 1e-4


def test_cli_train_refuses_unsupported_key_with_exit_2(tmp_path: Path, capsys) -> None:
    from mlpot.cli import main

    cfg = _alloy_config(steps=1, type="se_atten", attn_mask=True)
    (tmp_path / "in.json").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "in.json"), "-o", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.descriptor.attn_mask" in err[0] and "false" in err[0], err


def test_neighbor_stat_reports_the_total_for_se_atten() -> None:
    from mlpot.data.io import read_deepmd
    from mlpot.data.neighbor_stat import neighbor_stat

    stat = neighbor_stat([read_deepmd(ALLOY / "CuAu_solid")], 4.5)
    assert "max nbor size of all types together: " in stat.format()
    assert max(stat.max_nbor) <= stat.max_total <= sum(stat.max_nbor)


def test_training_checkpoint_import_equals_its_serialization() -> None:
    """DeePMD-kit's se_atten training checkpoint (model.ckpt-12.pt, model state only) imports to the
    same model as its .dp serialization (tests/data/se_atten_train_steps)."""
    a = import_deepmd(STEPS / "final.pt", device="cpu").state_dict()
    b = import_deepmd(STEPS / "final.dp", device="cpu").state_dict()
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_type_map_without_type_embedding_refused() -> None:
    tree = read_deepmd_file(REF / "atten_strip_smooth_l1" / "model.dp")
    tree["model"]["type_map"] = ["Al", "Cu", "Zn"]
    with pytest.raises(ModelError, match=r"type_embedding.type_map.*no type embedding for \['Zn'\]"):
        model_from_tree(tree, "x")
