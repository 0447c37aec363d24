"""MPI worker for tests/test_se_atten.py: ``mpirun -n P python se_atten_worker.py OUT.npz``.

Rank 0 writes OUT.npz: energy, forces, virial of the 192-atom water box (sheared, triclinic) with the
se_atten models of :func:`models` (md_engine's GhostDomain over P ranks); the test compares them with
the serial engine in its own process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
SKIN = 0.5


def models() -> dict:
    """Smooth attention models on water (rcut 4 Å): DeePMD-kit's se_atten_v2 attn_layer 0 (imported)
    and a random mlpot se_atten_v2 with two attention layers."""
    from mlpot.interop.deepmd import import_deepmd
    from mlpot.testing import tiny_model

    return {
        "v2_l0_imported": import_deepmd(ROOT / "tests/data/se_atten/v2_l0_one_side/model.dp", device="cpu"),
        "v2_l2": tiny_model("se_atten_v2", sel=(40,), rcut=4.0, rcut_smth=0.5, attn=8, tebd_dim=4, attn_layer=2, seed=5),
    }


def main() -> int:
    from md_engine import MlpotPotential, Simulation, VelocityVerlet
    from md_engine.comm import world_comm
    from md_worker import model_state

    out = sys.argv[1]
    comm = world_comm(True)
    res: dict = {"size": comm.size}
    for name, model in models().items():
        sim = Simulation(model_state(), MlpotPotential(model, device="cpu"), VelocityVerlet(1.0), skin=SKIN, comm=comm)
        sim.setup()
        g = sim.gathered_state()
        if g is not None:
            res[f"{name}_energy"] = float(g.energy)
            res[f"{name}_forces"] = g.forces.numpy()
            res[f"{name}_virial"] = g.virial.numpy()
    if comm.rank == 0:
        np.savez(out, **res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
