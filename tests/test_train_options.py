"""DeePMD-kit training options beyond the basic ones: ``sel: "auto[:R]"`` (neighbor statistics of the
training data), ``learning_rate.smooth`` and the learning-rate warm-up (``warmup_steps`` /
``warmup_ratio`` / ``warmup_start_factor``, also in their DeePMD-kit 3.0/3.1 place under ``training``).

References: brute-force pair counts (numpy), and learning rates computed by hand from the formulas of
DeePMD-kit 3.x (``deepmd/dpmodel/utils/learning_rate.py``, ``deepmd/utils/update_sel.py``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpot.config import auto_sel, load_config, parse_auto_sel
from mlpot.errors import ConfigError, ModelError
from mlpot.train.schedule import ExpDecayLR, lr_schedule_from_config

ROOT = Path(__file__).resolve().parent.parent
MOLECULES = ROOT / "data" / "molecules_nopbc"
WATER = ROOT / "data" / "water"
MOL_SYSTEMS = [MOLECULES / n for n in ("C1H4O2", "C3H3O4", "C4H3O1")]
TYPE_MAP = ["C", "H", "O"]


def small_config(steps: int = 2, sel=None, learning_rate: dict | None = None, **training) -> dict:
    """A tiny se_e2_a model (rcut 4 Å) on the three bundled molecules."""
    desc = {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4, "seed": 1}
    if sel is not None:
        desc["sel"] = sel
    cfg = {
        "model": {"type_map": TYPE_MAP, "descriptor": desc, "fitting_net": {"neuron": [8], "seed": 1}},
        "learning_rate": {"start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 5, **(learning_rate or {})},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(p) for p in MOL_SYSTEMS], "batch_size": 2},
                     "numb_steps": steps, "seed": 3, "disp_freq": 1, "save_freq": 1000, "device": "cpu",
                     "progress_bar": False},
    }
    cfg["training"].update(training)
    return cfg


def brute_force_max_neighbors(systems: list[Path], type_map: list[str], rcut: float) -> list[int]:
    """Largest number of neighbors of each type within rcut (d < rcut) around any atom of any frame of
    non-periodic DeePMD systems: all pair distances, numpy."""
    best = np.zeros(len(type_map), dtype=int)
    for d in systems:
        names = (d / "type_map.raw").read_text().split()
        types = np.array([type_map.index(names[t]) for t in np.loadtxt(d / "type.raw", dtype=int).reshape(-1)])
        n = len(types)
        for setdir in sorted(d.glob("set.*")):
            pos = np.load(setdir / "coord.npy").reshape(-1, n, 3)
            dist = np.linalg.norm(pos[:, :, None, :] - pos[:, None, :, :], axis=-1)  # (F, N, N)
            within = (dist < rcut) & ~np.eye(n, dtype=bool)
            for t in range(len(type_map)):
                counts = within[:, :, types == t].sum(axis=-1)  # (F, N)
                best[t] = max(best[t], int(counts.max()) if counts.size else 0)
    return best.tolist()


# ----------------------------------------------------------------------------- sel: "auto"
def test_auto_sel_rule_by_hand():
    # DeePMD-kit: 4 · ceil(floor(n · R) / 4)
    assert auto_sel([46, 92], 1.1) == [52, 104]  # 50.6 -> 50 -> 52, 101.2 -> 101 -> 104
    assert auto_sel([38, 72]) == [44, 80]  # default R = 1.1: 41.8 -> 41 -> 44, 79.2 -> 79 -> 80
    assert auto_sel([4], 2.1) == [8]  # 8.4 truncates to 8 first, so not 12
    assert auto_sel([0, 1, 4, 5], 1.0) == [0, 4, 4, 8]
    assert parse_auto_sel("auto") == 1.1 and parse_auto_sel("auto:1.2") == 1.2 and parse_auto_sel([4, 4]) is None
    for bad in ("automatic", "auto:", "auto:x", "auto:0.9", "auto:1.2:3", "Auto"):
        with pytest.raises(ValueError):
            parse_auto_sel(bad)


def test_config_sel_forms(tmp_path):
    def sel_of(sel):
        return load_config(small_config(sel=sel)).model.descriptor.sel

    assert sel_of(None) == "auto"  # DeePMD-kit 3.x's default
    assert sel_of("auto:1.25") == "auto:1.25" and sel_of([4, 6, 4]) == [4, 6, 4]
    for bad in ("auto:0.5", "max"):
        with pytest.raises(ConfigError, match=r"model\.descriptor\.sel.*'auto:R'"):
            load_config(small_config(sel=bad))
    # a single int is not a per-type sel for three types (DeePMD-kit's se_e2_a takes list[int] | str)
    with pytest.raises(ConfigError, match=r"model.*descriptor\.sel.*single int 12"):
        load_config(small_config(sel=12))
    one = small_config(sel=12)
    one["model"]["type_map"] = ["O"]
    assert load_config(one).model.descriptor.sel == 12


def test_neighbor_statistics_match_deepmd_on_water():
    """DeePMD-kit 3.2.0's ``UpdateSel().update_one_sel`` on data/water/data_{0,1,2} with rcut 4 Å and
    "auto:1.5" gave sel [24, 40] (max neighbors [16, 26]); mlpot's neighbor statistics agree."""
    from mlpot.data.io import load_systems
    from mlpot.data.neighbor_stat import neighbor_stat

    systems = load_systems([WATER / f"data_{k}" for k in range(3)], type_map=["O", "H"])
    stat = neighbor_stat(systems, 4.0, device="cpu")
    assert auto_sel(stat.max_nbor, parse_auto_sel("auto:1.5")) == [24, 40]


