"""Descriptors against independent references: the DeePMD padded-slot formulation written out
densely (loops over atoms and slots), the switch polynomial, statistics by brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlpot.data import stats
from mlpot.data.frames import LabeledFrames
from mlpot.descriptors.env import edge_env_rows, smooth_switch
from mlpot.descriptors.environment import Environment
from mlpot.errors import ConfigError, ModelError
from mlpot.model import EnergyModel
from mlpot.neighbors import pair_vectors, neighbor_list

RCUT, RCUT_SMTH = 3.2, 0.8


def small_system(seed: int = 0, n: int = 12):
    """A random 2-type periodic box, atoms kept >= 0.9 Å apart."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.0, 0.0, 0.0], [0.6, 4.8, 0.0], [-0.4, 0.5, 5.2]])
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.random(3) @ cell
        if all(np.linalg.norm(p - q) > 0.9 for q in pts):
            pts.append(p)
    types = np.array([0] * (n // 3) + [1] * (n - n // 3))
    return np.array(pts), types, cell


#: the hyperparameters of this file's models (sel (30, 40) unless a test says otherwise); statistics:
#: every column its own random mean and std (``uniform``, seeded with the model seed), no energy bias
D = dict(rcut=RCUT, rcut_smth=RCUT_SMTH, neuron=(3, 6, 12), fitting=(8, 8), seed=3, stats="uniform", stats_seed=3)


def dense_reference(model: EnergyModel, pos, types, cell) -> torch.Tensor:
    """DeePMD's formulation literally: per atom, nnei padded slots grouped by neighbor type,
    empty slots R = 0, normalise every slot, embed every slot, sum, /nnei (Python loops)."""
    desc = model.descriptor
    pos_t = torch.tensor(pos)
    cell_t = torch.tensor(cell).reshape(1, 3, 3)
    nl = neighbor_list(pos_t, cell_t, torch.ones(1, 3, dtype=torch.bool), desc.rcut)
    rij = pair_vectors(pos_t, cell_t, torch.zeros(len(pos), dtype=torch.long), nl)
    radial = desc.radial_only
    k = 1 if radial else 4
    out = []
    for i in range(len(pos)):
        c = int(types[i])
        rows_all = []
        nets = []
        for t in range(desc.ntypes):
            m = (nl.centers == i) & (torch.tensor(types)[nl.neighbors] == t)
            r = rij[m]
            r = r[torch.linalg.vector_norm(r, dim=1) < desc.rcut]
            dist = torch.linalg.vector_norm(r, dim=1, keepdim=True)
            u = (dist - desc.rcut_smth) / (desc.rcut - desc.rcut_smth)
            poly = u**3 * (-6 * u**2 + 15 * u - 10) + 1
            sw = torch.where(dist <= desc.rcut_smth, torch.ones_like(dist), torch.where(dist >= desc.rcut, 0 * dist, poly))
            rows = torch.cat([sw / dist, sw * r / dist**2], dim=1)[:, :k]
            slots = torch.zeros(desc.sel_list[t], k)
            slots[: rows.shape[0]] = rows
            rows_all.append(slots)
            nets += [desc.embedding(c, t)] * desc.sel_list[t]
        rr = torch.cat(rows_all)  # (nnei, k)
        rr = (rr - desc.davg[c]) / desc.dstd[c]
        g = torch.stack([net(rr[s : s + 1, :1])[0] for s, net in enumerate(nets)])  # (nnei, M1)
        if radial:
            out.append(g.sum(0) / desc.nnei / 5.0)
        else:
            a = rr.T @ g / desc.nnei  # (4, M1)
            out.append((a.T @ a[:, : desc.axis_neuron]).reshape(-1))
    return torch.stack(out)


def model_descriptor(model: EnergyModel, pos, types, cell) -> torch.Tensor:
    pos_t = torch.tensor(pos)
    cell_t = torch.tensor(cell).reshape(1, 3, 3)
    fidx = torch.zeros(len(pos), dtype=torch.long)
    nl = neighbor_list(pos_t, cell_t, torch.ones(1, 3, dtype=torch.bool), model.rcut + 1.0)  # skin
    rij = pair_vectors(pos_t, cell_t, fidx, nl)
    keep = torch.linalg.vector_norm(rij, dim=1) < model.rcut
    at = torch.tensor(types)
    nt = at[nl.neighbors[keep]]
    env = Environment(rij[keep], nl.centers[keep], nt, at, model.ntypes, fidx)
    return model.descriptor(env)


def test_switch_values_and_smoothness():
    r = torch.linspace(0.1, RCUT + 1.0, 2001)
    sw = smooth_switch(r, RCUT_SMTH, RCUT)
    assert torch.all(sw[r <= RCUT_SMTH] == 1.0) and torch.all(sw[r >= RCUT] == 0.0)
    u = (1.7 - RCUT_SMTH) / (RCUT - RCUT_SMTH)
    assert smooth_switch(torch.tensor(1.7), RCUT_SMTH, RCUT).item() == pytest.approx(u**3 * (-6 * u**2 + 15 * u - 10) + 1, rel=1e-14)
    # first and second derivatives vanish at both ends (C²): autograd just inside
    for r0 in (RCUT_SMTH + 1e-7, RCUT - 1e-7):
        x = torch.tensor(r0, requires_grad=True)
        (d1,) = torch.autograd.grad(smooth_switch(x, RCUT_SMTH, RCUT), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1, x)
        assert abs(d1.item()) < 1e-10 and abs(d2.item()) < 1e-5
    assert torch.all(torch.diff(sw) <= 0)


def test_env_rows_formula():
    rij = torch.tensor([[0.5, 0.1, -0.2], [1.0, 2.0, 0.3], [0.0, 0.0, 3.1]])
    rows = edge_env_rows(rij, RCUT_SMTH, RCUT)
    d = rij.norm(dim=1, keepdim=True)
    sw = smooth_switch(d, RCUT_SMTH, RCUT)
    torch.testing.assert_close(rows[:, :1], sw / d, rtol=1e-15, atol=0)
    torch.testing.assert_close(rows[:, 1:], sw * rij / d**2, rtol=1e-15, atol=1e-300)
    torch.testing.assert_close(edge_env_rows(rij, RCUT_SMTH, RCUT, radial_only=True), rows[:, :1])


@pytest.mark.parametrize("kind,one_side", [("se_e2_a", True), ("se_e2_a", False), ("se_e2_r", True)])
def test_edge_based_equals_dense_padded_reference(tiny_model, kind, one_side):
    pos, types, cell = small_system(seed=1)
    model = tiny_model(kind, sel=(30, 40), type_one_side=one_side, **D)
    with torch.no_grad():
        ref = dense_reference(model, pos, types, cell)
        got = model_descriptor(model, pos, types, cell)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)


def test_descriptor_statistics_match_brute_force(tiny_model):
    pos, types, cell = small_system(seed=2, n=10)
    model = tiny_model("se_e2_a", sel=(12, 20), type_one_side=True, **D)
    system = LabeledFrames(["O", "H"], types, pos[None], cell[None], [True] * 3, energies=np.array([1.0]))
    model.compute_stats([system], energy_bias=False)
    # brute force: all nnei slots of every atom of type c, empty ones zero, pooled
    desc = model.descriptor
    pos_t, cell_t = torch.tensor(pos), torch.tensor(cell).reshape(1, 3, 3)
    nl = neighbor_list(pos_t, cell_t, torch.ones(1, 3, dtype=torch.bool), desc.rcut)
    rij = pair_vectors(pos_t, cell_t, torch.zeros(len(pos), dtype=torch.long), nl)
    rows = edge_env_rows(rij, desc.rcut_smth, desc.rcut).numpy()
    for c in range(2):
        slot_rows = []
        for i in np.nonzero(types == c)[0]:
            mine = rows[nl.centers.numpy() == i]
            slot_rows.append(np.vstack([mine, np.zeros((desc.nnei - len(mine), 4))]))
        allr = np.vstack(slot_rows)
        std_r = max(allr[:, 0].std(), 1e-2)
        std_a = max(allr[:, 1:].reshape(-1).std(), 1e-2)
        np.testing.assert_allclose(desc.davg[c].numpy(), [allr[:, 0].mean(), 0, 0, 0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(desc.dstd[c].numpy(), [std_r, std_a, std_a, std_a], rtol=1e-12)


def test_stats_protection_and_empty_type():
    sums = np.zeros((2, 2, 3))
    sums[0, 0] = [10, 5.0, 2.5]  # avg 0.5, var 0 → protected
    sums[0, 1] = [30, 0.0, 30 * 1e-6]
    avg, std = stats.env_mean_std(sums, radial_only=False)
    assert avg[0, 0] == pytest.approx(0.5) and std[0, 0] == 1e-2 and std[0, 1] == 1e-2
    assert avg[1].tolist() == [0, 0, 0, 0] and std[1].tolist() == [0.1] * 4  # no atoms of type 1
    avg0, _ = stats.env_mean_std(sums, radial_only=False, set_davg_zero=True)
    assert np.all(avg0 == 0)


def test_energy_bias_least_squares_recovers_per_type_energies():
    rng = np.random.default_rng(0)
    e_true = np.array([-432.1, -13.6, -1027.5])
    counts = rng.integers(0, 20, size=(40, 3))
    energies = counts @ e_true + rng.normal(scale=1e-9, size=40)
    np.testing.assert_allclose(stats.energy_bias_lstsq(counts, energies), e_true, rtol=1e-10)


def test_energy_bias_via_compute_stats(tiny_model):
    """Two water-like compositions with exactly additive energies → the model bias is exact."""
    e_true = {"O": -75.0, "H": -0.5}
    systems = []
    for n_o, n_h, seed in ((4, 8, 0), (5, 7, 1)):
        pos, _, cell = small_system(seed=seed, n=n_o + n_h)
        types = np.array([0] * n_o + [1] * n_h)
        e = n_o * e_true["O"] + n_h * e_true["H"]
        systems.append(LabeledFrames(["O", "H"], types, np.stack([pos, pos + 0.01]), np.stack([cell, cell]), [True] * 3,
                                     energies=np.array([e, e])))
    model = tiny_model("se_e2_a", sel=(30, 40), type_one_side=True, **D)
    model.compute_stats(systems)
    np.testing.assert_allclose(model.fitting.energy_bias.numpy(), [e_true["O"], e_true["H"]], rtol=1e-10)


def test_sel_overflow_raises_model_error(tiny_model):
    pos, types, cell = small_system(seed=1)
    model = tiny_model("se_e2_a", sel=(2, 40), type_one_side=True, **D)
    with pytest.raises(ModelError, match=r"frame 0, atom \d+ has \d+ neighbors of 'O' \(type 0\).*sel\[0\] = 2"):
        from mlpot.model import evaluate

        evaluate(model, pos, types, cell, [True] * 3)


def test_config_errors():
    base = {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [10, 20]}}
    for bad, pat in [
        ({"sel": 30}, "one sel per type"),
        ({"sel": "auto"}, "resolved"),
        ({"type": "se_e3"}, "unsupported"),
        ({"rcut_smth": 5.0}, "rcut_smth < rcut"),
        ({"activation_function": "swish9"}, "unknown activation"),
        ({"exclude_types": [[0, 1]]}, "only"),
    ]:
        cfg = {**base, "descriptor": {**base["descriptor"], **bad}}
        with pytest.raises(ConfigError, match=pat):
            EnergyModel.from_config(cfg, device="cpu")


def test_activations_match_closed_forms():
    from mlpot.nn import activation

    x = torch.linspace(-5, 6, 221)
    gelu_tanh = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(activation("gelu", x), gelu_tanh, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(activation("silu", x), x / (1 + torch.exp(-x)), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(activation("softplus", x), torch.log1p(torch.exp(x)), rtol=1e-12, atol=1e-14)
    # silut: silu below the threshold, tanh continuation above, C¹ at the threshold
    t = 3.0
    y = activation("silut:3.0", torch.tensor([t - 1e-7, t + 1e-7], requires_grad=True))
    assert abs((y[1] - y[0]).item()) < 1e-6
    xs = torch.tensor([t - 1e-6, t + 1e-6], requires_grad=True)
    (g,) = torch.autograd.grad(activation("silut", xs).sum(), xs)
    assert abs((g[1] - g[0]).item()) < 1e-5


@pytest.mark.parametrize("type_split", [True, False])
def test_padded_view_equals_brute_force(type_split):
    """Environment.padded: per center, the neighbors of each type (or all, type_split=False) nearest
    first in their slot block, −1 in empty slots, the farthest dropped when a block overflows (as
    DeePMD-kit does) — against a loop over centers and types."""
    pos, types, cell = small_system(seed=5, n=18)
    pos_t, cell_t = torch.tensor(pos), torch.tensor(cell).reshape(1, 3, 3)
    fidx = torch.zeros(len(pos), dtype=torch.long)
    nl = neighbor_list(pos_t, cell_t, torch.ones(1, 3, dtype=torch.bool), RCUT)
    rij = pair_vectors(pos_t, cell_t, fidx, nl)
    keep = torch.nonzero(torch.linalg.vector_norm(rij, dim=1) < RCUT).reshape(-1)
    at = torch.tensor(types)
    env = Environment(rij[keep], nl.centers[keep], at[nl.neighbors[keep]], at, 2, fidx)
    counts = env.counts()
    sel = [int(counts[:, 0].max()) - 1, int(counts[:, 1].max()) + 2]  # type 0 overflows somewhere: dropped
    if not type_split:
        sel = [sum(sel) - 3]
    index, mask = env.padded(sel if type_split else sel[0], type_split=type_split)
    assert index.shape == (len(pos), sum(sel)) and torch.equal(mask, index >= 0)
    r = torch.linalg.vector_norm(env.rij, dim=1).numpy()
    c, nt = env.center.numpy(), env.neighbor_type.numpy()
    want = np.full((len(pos), sum(sel)), -1)
    blocks = [[0], [1]] if type_split else [[0, 1]]
    for i in range(len(pos)):
        start = 0
        for b, tt in enumerate(blocks):
            edges = [e for e in range(len(c)) if c[e] == i and nt[e] in tt]
            edges = sorted(edges, key=lambda e: (r[e], e))[: sel[b]]
            want[i, start : start + len(edges)] = edges
            start += sel[b]
    assert np.array_equal(index.numpy(), want)
    assert bool((counts[:, 0] > sel[0]).any()) or not type_split  # the overflow case was exercised
    assert env.padded(sel if type_split else sel[0], type_split=type_split)[0] is index  # cached


def test_toy_descriptor_registered_from_the_test_file():
    """A descriptor defined and registered here (config class + module taking (config, ntypes) and
    forward(env)) builds through EnergyModel.from_config and evaluates with forces = −∂E/∂r."""
    from typing import Literal

    from mlpot.config.model import DescriptorConfig
    from mlpot.descriptors import DESCRIPTORS
    from mlpot.model import evaluate

    class ToyConfig(DescriptorConfig):
        type: Literal["toy_radial"] = "toy_radial"
        width: float = 1.0

    @DESCRIPTORS.register("toy_radial", config=ToyConfig)
    class ToyRadial(torch.nn.Module):
        """D_i[t] = Σ_{j of type t, r_ij < rcut} exp(−r_ij / width) · (1 − r_ij / rcut)²."""

        def __init__(self, config: ToyConfig, ntypes: int) -> None:
            super().__init__()
            self.config, self.ntypes, self.rcut, self.dtype = config, ntypes, config.rcut, torch.float64
            self.dim_out = ntypes

        def get_config(self) -> dict:
            return self.config.model_dump(by_alias=True)

        def forward(self, env: Environment) -> torch.Tensor:
            r = torch.linalg.vector_norm(env.rij, dim=-1)
            g = torch.exp(-r / self.config.width) * (1 - r / self.rcut) ** 2
            out = torch.zeros(env.n_centers * self.ntypes, dtype=self.dtype, device=r.device)
            return out.index_add(0, env.center * self.ntypes + env.neighbor_type, g).reshape(env.n_centers, self.ntypes)

    try:
        cfg = {"type_map": ["O", "H"], "descriptor": {"type": "toy_radial", "rcut": RCUT, "width": 0.7},
               "fitting_net": {"neuron": [6, 6], "seed": 2}}
        model = EnergyModel.from_config(cfg, device="cpu")
        assert isinstance(model.descriptor, ToyRadial) and EnergyModel.from_config(model.get_config(), device="cpu")
        pos, types, cell = small_system(seed=2)
        out = evaluate(model, pos, types, cell, [True] * 3)
        h = 1e-5
        for atom, d in [(0, 0), (5, 2)]:
            e = []
            for s in (h, -h):
                p = pos.copy()
                p[atom, d] += s
                with torch.no_grad():
                    e.append(float(evaluate(model, p, types, cell, [True] * 3, outputs=("energy",))["energy"][0]))
            assert abs(-(e[0] - e[1]) / (2 * h) - float(out["forces"][atom, d])) < 1e-7
    finally:
        DESCRIPTORS.remove("toy_radial")
