"""EnergyModel and evaluate(): forces and virial against finite differences, symmetries,
smoothness through rcut / rcut_smth, precision, batching, Verlet skin, degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import DATA
from mlpot import testing
from mlpot.errors import ModelError
from mlpot.model import EnergyModel, evaluate
from mlpot.neighbors import neighbor_list

PBC = [True, True, True]


#: the hyperparameters of this file's models (the rest: mlpot.testing.tiny_model's defaults)
M = dict(type_one_side=True)


def water_frame(n_keep: int | None = None):
    d = DATA / "water" / "data_0"
    pos = np.load(f"{d}/set.000/coord.npy")[0].reshape(-1, 3).astype(np.float64)
    cell = np.load(f"{d}/set.000/box.npy")[0].reshape(3, 3).astype(np.float64)
    types = np.loadtxt(f"{d}/type.raw", dtype=np.int64)
    if n_keep is not None:  # a lower-density periodic configuration: every k-th atom, same cell
        keep = np.arange(0, len(pos), len(pos) // n_keep)[:n_keep]
        pos, types = pos[keep], types[keep]
    return pos, types, cell


def molecule():
    d = DATA / "molecules_nopbc" / "C3H3O4"
    pos = np.load(f"{d}/set.000/coord.npy")[0].reshape(-1, 3).astype(np.float64)
    types = np.loadtxt(f"{d}/type.raw", dtype=np.int64)
    return pos, types, np.zeros((3, 3))


def skewed_cell():
    """A small triclinic cell (shortest height ≈ 2.6 Å < rcut): atoms see several images of themselves."""
    cell = np.array([[3.0, 0.0, 0.0], [1.3, 2.9, 0.0], [0.8, -0.9, 2.8]])
    frac = np.array([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.35, 0.85, 0.75]])
    return frac @ cell, np.array([0, 1, 1]), cell


def check_forces_fd(model, pos, types, cell, pbc, components, tol=1e-6):
    pos_t, cell_t = torch.tensor(pos), torch.tensor(cell)
    # fixed pair list with a skin: pairs may move across rcut during the FD steps, never past the skin
    nl = neighbor_list(pos_t, cell_t.reshape(1, 3, 3), torch.tensor([pbc]), model.rcut + 0.5)
    f = evaluate(model, pos_t, types, cell_t, pbc, nl=nl)["forces"]
    testing.check_forces_fd(testing.model_energy_fn(model, types, pbc, nl), f, pos_t, cell_t, components, rtol=tol)
    return f


def test_forces_fd_water(tiny_model):
    pos, types, cell = water_frame(n_keep=64)
    model = tiny_model(**M)
    f = check_forces_fd(model, pos, types, cell, PBC, [(0, 0), (3, 2), (30, 1), (50, 0), (63, 2)])
    assert torch.allclose(f.sum(0), torch.zeros(3), atol=1e-12)  # Newton's third law / translation


def test_forces_fd_molecule_nopbc(tiny_model):
    pos, types, cell = molecule()
    model = tiny_model(type_map=("C", "H", "O"), sel=(10, 10, 10), **M)
    check_forces_fd(model, pos, types, cell, [False] * 3, [(a, k) for a in range(len(pos)) for k in range(3)][::4])


def test_forces_fd_skewed_small_cell(tiny_model):
    pos, types, cell = skewed_cell()
    model = tiny_model(sel=(60, 120), **M)
    check_forces_fd(model, pos, types, cell, PBC, [(a, k) for a in range(3) for k in range(3)])


def test_forces_fd_se_e2_r(tiny_model):
    pos, types, cell = water_frame(n_keep=64)
    model = tiny_model("se_e2_r", **M)
    check_forces_fd(model, pos, types, cell, PBC, [(0, 0), (40, 1), (63, 2)])
    pos, types, cell = skewed_cell()
    check_forces_fd(tiny_model("se_e2_r", sel=(60, 120), **M), pos, types, cell, PBC, [(0, 1), (2, 2)])


@pytest.mark.parametrize("system", ["water", "skewed"])
def test_virial_equals_strain_derivative(tiny_model, system):
    pos, types, cell = water_frame(n_keep=64) if system == "water" else skewed_cell()
    model = tiny_model(sel=(60, 120), **M)
    out = evaluate(model, pos, types, cell, PBC, outputs=("energy", "forces", "virial", "atom_virial"))
    w = out["virial"][0]
    pos_t, cell_t = torch.tensor(pos), torch.tensor(cell)
    # a fixed pair list with a skin stays valid under small homogeneous strain
    nl = neighbor_list(pos_t, cell_t.reshape(1, 3, 3), torch.tensor([PBC]), model.rcut + 0.5)
    comps = [(0, 0), (1, 1), (0, 1), (2, 1)] if system == "water" else [(0, 0), (1, 1), (2, 2), (0, 1), (1, 0), (2, 0), (1, 2)]
    testing.check_virial_fd(testing.model_energy_fn(model, types, PBC, nl), w, pos_t, cell_t, comps)
    torch.testing.assert_close(out["atom_virial"].sum(0), w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, w.T, rtol=1e-9, atol=1e-11)  # rotational invariance ⇒ symmetric


def random_rotation(seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_invariances_and_covariance(tiny_model):
    pos, types, cell = skewed_cell()
    pos = np.vstack([pos, pos[1:] + [0.9, 0.3, -0.4]])
    types = np.concatenate([types, [0, 1]])
    model = tiny_model(sel=(100, 150), **M)
    ref = evaluate(model, pos, types, cell, PBC)
    e0, f0 = ref["energy"].item(), ref["forces"]

    def same_energy(out):
        assert abs(out["energy"].item() - e0) < 1e-10 * abs(e0)

    same_energy(evaluate(model, pos + [1.3, -2.2, 0.7], types, cell, PBC))  # translation
    rot = random_rotation()
    out = evaluate(model, pos @ rot.T, types, cell @ rot.T, PBC)  # rotate atoms and cell
    same_energy(out)
    torch.testing.assert_close(out["forces"], f0 @ torch.tensor(rot).T, rtol=1e-9, atol=1e-11)
    perm = np.array([3, 4, 2, 0, 1])  # a permutation (types follow the atoms)
    out = evaluate(model, pos[perm], types[perm], cell, PBC)
    same_energy(out)
    torch.testing.assert_close(out["forces"], f0[perm], rtol=1e-9, atol=1e-12)
    shift = np.array([[1, 0, -1], [0, 2, 0], [-1, -1, 0], [0, 0, 3], [2, 1, 1]]) @ cell  # other images
    out = evaluate(model, pos + shift, types, cell, PBC)
    same_energy(out)
    torch.testing.assert_close(out["forces"], f0, rtol=1e-9, atol=1e-12)


def test_isolated_molecule_rotation(tiny_model):
    pos, types, cell = molecule()
    model = tiny_model(type_map=("C", "H", "O"), sel=(10, 10, 10), **M)
    e0 = evaluate(model, pos, types, cell, [False] * 3)
    rot = random_rotation(3)
    e1 = evaluate(model, pos @ rot.T + 5.0, types, cell, [False] * 3)
    assert abs(e1["energy"].item() - e0["energy"].item()) < 1e-10 * abs(e0["energy"].item())
    torch.testing.assert_close(e1["forces"], e0["forces"] @ torch.tensor(rot).T, rtol=1e-9, atol=1e-11)


def dimer_scan(model, rs):
    cell = np.zeros((3, 3))
    es, fs = [], []
    for r in rs:
        out = evaluate(model, np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]]), [0, 1], cell, [False] * 3)
        es.append(out["energy"].item())
        fs.append(out["forces"][1, 0].item())
    return np.array(es), np.array(fs)


@pytest.mark.parametrize("kind", ["se_e2_a", "se_e2_r"])
def test_smooth_through_rcut_and_rcut_smth(tiny_model, kind):
    model = tiny_model(kind, rcut=3.0, rcut_smth=1.5, **M)
    for r0 in (3.0, 1.5):
        d = 1e-6
        es, fs = dimer_scan(model, [r0 - d, r0, r0 + d])
        assert abs(fs[0] - fs[2]) < 1e-4  # continuous force
        # continuous energy: the difference across the join is the work of the force (a jump δ in
        # E would show up as an error δ/2d = 5e5·δ here)
        assert fs[1] == pytest.approx(-(es[2] - es[0]) / (2 * d), abs=1e-6)
        # and continuous force derivative: FD of the force on both sides agree
        _, fl = dimer_scan(model, [r0 - 2e-4, r0 - 1e-4])
        _, fr = dimer_scan(model, [r0 + 1e-4, r0 + 2e-4])
        assert (fl[1] - fl[0]) / 1e-4 == pytest.approx((fr[1] - fr[0]) / 1e-4, abs=1e-2)
    e_far, f_far = dimer_scan(model, [3.0, 3.5, 10.0])
    assert e_far[0] == e_far[1] == e_far[2] and np.all(f_far == 0)  # beyond rcut: isolated atoms
    es, fs = dimer_scan(model, [3.0 - 1e-3])
    assert abs(fs[0]) < 1e-5 and abs(es[0] - e_far[0]) < 1e-9  # sw ~ (rcut − r)³: vanishing fast


def test_float32_agrees_with_float64(tiny_model):
    pos, types, cell = water_frame()
    m64 = tiny_model(**M)
    m32 = EnergyModel.from_config(testing.tiny_model_config(precision="float32", **M), device="cpu")
    m32.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in m64.state_dict().items()})
    o64 = evaluate(m64, pos, types, cell, PBC)
    o32 = evaluate(m32, pos, types, cell, PBC)
    assert o32["energy"].dtype == torch.float32
    # documented tolerance: energy 1e-6 relative, forces 1e-4 of the max force, virial 1e-4 relative
    assert abs(o32["energy"].item() - o64["energy"].item()) < 1e-6 * abs(o64["energy"].item())
    fmax = o64["forces"].abs().max().item()
    assert (o32["forces"].double() - o64["forces"]).abs().max().item() < 1e-4 * fmax
    assert (o32["virial"].double() - o64["virial"]).abs().max().item() < 1e-4 * o64["virial"].abs().max().item()


def test_degenerate_inputs_are_finite(tiny_model):
    model = tiny_model(sel=(100, 150), **M)
    iso = evaluate(model, [[0.0, 0.0, 0.0]], [1], np.zeros((3, 3)), [False] * 3)  # isolated atom
    assert torch.isfinite(iso["energy"]).all() and torch.all(iso["forces"] == 0)
    single = evaluate(model, [[0.2, 0.1, 0.3]], [0], np.eye(3) * 2.5, PBC)  # sees its own images
    assert torch.isfinite(single["energy"]).all() and torch.isfinite(single["virial"]).all()
    assert single["forces"].abs().max() < 1e-12  # every image pair is ± symmetric
    apart = evaluate(model, [[0.0, 0, 0], [6.0, 0, 0]], [0, 1], np.eye(3) * 20.0, PBC)  # no neighbors
    assert torch.all(apart["forces"] == 0) and torch.all(apart["virial"] == 0)
    e_o = evaluate(model, [[0.0, 0, 0]], [0], np.zeros((3, 3)), [False] * 3)["energy"]
    assert apart["energy"].item() == pytest.approx(e_o.item() + iso["energy"].item(), abs=1e-12)


def test_sel_overflow_message(tiny_model):
    pos, types, cell = water_frame()
    model = tiny_model(sel=(4, 48), **M)
    with pytest.raises(ModelError, match=r"frame 0, atom \d+ has \d+ neighbors of 'O'.*raise sel\[0\]"):
        evaluate(model, pos, types, cell, PBC)


def test_pairs_beyond_rcut_count_as_absent(tiny_model):
    pos, types, cell = water_frame()
    model = tiny_model(**M)
    pos_t, cell_t = torch.tensor(pos), torch.tensor(cell).reshape(1, 3, 3)
    nl_skin = neighbor_list(pos_t, cell_t, torch.tensor([PBC]), model.rcut + 1.0)
    a = evaluate(model, pos, types, cell, PBC)
    b = evaluate(model, pos, types, cell, PBC, nl=nl_skin)
    assert len(nl_skin.centers) > 1.3 * len(neighbor_list(pos_t, cell_t, torch.tensor([PBC]), model.rcut).centers)
    for k in ("energy", "forces", "virial"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-13)


def test_batched_equals_separate(tiny_model):
    model = tiny_model(sel=(100, 150), **M)
    p1, t1, c1 = skewed_cell()
    p2, t2, _ = water_frame()
    p2, t2 = p2[:30], t2[:30]
    c2 = np.diag([6.0, 7.0, 6.5])
    testing.check_batch_independence(model, [(p1, t1, c1, PBC), (p2, t2, c2, PBC)],
                                     tolerances={"energy": (1e-13, 1e-12), "forces": (1e-12, 1e-13), "virial": (1e-12, 1e-12)})


def test_forward_matches_evaluate_and_config_roundtrip(tiny_model):
    pos, types, cell = skewed_cell()
    model = tiny_model(sel=(60, 120), **M)
    cfg = model.get_config()
    import json

    clone = EnergyModel.from_config(json.loads(json.dumps(cfg)), device="cpu")
    clone.load_state_dict(model.state_dict())
    assert clone.get_config() == cfg
    pos_t, cell_t = torch.tensor(pos), torch.tensor(cell).reshape(1, 3, 3)
    nl = neighbor_list(pos_t, cell_t, torch.tensor([PBC]), model.rcut)
    fidx = torch.zeros(3, dtype=torch.long)
    out = clone(pos_t, torch.tensor(types), cell_t, fidx, nl.centers, nl.neighbors, nl.shifts, 1)
    ref = evaluate(model, pos, types, cell, PBC)
    torch.testing.assert_close(out["energy"].detach(), ref["energy"], rtol=1e-14, atol=0)
    torch.testing.assert_close(out["atom_energy"].detach(), ref["atom_energy"], rtol=1e-14, atol=0)
    names = set(dict(model.named_parameters()))
    assert "descriptor.embeddings.0.layers.0.matrix" in names and "fitting.nets.1.layers.2.bias" in names
    assert "descriptor.embeddings.1.layers.1.idt" in names  # 4 → 8 layer: concat skip with timestep
    assert {"descriptor.davg", "descriptor.dstd", "fitting.energy_bias"} <= set(model.state_dict())


def test_force_loss_is_differentiable_in_parameters(tiny_model):
    """create_graph=True: d(Σ F²)/dθ by autograd equals a finite difference in one weight θ."""
    pos, types, cell = skewed_cell()
    model = tiny_model(sel=(60, 120), **M)
    theta = model.descriptor.embeddings["1"].layers[1].matrix

    def loss(create_graph):
        out = evaluate(model, pos, types, cell, PBC, create_graph=create_graph)
        return (out["forces"] ** 2).sum() + (out["virial"] ** 2).sum()

    (grad,) = torch.autograd.grad(loss(True), theta)
    h = 1e-5
    with torch.no_grad():
        theta[2, 3] += h
    lp = loss(False).item()
    with torch.no_grad():
        theta[2, 3] -= 2 * h
    lm = loss(False).item()
    with torch.no_grad():
        theta[2, 3] += h
    assert grad[2, 3].item() == pytest.approx((lp - lm) / (2 * h), rel=1e-6, abs=1e-9)
    assert math.isfinite(grad.abs().sum().item())


def test_compute_stats_on_water():
    from mlpot.data.frames import LabeledFrames

    d = DATA / "water" / "data_0" / "set.000"
    pos = np.load(f"{d}/coord.npy").reshape(-1, 192, 3)[:4]
    sys_ = LabeledFrames(["O", "H"], np.loadtxt(DATA / "water" / "data_0" / "type.raw", dtype=np.int64), pos,
                         np.load(f"{d}/box.npy")[:4], PBC, energies=np.load(f"{d}/energy.npy")[:4])
    model = EnergyModel.from_config(testing.tiny_model_config(**M), device="cpu")
    model.compute_stats([sys_], max_frames=2)
    davg, dstd = model.descriptor.davg, model.descriptor.dstd
    assert torch.all(davg[:, 0] > 0) and torch.all(davg[:, 1:] == 0) and torch.all(dstd > 1e-2)
    # one composition: least squares gives the minimum-norm bias reproducing the mean energy
    e = sys_.energies.mean()
    assert (64 * model.fitting.energy_bias[0] + 128 * model.fitting.energy_bias[1]).item() == pytest.approx(e, rel=1e-10)


def test_named_outputs(tiny_model):
    """evaluate(outputs=...) returns exactly the named outputs (energy, atom_energy always); the
    flags of earlier versions (forces=, virial=, atom_virial=) are gone; an unknown name is a ModelError
    naming the known ones."""
    model = tiny_model(**M)
    pos, types, cell = water_frame(24)
    only_e = evaluate(model, pos, types, cell, PBC, outputs=("energy",))
    assert set(only_e) == {"energy", "atom_energy"}
    full = evaluate(model, pos, types, cell, PBC, outputs=("energy", "forces", "virial", "atom_virial"))
    assert list(full) == ["energy", "atom_energy", "forces", "virial", "atom_virial"]
    with pytest.raises(TypeError, match="atom_virial"):
        evaluate(model, pos, types, cell, PBC, atom_virial=True)
    assert torch.equal(only_e["energy"], full["energy"])
    torch.testing.assert_close(full["atom_virial"].sum(0), full["virial"][0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ModelError, match=r"outputs: unknown \['stress'\]"):
        evaluate(model, pos, types, cell, PBC, outputs=("energy", "stress"))
