"""MPI worker for tests/test_md_mpi.py: ``mpirun -n P python md_worker.py MODE OUT.npz [ARGS]``.

Modes (rank 0 writes OUT.npz; the test compares it with a serial run of the same builders):

* ``forces``       energy, forces, virial of the LJ and mlpot test systems (global id order)
* ``nve``          200 NVE steps of the LJ system (+ H5MD trajectory ARGS[0]); unwrapped positions, migrations
* ``write CKPT N`` N CSVR steps of the LJ system, then a checkpoint
* ``restart CKPT N`` load CKPT, run to step N; final unwrapped positions and velocities
* ``fail CKPT``    a potential that fails on rank 1 at its 6th evaluation: all ranks must stop
* ``npt-aniso N``  N steps of anisotropic NPT (:func:`npt_aniso_integrator`); positions, velocities, cell
* ``emt``          energy, forces, virial of the EMT Cu–Au system (:func:`emt_state`), then 50 NVE steps
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LJ_EPS, LJ_SIG, LJ_RC, LJ_SKIN = 0.0104, 3.40, 5.0, 0.5
MODEL_RC, MODEL_SKIN = 4.0, 0.5


def lj_state(temperature: float = 300.0):
    """72 argon atoms in a sheared (triclinic) fcc box, jittered, Maxwell–Boltzmann velocities."""
    from md_engine import State
    from mlpot.testing import argon_atoms

    atoms = argon_atoms((3, 3, 2), a=5.26, jitter=0.1, seed=1, shear=True)
    return State.from_atoms(atoms, device="cpu", dtype=torch.float64, temperature=temperature, seed=5)


def lj_potential():
    from md_engine import LennardJones

    return LennardJones(LJ_EPS, LJ_SIG, LJ_RC, smooth=True, ro=4.0)


def model_state():
    """The bundled 192-atom water box, sheared into a triclinic cell, types O/H."""
    from md_engine import State
    from md_engine.structure import read_structure

    atoms = read_structure(ROOT / "data/water/water.lmp", type_map=["O", "H"])
    cell = atoms.cell.array.copy()
    cell[1] += 0.2 * cell[0]
    cell[2] += 0.1 * cell[1]
    atoms.set_cell(cell, scale_atoms=True)
    return State.from_atoms(atoms, type_map=["O", "H"], device="cpu", dtype=torch.float64, temperature=300.0, seed=2)


def model_potential():
    """The tiny se_e2_a model of tests/test_md_mlpot.py (constructor statistics, torch.manual_seed(0) first)."""
    from md_engine import MlpotPotential
    from mlpot.testing import tiny_model

    model = tiny_model(sel=(30, 60), rcut=MODEL_RC, neuron=(4, 8), fitting=(8, 8), seed=3, fitting_seed=4, resnet_dt=False,
                       torch_seed=0, stats=None)
    return MlpotPotential(model, device="cpu")


def emt_atoms():
    """144 atoms of rattled fcc Cu with 40 % Au (4 × 3 × 3 cubic cells, a = 3.75 Å), an ase.Atoms."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((4, 3, 3))
    atoms.rattle(0.1, seed=11)
    rng = np.random.default_rng(11)
    atoms.set_chemical_symbols(np.where(rng.random(len(atoms)) < 0.4, "Au", "Cu"))
    return atoms


def emt_state():
    from md_engine import State

    return State.from_atoms(emt_atoms(), type_map=["Au", "Cu"], device="cpu", dtype=torch.float64,
                            temperature=600.0, seed=4)


def thermostat_for(name: str):
    """The thermostat of the checkpoint/restart tests: CSVR (global noise) or Langevin (per-atom noise)."""
    from md_engine import CSVR, Langevin

    if name == "langevin":
        return Langevin(2.0, 300.0, tau=50.0, seed=13)
    return CSVR(2.0, 300.0, tau=50.0, seed=11)


def npt_aniso_integrator():
    """CSVR + anisotropic stochastic cell rescaling (no per-atom noise: rank-count independent)."""
    from md_engine import CSVR, NPT, StochasticCellRescaling

    baro = StochasticCellRescaling(pressure=2000.0, tau=200.0, compressibility=1e-3, mode="anisotropic")
    return NPT(CSVR(2.0, 300.0, tau=50.0, seed=11), baro)


def unwrapped(st) -> np.ndarray:
    return (st.positions + st.image.to(st.dtype) @ st.cell).detach().cpu().numpy()


def comm_for_run():
    from md_engine.comm import world_comm

    return world_comm(True)


