"""md_engine throughput on the bundled 192-atom water box, replicated n×n×n: ns/day, neighbor rebuilds.

    python benchmarks/md_water.py --model demo_out/model.pt --steps 200 --replicate 2 --device cuda
    python benchmarks/md_water.py --lj --steps 500            # Lennard-Jones on O/H (engine overhead only)
    python benchmarks/md_water.py --steps 50 --compare-ase      # + ASE Langevin with DeepPotCalculator
    python benchmarks/md_water.py --replicate 4 --steps 20 --compress --json out.json   # compressed (issue 14)

Reports the loop overhead: wall time minus the time spent inside the potential's force evaluation
(integration, neighbor rebuilds, safety checks, bookkeeping), as a fraction of the force time.

Without --model, DeePMD-kit's water se_e2_a hyperparameters, randomly initialised with the
normalisation statistics of the bundled water data, so the timing is representative of the
descriptor cost but not of a trained model's physics. ``--compress``: that model (or --model) with
tabulated embedding nets (min_nbor_dist 0.8854 Å, the bundled water's), evaluated by ``--backend``
(default compile; the table backend is fixed before the warm-up so that no compilation is timed).
``--json`` writes the figures (ms/step, ns/day at dt 0.5 fs, µs/atom-step, peak RSS per atom).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch

    from md_engine import CSVR, LennardJones, MlpotPotential, Simulation, State
    from md_engine.structure import read_structure
    from mlpot.device import resolve_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--lj", action="store_true")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--replicate", type=int, default=1)
    ap.add_argument("--device", default=str(resolve_device()))
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--skin", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (md_engine; ASE uses min(2, warmup))")
    ap.add_argument("--compare-ase", action="store_true", help="also time ASE's Langevin + DeepPotCalculator")
    ap.add_argument("--compress", action="store_true", help="tabulate the embedding nets first (issue 14)")
    ap.add_argument("--backend", choices=["auto", "numba", "compile", "eager"], default="auto", help="table evaluation (--compress; auto: numba on CPU)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    type_map = ["O", "H"]
    atoms = read_structure("data/water/water.lmp", type_map=type_map).repeat((args.replicate,) * 3)
    if args.lj:
        # engine overhead only: fcc argon with about as many atoms as the water box (4 atoms per cell)
        from ase.build import bulk

        n = max(2, round((len(atoms) / 4) ** (1 / 3)))
        atoms, type_map = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((n, n, n)), ["Ar"]
        pot = LennardJones(0.0104, 3.40, 8.5, smooth=True)
    elif args.model:
        pot = MlpotPotential(args.model, device=args.device)
    else:
        from mlpot.model import EnergyModel

        cfg = {"type_map": ["O", "H"], "precision": args.dtype,
               "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                              "neuron": [25, 50, 100], "axis_neuron": 16, "type_one_side": True, "seed": 1, "precision": args.dtype},
               "fitting_net": {"neuron": [240, 240, 240], "seed": 1, "precision": args.dtype}}
        cfg.pop("precision")
        import numpy as np

        from mlpot.data.io import read_deepmd

        model = EnergyModel.from_config(cfg, device=args.device)
        model.compute_stats([read_deepmd("data/water/data_0").subset(np.arange(5))])
        pot = MlpotPotential(model.eval(), device=args.device)
    if args.compress and not args.lj:
        from mlpot.descriptors import tabulate

        pot.model.compress(0.8854)  # Å, the bundled water's shortest pair (mlpot neighbor-stat)
        tabulate.set_backend(args.backend)
    force_time = [0.0]
    inner = pot.compute

    def timed_compute(*a, **kw):  # time spent in force evaluation (synchronised on CUDA)
        t = time.perf_counter()
        out = inner(*a, **kw)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        force_time[0] += time.perf_counter() - t
        return out

    pot.compute = timed_compute
    st = State.from_atoms(atoms, type_map=type_map, device=args.device, dtype=dtype, temperature=300.0, seed=1)
    sim = Simulation(st, pot, CSVR(0.5, 300.0, tau=100.0, seed=1), skin=args.skin)
    sim.run(args.warmup)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    force_time[0] = 0.0
    t0 = time.perf_counter()
    b0 = sim.n_rebuilds
    sim.run(args.steps)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    el = time.perf_counter() - t0
    ns_day = args.steps * 0.5e-6 / (el / 86400)
    print(f"{st.n_atoms} atoms, {args.steps} steps on {args.device} ({args.dtype}): {el / args.steps * 1e3:.2f} ms/step, "
          f"{ns_day:.3f} ns/day, {sim.n_rebuilds - b0} neighbor rebuilds; "
          f"{1e6 * el / (args.steps * st.n_atoms):.1f} µs/atom-step; loop overhead "
          f"{100 * (el - force_time[0]) / force_time[0]:.1f} % of the force evaluation time")
    if args.json:
        import json
        import platform

        peak_kib = next((int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")), None)
        out = {"natoms": st.n_atoms, "steps": args.steps, "dt_fs": 0.5, "device": args.device, "dtype": args.dtype,
               "compressed": bool(args.compress), "backend": args.backend if args.compress else None,
               "threads": torch.get_num_threads(), "ms_per_step": el / args.steps * 1e3, "ns_per_day": ns_day,
               "us_per_atom_step": 1e6 * el / (args.steps * st.n_atoms), "neighbor_rebuilds": sim.n_rebuilds - b0,
               "peak_rss_kib_per_atom": peak_kib / st.n_atoms if peak_kib else None, "torch": torch.__version__,
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.compare_ase and not args.lj:
        _ase_langevin(atoms, pot.model if hasattr(pot, "model") else args.model, args)


def _ase_langevin(atoms, model, args) -> None:
    """The same box under ASE's Langevin driving mlpot.DeepPotCalculator (numpy <-> torch every step)."""
    from ase import units
    from ase.md.langevin import Langevin

    import mlpot

    atoms = atoms.copy()
    atoms.calc = mlpot.DeepPotCalculator(model=model, device=args.device)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300.0, friction=0.01 / units.fs, fixcm=False)
    dyn.run(min(2, args.warmup))
    t0 = time.perf_counter()
    dyn.run(args.steps)
    el = time.perf_counter() - t0
    print(f"ASE Langevin + DeepPotCalculator: {el / args.steps * 1e3:.2f} ms/step, "
          f"{1e6 * el / (args.steps * len(atoms)):.1f} µs/atom-step")


if __name__ == "__main__":
    main()
