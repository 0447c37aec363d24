"""Strong and weak scaling of the MPI domain decomposition (md_engine.domain) on CPU ranks.

    mpirun -n 1 python benchmarks/md_scaling.py --mode weak --per-rank 14   # 10,976 atoms per rank
    mpirun -n 2 python benchmarks/md_scaling.py --mode weak --per-rank 14
    mpirun -n 2 python benchmarks/md_scaling.py --mode strong --per-rank 14 # the 1-rank system on 2 ranks
    mpirun -n 2 python benchmarks/md_scaling.py --potential mlpot --per-rank 4 --steps 5  # 12,288 water atoms/rank

System: fcc argon (a = 5.26 Å, 4·n³ atoms per rank, replicated along x for weak scaling), smooth
Lennard-Jones (cutoff 6 Å, skin 1 Å), NVE from 60 K, float64, one torch thread per rank. Reports
(rank 0, one JSON line): ms/step, atoms per rank, ghost atoms per rank and bytes moved per step
(positions forward + forces back), migrations, neighbor-list builds, and the ghost-overhead model of
parallel efficiency E_model = n_local / (n_local + n_ghost) (the pair search and pair work grow with
the atoms a rank holds; communication latency is neglected). Weak-scaling efficiency is
t(1 rank) / t(P ranks) from two runs; ``--ghosts`` forces the ghost path on one rank.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    import torch
    from ase.build import bulk

    from md_engine import LennardJones, Simulation, State, VelocityVerlet
    from md_engine.comm import world_comm

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["weak", "strong"], default="weak")
    ap.add_argument("--per-rank", type=int, default=14, help="fcc cells per edge of one rank's block")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ghosts", action="store_true", help="ghost path even on one rank")
    ap.add_argument("--potential", choices=["lj", "mlpot"], default="lj",
                    help="mlpot: a random se_e2_a model (neuron [8,16,32], axis 8, fitting [64,64,64], rcut 6) "
                         "on the bundled water box replicated per-rank × per-rank × per-rank")
    args = ap.parse_args()
    comm = world_comm()
    n = args.per_rank
    reps = (n * (comm.size if args.mode == "weak" else 1), n, n)
    if args.potential == "lj":
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(reps)
        state = State.from_atoms(atoms, device="cpu", dtype=torch.float64, temperature=60.0, seed=1)
        pot = LennardJones(0.0104, 3.40, 6.0, smooth=True, ro=5.0)
        dt_fs = 2.0
    else:
        from pathlib import Path

        from md_engine import MlpotPotential
        from md_engine.structure import read_structure
        from mlpot.model import EnergyModel

        root = Path(__file__).resolve().parents[1]
        atoms = read_structure(root / "data/water/water.lmp", type_map=["O", "H"]).repeat(reps)
        state = State.from_atoms(atoms, type_map=["O", "H"], device="cpu", dtype=torch.float64, temperature=300.0, seed=1)
        cfg = {"type_map": ["O", "H"],
               "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                              "neuron": [8, 16, 32], "axis_neuron": 8, "type_one_side": True, "seed": 1},
               "fitting_net": {"neuron": [64, 64, 64], "seed": 2}}
        torch.manual_seed(0)
        pot = MlpotPotential(EnergyModel.from_config(cfg, device="cpu"), device="cpu")
        dt_fs = 0.5
    grid = (comm.size, 1, 1) if comm.size > 1 else None
    sim = Simulation(state, pot, VelocityVerlet(dt_fs), skin=1.0, comm=comm, grid=grid,
                     ghosts=True if args.ghosts else None)
    sim.setup()
    sim.run(args.warmup)  # warm-up
    t0 = time.perf_counter()
    sim.run(args.steps)
    dt = (time.perf_counter() - t0) / args.steps
    dt = float(comm.allreduce_max(torch.tensor(dt)))
    dom = sim.domain
    n_local = sim.state.n_local
    n_ghost = dom.n_ghosts if not dom.serial else 0
    migrated = int(comm.allreduce_sum(torch.tensor(float(dom.n_migrated))))
    if comm.rank == 0:
        print(json.dumps({
            "potential": args.potential, "mode": args.mode, "ranks": comm.size, "grid": list(dom.dims), "ghost_path": not dom.serial,
            "atoms": int(atoms.get_global_number_of_atoms()), "atoms_per_rank": n_local, "ms_per_step": 1e3 * dt,
            "ghosts_per_rank": n_ghost, "ghost_bytes_per_step": dom.ghost_bytes_per_step() if not dom.serial else 0,
            "efficiency_model": n_local / (n_local + n_ghost), "migrated": migrated, "nl_builds": sim.n_rebuilds,
            "steps": args.steps,
        }), flush=True)


if __name__ == "__main__":
    main()