def test_trainer_resolves_auto_sel_and_records_it(tmp_path):
    from mlpot.export import load_model
    from mlpot.train.trainer import Trainer

    ratio = 2.5  # [3, 4, 4] -> [7.5, 10, 10] -> [7, 10, 10] -> [8, 12, 12]
    expected = [4 * math.ceil(math.floor(n * ratio) / 4) for n in brute_force_max_neighbors(MOL_SYSTEMS, TYPE_MAP, 4.0)]
    logs: list[str] = []
    trainer = Trainer.from_config(small_config(steps=2, sel=f"auto:{ratio}"), output_dir=tmp_path / "a", log=logs.append)
    assert trainer.model.descriptor.sel_list == expected
    assert trainer.model_cfg["descriptor"]["sel"] == expected and trainer.config.model.descriptor.sel == expected
    assert any(f"'auto:{ratio}' -> {expected}" in line for line in logs), logs
    trainer.train()
    ckpt = torch.load(tmp_path / "a" / "model.ckpt.pt", weights_only=True)
    saved = json.loads(ckpt["config"])
    assert saved["model"]["descriptor"]["sel"] == expected
    frozen = load_model(trainer.freeze(), device="cpu")
    assert frozen.get_config()["descriptor"]["sel"] == expected
    assert frozen.metadata["training_config"]["model"]["descriptor"]["sel"] == expected
    # the recorded config trains again as it is (explicit sel now)
    again = load_config(saved)
    assert again.model.descriptor.sel == expected
    # a restart keeps the sel its checkpoint was trained with, whatever "auto:R" now says
    logs.clear()
    restarted = Trainer.from_config(small_config(steps=3, sel="auto:3.0"), output_dir=tmp_path / "a",
                        restart=tmp_path / "a" / "model.ckpt.pt", log=logs.append)
    assert restarted.model.descriptor.sel_list == expected and restarted.start_step == 2
    assert any("from the restart checkpoint" in line for line in logs)
    # so does init_model (a frozen model here); an explicit sel that differs from the trained one is refused
    fine = Trainer.from_config(small_config(steps=1, sel="auto"), output_dir=tmp_path / "b", init_model=tmp_path / "a" / "model.pt",
                   quiet=True)
    assert fine.model.descriptor.sel_list == expected
    other = [n + 4 for n in expected]
    with pytest.raises(ModelError, match=rf"trained with model\.descriptor\.sel = \{expected}.*\{other}"):
        Trainer.from_config(small_config(steps=1, sel=other), output_dir=tmp_path / "c", init_model=tmp_path / "a" / "model.pt",
                quiet=True)


def test_auto_sel_with_nothing_in_range_is_a_config_error(tmp_path):
    from mlpot.train.trainer import Trainer

    cfg = small_config(sel="auto")
    cfg["model"]["descriptor"].update(rcut=0.3, rcut_smth=0.1)  # shortest pair in the data is 0.515 Å
    with pytest.raises(ConfigError, match=r"model\.descriptor\.sel.*no neighbor within rcut = 0\.3"):
        Trainer.from_config(cfg, output_dir=tmp_path, quiet=True)


# ----------------------------------------------------------------------------- learning rate
def test_smooth_decay_by_hand():
    rate = 10 ** (-0.2)  # (1e-5 / 1e-3)^(10/100)
    smooth = ExpDecayLR(1e-3, 1e-5, decay_steps=10, numb_steps=100, smooth=True)
    stepped = ExpDecayLR(1e-3, 1e-5, decay_steps=10, numb_steps=100)
    assert smooth.value(0) == 1e-3
    for t in (1, 5, 9, 37, 99):
        assert smooth.value(t) == pytest.approx(1e-3 * rate ** (t / 10), rel=1e-13)
    assert smooth.value(5) < stepped.value(5) == 1e-3  # continuous, not stairs
    for t in (10, 20, 50):
        assert smooth.value(t) == pytest.approx(stepped.value(t), rel=1e-13)  # same at the stair edges
    assert smooth.value(100) == pytest.approx(1e-5, rel=1e-12) and smooth.value(10_000) == 1e-5


