"""Training: schedules and loss against hand computation, batching, a short real training, restart,
checkpoints, fine-tuning, and the `mlpot train` / `mlpot plot` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpot.errors import ConfigError
from mlpot.train.data import BatchSource, system_probabilities
from mlpot.train.loss import EnergyLoss
from mlpot.train.schedule import ExpDecayLR, prefactor

ROOT = Path(__file__).resolve().parent.parent
MOLECULES = ROOT / "data" / "molecules_nopbc"
WATER = ROOT / "data" / "water"


def tiny_config(train, valid=None, steps=10, **training) -> dict:
    """A tiny se_e2_a model (neuron [4, 8], axis_neuron 4, fitting [16, 16], rcut 4 Å) on molecules."""
    cfg = {
        "model": {
            "type_map": ["C", "H", "O"],
            "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [4, 6, 4],
                           "neuron": [4, 8], "axis_neuron": 4, "seed": 1},
            "fitting_net": {"neuron": [16, 16], "seed": 1},
        },
        "learning_rate": {"start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 5},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(p) for p in train], "batch_size": "auto"},
                     "numb_steps": steps, "seed": 7, "disp_freq": 1, "save_freq": 5, "device": "cpu"},
    }
    if valid is not None:
        cfg["training"]["validation_data"] = {"systems": [str(p) for p in valid], "batch_size": 4, "numb_btch": 2}
    cfg["training"].update(training)
    return cfg


MOL_SYSTEMS = [MOLECULES / n for n in ("C1H4O2", "C3H3O4", "C4H3O1")]


# ----------------------------------------------------------------------------- schedules
def test_lr_schedule_hand_values():
    lr = ExpDecayLR(start_lr=1e-3, stop_lr=1e-5, decay_steps=10, numb_steps=100)
    rate = 10 ** (-0.2)  # (1e-5/1e-3)^(10/100)
    assert lr.decay_rate == pytest.approx(rate, rel=1e-14)
    assert lr.value(0) == 1e-3 and lr.value(9) == 1e-3  # stepped, not continuous
    assert lr.value(10) == pytest.approx(1e-3 * rate, rel=1e-13)
    assert lr.value(55) == pytest.approx(1e-3 * rate**5, rel=1e-13)
    assert lr.value(99) == pytest.approx(1e-3 * rate**9, rel=1e-13)
    assert lr.value(100) == pytest.approx(1e-5, rel=1e-12)
    assert lr.value(10_000) == 1e-5  # clamped at stop_lr


def test_lr_decay_steps_replacement_and_explicit_rate():
    # decay_steps >= numb_steps: DeePMD-kit uses 100 if numb_steps // 10 > 100 else numb_steps // 100 + 1
    assert ExpDecayLR(1e-3, 1e-8, 5000, 50).effective_decay_steps == 1
    assert ExpDecayLR(1e-3, 1e-8, 5000, 1000).effective_decay_steps == 11
    assert ExpDecayLR(1e-3, 1e-8, 50000, 20000).effective_decay_steps == 100
    lr = ExpDecayLR(1e-3, 1e-5, 10, 100, decay_rate_override=0.5)
    assert lr.value(25) == pytest.approx(1e-3 * 0.25) and lr.value(1000) == 1e-5


def test_prefactor_schedule():
    # DeePMD example: pref_f 1000 -> 1, pref_e 0.02 -> 1
    assert prefactor(1000, 1, 1e-3, 1e-3) == 1000
    assert prefactor(1000, 1, 1e-4, 1e-3) == pytest.approx(1 + 999 * 0.1)
    assert prefactor(0.02, 1, 3.51e-8, 1e-3) == pytest.approx(1 - 0.98 * 3.51e-5)
    loss = EnergyLoss(start_lr=1e-3, start_pref_e=0.02, limit_pref_e=1, start_pref_f=1000, limit_pref_f=1,
                      start_pref_v=2, limit_pref_v=4)
    assert loss.prefactors(5e-4) == pytest.approx((0.51, 500.5, 3.0))


# ----------------------------------------------------------------------------- loss
def test_loss_matches_hand_computation():
    rng = np.random.default_rng(0)
    b, n = 3, 5
    e, e0 = rng.normal(size=b), rng.normal(size=b)
    f, f0 = rng.normal(size=(b * n, 3)), rng.normal(size=(b * n, 3))
    v, v0 = rng.normal(size=(b, 3, 3)), rng.normal(size=(b, 3, 3))
    loss_fn = EnergyLoss(start_lr=1e-3, start_pref_e=0.5, limit_pref_e=2, start_pref_f=10, limit_pref_f=1,
                         start_pref_v=3, limit_pref_v=1)
    lr = 2.5e-4
    pe, pf, pv = 2 + (0.5 - 2) * 0.25, 1 + 9 * 0.25, 1 + 2 * 0.25
    t = torch.as_tensor
    loss, m = loss_fn(lr, n, t(e), t(e0), t(f), t(f0), t(v), t(v0))
    # DeePMD-kit normalisation: (1/N)·mean ΔE², per-component mean ΔF², (1/N)·mean ΔW²
    expect = pe / n * np.mean((e - e0) ** 2) + pf * np.mean((f - f0) ** 2) + pv / n * np.mean((v - v0) ** 2)
    assert float(loss) == pytest.approx(expect, rel=1e-14)
    assert m["rmse"] == pytest.approx(math.sqrt(expect), rel=1e-14)
    assert m["rmse_e"] == pytest.approx(np.sqrt(np.mean((e - e0) ** 2)) / n, rel=1e-14)
    assert m["rmse_f"] == pytest.approx(np.sqrt(np.mean((f - f0) ** 2)), rel=1e-14)
    assert m["rmse_v"] == pytest.approx(np.sqrt(np.mean((v - v0) ** 2)) / n, rel=1e-14)
    # data without virials: no virial term, rmse_v shown as NaN
    loss2, m2 = loss_fn(lr, n, t(e), t(e0), t(f), t(f0), None, None)
    assert float(loss2) == pytest.approx(expect - pv / n * np.mean((v - v0) ** 2), rel=1e-14)
    assert math.isnan(m2["rmse_v"])


def test_loss_terms_and_columns():
    assert EnergyLoss(1e-3).metric_keys == ["rmse", "rmse_e", "rmse_f"]
    assert EnergyLoss(1e-3, start_pref_v=1, limit_pref_v=1).metric_keys == ["rmse", "rmse_e", "rmse_f", "rmse_v"]
    # as in DeePMD-kit, a term needs both prefactors non-zero
    assert EnergyLoss(1e-3, start_pref_e=0.02, limit_pref_e=0.0).metric_keys == ["rmse", "rmse_f"]


# ----------------------------------------------------------------------------- batching
def test_system_probabilities():
    assert system_probabilities([80, 160, 80]).tolist() == [0.25, 0.5, 0.25]  # DeePMD water example
    assert system_probabilities([1, 3], "prob_uniform").tolist() == [0.5, 0.5]
    p = system_probabilities([1, 3, 2, 2], "prob_sys_size;0:2:0.2;2:4:0.8")
    assert p == pytest.approx([0.05, 0.15, 0.4, 0.4])
    assert system_probabilities([1, 1], sys_probs=[1, 3]).tolist() == [0.25, 0.75]


def test_batch_source_sizes_draws_and_determinism():
    from mlpot.data.io import load_systems

    systems = load_systems([MOLECULES], type_map=["C", "H", "O"])
    src = BatchSource(systems, "auto", seed=3)
    # auto: smallest bs with bs·natoms >= 32; batches per system = ceil(n_frames / bs)
    assert [s.n_atoms for s in systems] == [7, 10, 8]
    assert src.batch_sizes == [5, 4, 4]
    assert src.n_batches == [-(-1562 // 5), -(-485 // 4), -(-15 // 4)]
    counts = np.bincount([src.indices(t)[0] for t in range(3000)], minlength=3) / 3000
    assert counts == pytest.approx(src.probs, abs=0.03)
    sys_id, frames = src.indices(11, rank=1)
    assert np.array_equal(frames, src.indices(11, rank=1)[1]) and len(set(frames.tolist())) == len(frames)
    assert any(not np.array_equal(src.indices(t, 0)[1], src.indices(t, 1)[1]) for t in range(5))
    b = src.batch(11, rank=1)
    s = systems[sys_id]
    assert b.n_frames == len(frames) and b.positions.shape == (len(frames) * s.n_atoms, 3)
    assert torch.equal(b.positions.reshape(len(frames), s.n_atoms, 3), torch.as_tensor(s.positions[frames]))
    assert torch.equal(b.forces.reshape(len(frames), s.n_atoms, 3), torch.as_tensor(s.forces[frames]))
    assert b.frame_index.tolist() == sum(([k] * s.n_atoms for k in range(len(frames))), [])


def test_batch_source_shuffled_passes_cover_every_frame_once():
    """Training batches visit each system's frames in shuffled passes (DeePMD-kit's loaders): every
    frame exactly once per pass, a new order each pass; stateless across the system-draw blocks."""
    from mlpot.data.io import load_systems
    from mlpot.train import data as data_mod

    systems = load_systems([MOLECULES], type_map=["C", "H", "O"])
    src = BatchSource(systems, "auto", seed=5)
    assert src.frame_order == "passes"
    seen: dict[int, list[np.ndarray]] = {0: [], 1: [], 2: []}
    for t in range(data_mod.SYSTEM_BLOCK + 600):  # crosses a block boundary
        sys_id, frames = src.indices(t)
        seen[sys_id].append(frames)
    sid = 2  # 15 frames, batch 4: passes of 4 batches (4, 4, 4, 3 frames)
    nb = src.n_batches[sid]
    batches = seen[sid]
    assert len(batches) >= 3 * nb
    orders = []
    for p in range(len(batches) // nb):
        one_pass = np.concatenate(batches[p * nb : (p + 1) * nb])
        assert sorted(one_pass.tolist()) == list(range(systems[sid].n_frames))
        assert [len(b) for b in batches[p * nb : (p + 1) * nb]] == [4, 4, 4, 3]
        orders.append(tuple(one_pass.tolist()))
    assert len(set(orders)) > 1
    # pure function of (seed, step, rank): a fresh source (a restart) agrees, also past the first block
    fresh = BatchSource(systems, "auto", seed=5)
    for t in (data_mod.SYSTEM_BLOCK + 599, 7, data_mod.SYSTEM_BLOCK):
        a, b = fresh.indices(t), src.indices(t)
        assert a[0] == b[0] and np.array_equal(a[1], b[1])
    # system frequencies still follow prob_sys_size; ranks draw different sequences
    counts = np.bincount([src.indices(t)[0] for t in range(3000)], minlength=3) / 3000
    assert counts == pytest.approx(src.probs, abs=0.03)
    assert any(src.indices(t, 0)[0] != src.indices(t, 1)[0] for t in range(10))
    with pytest.raises(ConfigError, match="frame_order"):
        BatchSource(systems, "auto", seed=5, frame_order="sequential")


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def water_subset(tmp_path_factory) -> tuple[Path, Path]:
    from mlpot.data import io

    d = tmp_path_factory.mktemp("water_subset")
    io.write_deepmd(io.read_deepmd(WATER / "data_0").subset(np.arange(0, 80, 8)), d / "train")
    io.write_deepmd(io.read_deepmd(WATER / "data_3").subset(np.arange(0, 80, 20)), d / "valid")
    return d / "train", d / "valid"


@pytest.mark.slow
def test_training_lowers_force_rmse_on_water(tmp_path, water_subset):
    from mlpot.train.trainer import Trainer

    train, valid = water_subset
    cfg = tiny_config([train], [valid], steps=200, disp_freq=50, save_freq=1000)
    cfg["model"]["type_map"] = ["O", "H"]
    cfg["model"]["descriptor"]["sel"] = [20, 40]
    cfg["learning_rate"] = {"start_lr": 0.02, "stop_lr": 2e-3, "decay_steps": 20}
    cfg["training"]["training_data"]["batch_size"] = 1
    cfg["training"]["validation_data"]["batch_size"] = 2
    trainer = Trainer.from_config(cfg, output_dir=tmp_path, quiet=True)
    before = trainer.validate(0, trainer.lr_schedule.value(0))  # after the statistics, before any step
    history = trainer.train()
    after = history[-1]
    assert [int(r["step"]) for r in history] == [1, 50, 100, 150, 200]
    assert after["rmse_f_val"] < 0.65 * before["rmse_f"], (before, after)
    # the bias refit leaves ~5e-3 eV/atom before step 0; with start_pref_e 0.02 the first 200 steps
    # train forces, so the energy error must stay small rather than fall
    assert before["rmse_e"] < 0.02 and after["rmse_e_val"] < 0.02
    assert after["rmse_val"] < 0.3 * before["rmse"]


def test_restart_continues_exactly(tmp_path):
    from mlpot.train.trainer import Trainer

    cfg = tiny_config(MOL_SYSTEMS, [MOLECULES / "C3H3O4"], steps=20)
    full = Trainer.from_config(cfg, output_dir=tmp_path / "full", quiet=True).train()
    first = Trainer.from_config(cfg, output_dir=tmp_path / "split", quiet=True)
    first.train(stop_at=10)
    ckpt = tmp_path / "split" / "model.ckpt.pt"
    second = Trainer.from_config(cfg, output_dir=tmp_path / "split", quiet=True, restart=ckpt)
    assert second.start_step == 10
    rest = second.train()
    assert len(full) == 20 and [r["step"] for r in rest] == list(range(11, 21))
    for a, b in zip(full, first.history + rest):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-14), (a["step"], k)
    assert (tmp_path / "full" / "lcurve.out").read_text() == (tmp_path / "split" / "lcurve.out").read_text()
    # restarting from an older numbered checkpoint rewinds the learning curve to that step
    again = Trainer.from_config(cfg, output_dir=tmp_path / "split", quiet=True, restart=tmp_path / "split" / "model.ckpt-15.pt")
    again.train()
    assert (tmp_path / "full" / "lcurve.out").read_text() == (tmp_path / "split" / "lcurve.out").read_text()
    assert again.history[-1]["rmse_val"] == pytest.approx(full[-1]["rmse_val"], rel=1e-12)


def test_checkpoints(tmp_path):
    from mlpot.train.trainer import Trainer

    cfg = tiny_config(MOL_SYSTEMS, steps=7, save_freq=2, max_ckpt_keep=2)
    trainer = Trainer.from_config(cfg, output_dir=tmp_path, quiet=True)
    trainer.train()
    names = sorted(p.name for p in tmp_path.glob("model.ckpt*.pt"))
    assert names == ["model.ckpt-6.pt", "model.ckpt-7.pt", "model.ckpt.pt"]  # last 2 numbered + latest
    ckpt = torch.load(tmp_path / "model.ckpt.pt", weights_only=True)
    assert ckpt["step"] == 7 and ckpt["format"] == "mlpot-checkpoint"
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)
    assert isinstance(ckpt["rng_torch"], torch.Tensor)
    cfg_back = json.loads(ckpt["config"])
    assert cfg_back["model"] == trainer.model_cfg and cfg_back["training"]["seed"] == 7
    from mlpot.model import EnergyModel

    rebuilt = EnergyModel.from_config(cfg_back["model"], device="cpu")
    rebuilt.load_state_dict(ckpt["model"])  # the stored model config rebuilds the architecture


def test_init_model_from_frozen_model(tmp_path):
    from mlpot.export import save_model
    from mlpot.train.trainer import Trainer

    base = Trainer.from_config(tiny_config(MOL_SYSTEMS, steps=3), output_dir=tmp_path / "a", quiet=True)
    base.train()
    save_model(base.model, tmp_path / "base.pt")
    cfg = tiny_config(MOL_SYSTEMS, steps=3, seed=99)
    fine = Trainer.from_config(cfg, output_dir=tmp_path / "b", quiet=True, init_model=tmp_path / "base.pt")
    assert fine.start_step == 0
    for k, v in base.model.state_dict().items():
        assert torch.equal(fine.model.state_dict()[k], v), k
    fresh = Trainer.from_config(cfg, output_dir=tmp_path / "c", quiet=True)
    assert any(not torch.equal(fresh.model.state_dict()[k], v) for k, v in base.model.state_dict().items())


def test_virial_column_without_virial_data(tmp_path):
    from mlpot.train.trainer import Trainer

    cfg = tiny_config([MOLECULES / "C4H3O1"], [MOLECULES / "C4H3O1"], steps=1)
    cfg["loss"].update(start_pref_v=1, limit_pref_v=1)
    Trainer.from_config(cfg, output_dir=tmp_path, quiet=True).train()
    lines = (tmp_path / "lcurve.out").read_text().splitlines()
    assert lines[0].split() == ["#", "step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val",
                                "rmse_f_trn", "rmse_v_val", "rmse_v_trn", "lr"]
    assert lines[1].split()[-3:-1] == ["nan", "nan"]


def test_cli_train_freeze_and_plot(tmp_path):
    from mlpot.cli import main
    from mlpot.export import load_model
    from mlpot.model import evaluate
    from mlpot.plot import read_lcurve

    cfg = tiny_config([MOLECULES / "C4H3O1"], [MOLECULES / "C4H3O1"], steps=4, disp_freq=2)
    (tmp_path / "in.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    assert main(["train", str(tmp_path / "in.json"), "-o", str(out), "--quiet", "--device", "cpu"]) == 0
    header = (out / "lcurve.out").read_text().splitlines()[0]
    # DeePMD-kit's header, column for column (deepmd/pt/train/training.py print_header)
    assert header == "#  step      rmse_val    rmse_trn    rmse_e_val  rmse_e_trn    rmse_f_val  rmse_f_trn         lr"
    cols = read_lcurve(out / "lcurve.out")
    assert cols["step"].tolist() == [1, 2, 4]
    # the frozen model is the trained model
    frozen = load_model(out / "model.pt", device="cpu")
    ckpt = torch.load(out / "model.ckpt.pt", weights_only=True)
    from mlpot.data.io import read_deepmd

    s = read_deepmd(MOLECULES / "C4H3O1", type_map=["C", "H", "O"])
    from mlpot.model import EnergyModel

    trained = EnergyModel.from_config(json.loads(ckpt["config"])["model"], device="cpu")
    trained.load_state_dict(ckpt["model"])
    args = (s.positions[0], s.atom_types, s.cells[0], s.pbc)
    e1, e2 = evaluate(frozen, *args)["energy"], evaluate(trained, *args)["energy"]
    assert torch.allclose(e1, e2, rtol=0, atol=1e-12)
    assert main(["plot", str(out / "lcurve.out"), "-o", str(tmp_path / "lc.png")]) == 0
    png = (tmp_path / "lc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_cli_errors_are_one_line(tmp_path, capsys):
    from mlpot.cli import main

    cfg = tiny_config([MOLECULES / "C4H3O1"], steps=1)
    cfg["model"]["descriptor"]["rcut"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "bad.json"), "-o", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlpot train: error:") and "model.descriptor.rcut" in err and "\n" not in err
    assert main(["plot", str(tmp_path / "absent.out")]) == 2


def test_hdf5_dataset_and_float32(tmp_path):
    """Systems may be our HDF5 store; training.precision overrides the model precision."""
    from mlpot.data.io import load_systems
    from mlpot.data.store import write_hdf5
    from mlpot.train.trainer import Trainer

    systems = load_systems(MOL_SYSTEMS, type_map=["C", "H", "O"])
    write_hdf5(tmp_path / "mol.h5", systems)
    cfg = tiny_config([tmp_path / "mol.h5"], steps=2, precision="float32")
    trainer = Trainer.from_config(cfg, output_dir=tmp_path, quiet=True)
    assert [s.n_frames for s in trainer.train_systems] == [s.n_frames for s in systems]
    assert trainer.dtype == torch.float32 and trainer.train_src.batch(0).positions.dtype == torch.float32
    history = trainer.train()
    assert all(math.isfinite(v) for v in history[-1].values())


def test_initial_energy_bias_absorbs_network_offset(tmp_path):
    """After initialisation the per-type bias is refit to (label − initial model energy): the random
    fitting nets' mean output (≈ 0.8 eV/atom for a [240, 240, 240] net on water) must not remain.
    With one composition (64 O + 128 H in every frame) least squares makes the mean residual over the
    statistics frames exactly zero."""
    from mlpot.data import stats as stats_mod
    from mlpot.model import evaluate
    from mlpot.train.trainer import Trainer

    cfg = tiny_config([WATER / "data_0"], steps=1)
    cfg["model"]["type_map"] = ["O", "H"]
    cfg["model"]["descriptor"].update(sel=[20, 40], neuron=[4, 8])
    cfg["model"]["fitting_net"]["neuron"] = [32, 32, 32]
    cfg["training"]["training_data"]["batch_size"] = 1
    trainer = Trainer.from_config(cfg, output_dir=tmp_path, quiet=True)
    system = trainer.train_systems[0]
    nfr = trainer.config.model.data_stat_nbatch * 1  # batch size 1: the frames the trainer used
    idx = stats_mod.subsample_indices(system.n_frames, nfr, trainer.seed)
    sub = system.subset(idx)
    nf, na = sub.n_frames, sub.n_atoms
    out = evaluate(
        trainer.model,
        torch.as_tensor(sub.positions).reshape(-1, 3),
        torch.as_tensor(sub.atom_types).repeat(nf),
        torch.as_tensor(sub.cells),
        torch.ones(nf, 3, dtype=torch.bool),
        frame_index=torch.arange(nf).repeat_interleave(na),
        outputs=("energy",),
    )
    residual = (sub.energies - out["energy"].detach().numpy()) / na  # eV/atom
    assert abs(residual.mean()) < 1e-10
    assert np.sqrt(np.mean(residual**2)) < 0.02  # only the frame-to-frame scatter of a random net remains


def test_training_on_hdf5_reads_only_the_batches(tmp_path, monkeypatch):
    """Training on an HDF5 store reads frames lazily: SystemView.read is only ever asked for a batch's
    frames or the statistics' subsample, never for all frames of a system (nothing caches whole
    systems), and the losses and weights equal training on the same data loaded in memory."""
    from mlpot.data.io import load_systems
    from mlpot.data.store import SystemView, write_hdf5
    from mlpot.train.trainer import Trainer

    big = [MOLECULES / "C1H4O2", MOLECULES / "C3H3O4"]  # 1562 and 485 frames
    write_hdf5(tmp_path / "train.h5", load_systems(big, type_map=["C", "H", "O"]))
    write_hdf5(tmp_path / "valid.h5", load_systems([MOLECULES / "C3H3O4"], type_map=["C", "H", "O"]))
    mem = Trainer.from_config(tiny_config(big, [MOLECULES / "C3H3O4"], steps=6), output_dir=tmp_path / "mem", quiet=True)
    ref = mem.train()

    requests: list[tuple[str, int, int]] = []
    real_read = SystemView.read

    def spy(self, frames=None):
        n = self.n_frames if frames is None else np.arange(self.n_frames)[frames].size
        requests.append((self.name, n, self.n_frames))
        assert n < self.n_frames, f"{self.name}: read {n} of {self.n_frames} frames at once"
        return real_read(self, frames)

    monkeypatch.setattr(SystemView, "read", spy)
    cfg = tiny_config([tmp_path / "train.h5"], [tmp_path / "valid.h5"], steps=6)
    lazy = Trainer.from_config(cfg, output_dir=tmp_path / "lazy", quiet=True)
    assert all(isinstance(s, SystemView) for s in lazy.train_systems + lazy.valid_src.systems)
    got = lazy.train()
    assert lazy.train_src._tensors == {} and lazy.valid_src._tensors == {}  # no whole-system cache
    # statistics: one subsample per system (data_stat_nbatch x batch size = 50 frames), then batches
    assert [r[1] for r in requests[:2]] == [50, 50]
    assert max(r[1] for r in requests[2:]) <= max(lazy.train_src.batch_sizes + lazy.valid_src.batch_sizes)
    assert len(requests) >= 2 + 6
    assert len(got) == len(ref) == 6
    for a, b in zip(ref, got):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-12, abs=1e-14), (a["step"], k)
    for k, v in mem.model.state_dict().items():
        assert torch.allclose(lazy.model.state_dict()[k], v, rtol=1e-12, atol=1e-14), k
