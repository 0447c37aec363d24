"""Data-parallel training (DistributedDataParallel, gloo on CPU) equals one process on the union of
the ranks' batches.

Why the reference is exact: with DDP every rank r draws its own batch B_r (a pure function of
(seed, step, r)), computes its DeePMD loss L_r(θ) on it, and DDP replaces each gradient by the mean
over ranks, (1/W) Σ_r ∇L_r. The single-process reference (``Trainer.from_config(emulate_world_size=W)``) builds
the same W batches and back-propagates (1/W) Σ_r L_r, whose gradient is that same mean; the loss
normalisation stays per batch (1/N of its own system), so batches of systems with different sizes
are weighted exactly as under DDP. Same model init (seeded), same lr schedule and Adam → the same
parameters after every step, up to floating-point summation order (~1e-16).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MOLECULES = ROOT / "data" / "molecules_nopbc"

WORKER = r'''
import os, sys, torch
torch.set_num_threads(1)
from mlpot.train.distributed import init_distributed
from mlpot.train.trainer import Trainer
assert init_distributed("cpu")
rank = torch.distributed.get_rank()
t = Trainer.from_config(sys.argv[1], output_dir=sys.argv[2], device="cpu", quiet=True)
assert t.distributed and t.world_size == 2 and t.virtual_ranks == [rank]
t.train()
torch.save({k: v.detach().clone() for k, v in t.model.state_dict().items()}, os.path.join(sys.argv[2], f"rank{rank}.pt"))
torch.distributed.destroy_process_group()
'''


def _config(steps: int) -> dict:
    return {
        "model": {
            "type_map": ["C", "H", "O"],
            "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [4, 6, 4],
                           "neuron": [4, 8], "axis_neuron": 4, "seed": 1},
            "fitting_net": {"neuron": [16, 16], "seed": 1},
        },
        "learning_rate": {"start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 2},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {
            "training_data": {"systems": [str(MOLECULES)], "batch_size": "auto"},
            "validation_data": {"systems": [str(MOLECULES / "C3H3O4")], "batch_size": 4, "numb_btch": 1},
            "numb_steps": steps, "seed": 5, "disp_freq": 1, "save_freq": 100, "device": "cpu",
        },
    }


@pytest.mark.slow
def test_ddp_two_ranks_equal_single_process_on_union_of_batches(tmp_path):
    from mlpot.train.trainer import Trainer

    steps = 5
    (tmp_path / "in.json").write_text(json.dumps(_config(steps)))
    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "ddp"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(tmp_path / "worker.py"), str(tmp_path / "in.json"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = Trainer.from_config(tmp_path / "in.json", output_dir=tmp_path / "ref", quiet=True, emulate_world_size=2)
        ref.train()
        single = Trainer.from_config(tmp_path / "in.json", output_dir=tmp_path / "single", quiet=True)
        single.train()
    finally:
        torch.set_num_threads(n)
    # the two ranks batches really differ (otherwise the test would prove nothing)
    def differ(t: int) -> bool:
        (s0, f0), (s1, f1) = ref.train_src.indices(t, 0), ref.train_src.indices(t, 1)
        return s0 != s1 or f0.tolist() != f1.tolist()

    assert any(differ(t) for t in range(steps))
    for name, v in ref.model.state_dict().items():
        assert torch.allclose(r0[name], v, rtol=0, atol=1e-10), name
        assert torch.allclose(r1[name], v, rtol=0, atol=1e-10), name
    # ... and training on rank 0's batches alone gives a different model
    diff = max((single.model.state_dict()[k] - v).abs().max().item() for k, v in ref.model.state_dict().items())
    assert diff > 1e-6
    # rank 0 wrote the learning curve and the checkpoint; its rmse_trn is rank 0's batch, as in the reference
    assert (out / "lcurve.out").read_text() == (tmp_path / "ref" / "lcurve.out").read_text()
    ckpt = torch.load(out / "model.ckpt.pt", weights_only=True)
    assert ckpt["step"] == steps