def test_warmup_by_hand():
    lr = ExpDecayLR(1e-3, 1e-5, decay_steps=10, numb_steps=110, warmup_steps=10, warmup_start_factor=0.1)
    rate = 10 ** (-0.2)  # decay over the T = 110 − 10 = 100 steps after the warm-up
    assert lr.decay_total == 100 and lr.decay_rate == pytest.approx(rate, rel=1e-14)
    assert lr.value(0) == pytest.approx(1e-4, rel=1e-14)
    assert lr.value(5) == pytest.approx(1e-4 + 9e-4 * 5 / 10, rel=1e-14)
    assert lr.value(9) == pytest.approx(1e-4 + 9e-4 * 9 / 10, rel=1e-14)
    assert lr.value(10) == 1e-3 and lr.value(19) == 1e-3
    assert lr.value(30) == pytest.approx(1e-3 * rate**2, rel=1e-13)
    assert lr.value(110) == pytest.approx(1e-5, rel=1e-12)
    smooth = ExpDecayLR(1e-3, 1e-5, 10, 110, smooth=True, warmup_steps=10)
    assert smooth.value(0) == 0.0 and smooth.value(4) == pytest.approx(4e-4, rel=1e-14)  # factor 0: from zero
    assert smooth.value(15) == pytest.approx(1e-3 * rate**0.5, rel=1e-13)
    # decay_steps >= the decay phase: DeePMD-kit's replacement uses T = numb_steps − warmup_steps
    assert ExpDecayLR(1e-3, 1e-8, 5000, 1100, warmup_steps=100).effective_decay_steps == 11
    # ... but not when decay_rate is given explicitly (DeePMD-kit 3.2)
    assert ExpDecayLR(1e-3, 1e-8, 50, 20, decay_rate_override=0.5).effective_decay_steps == 50
    with pytest.raises(ConfigError, match="warmup_steps.*numb_steps = 10"):
        ExpDecayLR(1e-3, 1e-5, 10, 10, warmup_steps=10)


def test_warmup_config_forms():
    cfg = load_config(small_config(steps=10, learning_rate={"warmup_ratio": 0.25, "warmup_start_factor": 0.2,
                                                            "smooth": True}))
    sched = lr_schedule_from_config(cfg.learning_rate, cfg.training.numb_steps)
    assert sched.warmup_steps == 2 and sched.smooth and sched.value(1) == pytest.approx(0.005 * (0.2 + 0.8 / 2))
    # DeePMD-kit 3.0/3.1 keys under training move to learning_rate (as DeePMD-kit 3.2 does)
    legacy = load_config(small_config(steps=10, warmup_steps=3, warmup_start_factor=0.5))
    assert (legacy.learning_rate.warmup_steps, legacy.learning_rate.warmup_start_factor) == (3, 0.5)
    dumped = legacy.to_dict()
    assert "warmup_steps" not in dumped["training"] and dumped["learning_rate"]["warmup_steps"] == 3
    assert load_config(dumped).learning_rate.warmup_steps == 3  # round trip
    with pytest.raises(ConfigError, match=r"training\.warmup_steps and learning_rate\.warmup_steps"):
        load_config(small_config(warmup_steps=3, learning_rate={"warmup_steps": 3}))
    with pytest.raises(ConfigError, match=r"warmup_steps and warmup_ratio.*found both"):
        load_config(small_config(learning_rate={"warmup_steps": 3, "warmup_ratio": 0.1}))
    with pytest.raises(ConfigError, match=r"training\.warmup_steps moved.*warmup_steps.*non-negative"):
        load_config(small_config(warmup_steps=-1))
    with pytest.raises(ConfigError, match=r"learning_rate\.warmup_ratio.*\[0, 1\)"):
        load_config(small_config(learning_rate={"warmup_ratio": 1.0}))


def test_trainer_uses_warmup_and_smooth_decay(tmp_path):
    """The lr of every step of a real training: warm-up from 0.5·start_lr over 2 steps, then the smooth
    decay over the remaining 4 (decay_steps 2); the optimizer runs at exactly that lr."""
    from mlpot.train.trainer import Trainer

    lr0, stop = 0.005, 1e-4
    cfg = small_config(steps=6, sel=[4, 4, 4], learning_rate={"decay_steps": 2, "smooth": True},
                       warmup_steps=2, warmup_start_factor=0.5)  # the legacy place, moved to learning_rate
    trainer = Trainer.from_config(cfg, output_dir=tmp_path, quiet=True)
    history = trainer.train()
    rate = (stop / lr0) ** (2 / 4)
    want = [0.5 * lr0, 0.75 * lr0, lr0, lr0 * rate**0.5, lr0 * rate, lr0 * rate**1.5]
    assert [row["lr"] for row in history] == pytest.approx(want, rel=1e-13)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(want[-1], rel=1e-13)
    lrs = [float(line.split()[-1]) for line in (tmp_path / "lcurve.out").read_text().splitlines()[1:]]
    assert lrs == pytest.approx(want, rel=0.05)  # lcurve.out prints 2 significant digits
