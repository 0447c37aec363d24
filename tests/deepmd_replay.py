"""Shared by the training-replay tests (``test_train_deepmd_steps.py``, ``test_se_atten.py``): mlpot's
trainer replays DeePMD-kit 3.2.0's recorded training steps (from DeePMD-kit's initial model, on the
frames DeePMD-kit drew) and the weights are compared with DeePMD-kit's after the same steps.

The references are written by ``tests/data/make_train_replay_reference.py`` (DeePMD-kit's venv)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlpot.interop.deepmd import import_deepmd
from mlpot.train.data import BatchSource
from mlpot.train.trainer import Trainer

WATER = Path(__file__).resolve().parents[1] / "data" / "water"


def read_batches(path: Path) -> list[tuple[int, np.ndarray]]:
    """DeePMD-kit's ``Sample_rank_0.txt``: (system index, frame indices) per training step."""
    out = []
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"Step (\d+): sample system(\d+)\s+frame\[([\d ,]+)\]", line.strip())
        assert m is not None, f"{path}: unexpected line {line!r}"
        assert int(m.group(1)) == len(out), f"{path}: steps out of order at {line!r}"
        out.append((int(m.group(2)), np.array([int(x) for x in m.group(3).replace(",", " ").split()])))
    return out


class DeePMDFrames(BatchSource):
    """The batches DeePMD-kit drew (system, frames per step) instead of mlpot's own schedule."""

    def __init__(self, src: BatchSource, batches: list[tuple[int, np.ndarray]]):
        super().__init__(src.systems, src.batch_sizes, src.seed, src.stream, device=src.device, dtype=src.dtype)
        self.drawn = batches

    def indices(self, step: int, rank: int = 0, k: int = 0) -> tuple[int, np.ndarray]:
        return self.drawn[step]


def replay(ref: Path, init_file: str, output_dir: Path) -> tuple[Trainer, dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train with mlpot from ``ref/init_file`` (DeePMD-kit's initial model) on ``ref/batches.txt``'s frames,
    with ``ref/input.json`` (``DATA`` = the bundled water). Returns (trainer, initial state, history)."""
    cfg = json.loads((ref / "input.json").read_text().replace("DATA", str(WATER)))
    built = Trainer.from_config(cfg, output_dir=output_dir, device="cpu", quiet=True)
    init = import_deepmd(ref / init_file).state_dict()
    assert sorted(init) == sorted(built.model.state_dict())
    built.model.load_state_dict(init)
    batches = read_batches(ref / "batches.txt")
    assert len(batches) == built.numb_steps
    tr = Trainer(
        built.config, built.model, DeePMDFrames(built.train_src, batches), built.valid_src, built.loss_fn,
        built.lr_schedule, built.optimizer, output_dir=output_dir, seed=built.seed, model_config=built.model_cfg,
        valid_numb_btch=built.valid_numb_btch, quiet=True,
    )
    return tr, init, tr.train()


def compare_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], init: dict[str, torch.Tensor],
                    params: set[str], moved_above: float) -> tuple[int, float]:
    """Assert every tensor of ``got`` equals DeePMD-kit's ``want`` to 1e-6 of its update size; return (number of
    trainable tensors that moved by more than ``moved_above``, the worst |got − want| / update size).

    Adam divides by sqrt(v) + 1e-8: round-off in near-zero gradients is amplified up to ~lr·1e-8/eps per step,
    so the comparison is to the size of the update, not to machine epsilon."""
    moved, worst = 0, 0.0
    for key, w in want.items():
        change = (w - init[key]).abs().max().item()
        diff = (got[key] - w).abs().max().item()
        assert diff <= 1e-6 * max(change, 1e-3), f"{key}: |mlpot - DeePMD-kit| = {diff:.2e} (update {change:.2e})"
        worst = max(worst, diff / max(change, 1e-3))
        moved += key in params and change > moved_above
    return moved, worst
