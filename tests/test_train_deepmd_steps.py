"""mlpot's training step is DeePMD-kit's: from the same initial weights, on the same frames, 12 Adam
steps through a stepped learning-rate decay (with the loss prefactors following it) end at the same
weights as DeePMD-kit 3.2.0's own trainer.

Reference: tests/data/deepmd_train_steps (made once with DeePMD-kit 3.2.0's PyTorch trainer, see its
make_reference.py): ``init.pt`` (DeePMD's initial model, after its data statistics), ``batches.txt``
(the system and frame DeePMD drew at each step), ``final.pt`` (its weights after 12 steps) and its
``lcurve.out``. deepmd-kit is not needed here. What this pins down: the loss (energy term /N, force
term per component, prefactor schedule), the lr schedule, Adam's settings and the model's gradients.
What it leaves to the seeds: initial weights and the order of frames (mlpot draws its own).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpot.interop.deepmd import import_deepmd
from mlpot.train.data import BatchSource
from mlpot.train.trainer import Trainer

REF = Path(__file__).resolve().parent / "data" / "deepmd_train_steps"
WATER = Path(__file__).resolve().parents[1] / "data" / "water"


def _batches() -> list[tuple[int, np.ndarray]]:
    out = []
    for line in (REF / "batches.txt").read_text().splitlines():
        m = re.fullmatch(r"Step (\d+): sample system(\d+)\s+frame\[([\d ,]+)\]", line.strip())
        assert m is not None, line
        assert int(m.group(1)) == len(out)
        out.append((int(m.group(2)), np.array([int(x) for x in m.group(3).replace(",", " ").split()])))
    return out


def _deepmd_lcurve() -> np.ndarray:
    return np.loadtxt(REF / "lcurve.out", comments="#")


class _DeePMDFrames(BatchSource):
    """The batches DeePMD-kit drew (system, frames per step) instead of mlpot's own schedule."""

    def __init__(self, src: BatchSource, batches: list[tuple[int, np.ndarray]]):
        super().__init__(src.systems, src.batch_sizes, src.seed, src.stream, device=src.device, dtype=src.dtype)
        self.drawn = batches

    def indices(self, step: int, rank: int = 0, k: int = 0) -> tuple[int, np.ndarray]:
        return self.drawn[step]


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    cfg = json.loads((REF / "input.json").read_text().replace("DATA", str(WATER)))
    out = tmp_path_factory.mktemp("replay")
    built = Trainer.from_config(cfg, output_dir=out, device="cpu", quiet=True)
    init = import_deepmd(REF / "init.pt").state_dict()
    assert sorted(init) == sorted(built.model.state_dict())
    built.model.load_state_dict(init)
    batches = _batches()
    assert len(batches) == built.numb_steps
    # the same parts, with DeePMD-kit's frames as the training batches
    tr = Trainer(
        built.config, built.model, _DeePMDFrames(built.train_src, batches), built.valid_src, built.loss_fn,
        built.lr_schedule, built.optimizer, output_dir=out, seed=built.seed, model_config=built.model_cfg,
        valid_numb_btch=built.valid_numb_btch, quiet=True,
    )
    history = tr.train()
    return tr, init, history


def test_weights_after_12_steps_equal_deepmd(replay):
    tr, init, _ = replay
    ref = import_deepmd(REF / "final.pt").state_dict()
    got = tr.model.state_dict()
    params = {name for name, _ in tr.model.named_parameters()}
    moved, worst = 0, 0.0
    for key, want in ref.items():
        change = (want - init[key]).abs().max().item()
        diff = (got[key] - want).abs().max().item()
        # Adam divides by sqrt(v) + 1e-8: round-off in near-zero gradients is amplified up to
        # ~lr·1e-8/eps per step, so compare to the size of the update, not to machine epsilon
        assert diff <= 1e-6 * max(change, 1e-3), f"{key}: |mlpot - DeePMD-kit| = {diff:.2e} (update {change:.2e})"
        worst = max(worst, diff / max(change, 1e-3))
        moved += key in params and change > 1e-4
    # not vacuous: every trainable tensor moved (the buffers davg, dstd, sel, energy_bias do not)
    assert moved == len(params) == 32
    print(f"max |mlpot - DeePMD-kit| / update size: {worst:.1e}")


def test_training_rmse_and_lr_columns_equal_deepmd(replay):
    _, _, history = replay
    lc = _deepmd_lcurve()  # step, rmse_val, rmse_trn, rmse_e_val, rmse_e_trn, rmse_f_val, rmse_f_trn, lr
    assert [int(h["step"]) for h in history] == lc[:, 0].astype(int).tolist()
    for h, row in zip(history, lc):
        # DeePMD-kit prints 3 significant digits
        assert h["rmse_trn"] == pytest.approx(row[2], rel=6e-3)
        assert h["rmse_e_trn"] == pytest.approx(row[4], rel=6e-3)
        assert h["rmse_f_trn"] == pytest.approx(row[6], rel=6e-3)
        assert h["lr"] == pytest.approx(row[7], rel=6e-2)