def main() -> int:
    from mlpot.errors import MlpotError, SimulationError
    from md_engine import CSVR, CheckpointReporter, H5MDReporter, Simulation, VelocityVerlet

    mode, out = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    comm = comm_for_run()
    res: dict = {"size": comm.size}
    if mode == "forces":
        grid = [int(v) for v in args[0].split(",")] if args else None  # e.g. "4,1,1": thin subdomains
        for name, st, pot, skin in (("lj", lj_state(), lj_potential(), LJ_SKIN),
                                    ("model", model_state(), model_potential(), MODEL_SKIN)):
            sim = Simulation(st, pot, VelocityVerlet(1.0), skin=skin, comm=comm, grid=grid)
            sim.setup()
            g = sim.gathered_state()
            if g is not None:
                res[f"{name}_energy"] = float(g.energy)
                res[f"{name}_forces"] = g.forces.numpy()
                res[f"{name}_virial"] = g.virial.numpy()
                res[f"{name}_grid"] = np.array(sim.domain.dims)
                res[f"{name}_hops"] = np.array(sim.domain.hops)
    elif mode == "emt":
        from md_engine.potentials.emt import EMT

        sim = Simulation(emt_state(), EMT(["Au", "Cu"]), VelocityVerlet(2.0), skin=0.5, comm=comm, grid=(2, 1, 1))
        sim.setup()
        g = sim.gathered_state()
        if g is not None:
            res.update(energy=float(g.energy), forces=g.forces.numpy(), virial=g.virial.numpy())
        sim.run(50)
        g = sim.gathered_state()
        if g is not None:
            res.update(positions=unwrapped(g), velocities=g.velocities.numpy())
    elif mode == "nve":
        grid = [int(v) for v in args[1].split(",")] if len(args) > 1 else None
        sim = Simulation(lj_state(), lj_potential(), VelocityVerlet(2.0), [H5MDReporter(args[0], 50)],
                         skin=LJ_SKIN, comm=comm, grid=grid)
        sim.run(200)
        migrated = int(comm.allreduce_sum(torch.tensor(float(sim.domain.n_migrated))))
        g = sim.gathered_state()
        if g is not None:
            res.update(positions=unwrapped(g), velocities=g.velocities.numpy(), migrated=migrated,
                       builds=sim.n_rebuilds)
    elif mode in ("write", "restart"):
        ckpt, nsteps = args[0], int(args[1])
        thermostat = args[2] if len(args) > 2 else "csvr"
        sim = Simulation(lj_state(), lj_potential(), thermostat_for(thermostat), skin=LJ_SKIN, comm=comm)
        if mode == "write":
            sim.run(nsteps)
            sim.save_checkpoint(ckpt)
        else:
            sim.load_checkpoint(ckpt)
            sim.run(nsteps - sim.state.step)
        g = sim.gathered_state()
        if g is not None:
            res.update(positions=unwrapped(g), velocities=g.velocities.numpy(), step=g.step)
    elif mode == "npt-aniso":
        sim = Simulation(lj_state(), lj_potential(), npt_aniso_integrator(), skin=LJ_SKIN, comm=comm)
        sim.run(int(args[0]))
        conserved = sim.thermo()["conserved_eV"]  # collective
        g = sim.gathered_state()
        if g is not None:
            res.update(positions=unwrapped(g), velocities=g.velocities.numpy(), cell=g.cell.numpy(),
                       conserved=conserved)
    elif mode == "fail":
        from mlpot.errors import ModelError

        base = lj_potential()

        class FailsOnRank1:
            cutoff = base.cutoff
            calls = 0

            def compute(self, *a, **k):
                FailsOnRank1.calls += 1
                if comm.rank == 1 and FailsOnRank1.calls == 6:
                    raise ModelError("neighbor overflow: 999 neighbors of type 0, sel = 30 (injected)")
                return base.compute(*a, **k)

        sim = Simulation(lj_state(), FailsOnRank1(), VelocityVerlet(2.0), [CheckpointReporter(args[0], 1000)],
                         skin=LJ_SKIN, comm=comm)
        try:
            sim.run(20)
            res["error"] = ""
        except SimulationError as exc:
            res["error"] = str(exc)
            res["step"] = sim.state.step
        except MlpotError as exc:  # pragma: no cover - reported to the test
            res["error"] = f"wrong type {type(exc).__name__}: {exc}"
    else:
        raise SystemExit(f"unknown mode {mode}")
    if comm.rank == 0:
        np.savez(out, **res)
    if mode == "fail":
        # every rank writes its own verdict: all must have stopped with the same message
        np.savez(f"{out}.rank{comm.rank}.npz", error=res.get("error", "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
