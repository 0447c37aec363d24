"""mlpot's training step is DeePMD-kit's: from the same initial weights, on the same frames, 12 Adam
steps through a stepped learning-rate decay (with the loss prefactors following it) end at the same
weights as DeePMD-kit 3.2.0's own trainer.

Reference: tests/data/deepmd_train_steps (made once with DeePMD-kit 3.2.0's PyTorch trainer by
tests/data/make_train_replay_reference.py): ``init.pt`` (DeePMD's initial model, after its data statistics), ``batches.txt``
(the system and frame DeePMD drew at each step), ``final.pt`` (its weights after 12 steps) and its
``lcurve.out``. deepmd-kit is not needed here. What this pins down: the loss (energy term /N, force
term per component, prefactor schedule), the lr schedule, Adam's settings and the model's gradients.
What it leaves to the seeds: initial weights and the order of frames (mlpot draws its own).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepmd_replay import compare_weights, replay as run_replay
from mlpot.interop.deepmd import import_deepmd

REF = Path(__file__).resolve().parent / "data" / "deepmd_train_steps"


def _deepmd_lcurve() -> np.ndarray:
    return np.loadtxt(REF / "lcurve.out", comments="#")


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    return run_replay(REF, "init.pt", tmp_path_factory.mktemp("replay"))


def test_weights_after_12_steps_equal_deepmd(replay):
    tr, init, _ = replay
    params = {name for name, _ in tr.model.named_parameters()}
    moved, worst = compare_weights(tr.model.state_dict(), import_deepmd(REF / "final.pt").state_dict(), init,
                                   params, moved_above=1e-4)
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
