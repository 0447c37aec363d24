"""md_engine throughput on the bundled 192-atom water box, replicated n×n×n: ns/day, neighbor rebuilds.

    python benchmarks/md_water.py --model demo_out/model.pt --steps 200 --replicate 2 --device cuda
    python benchmarks/md_water.py --lj --steps 500            # Lennard-Jones on O/H (engine overhead only)

Without --model, a small randomly initialised se_e2_a model (rcut 6 Å) is used, so the timing is
representative of the descriptor cost but not of a trained model's physics.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch

    from md_engine import CSVR, LennardJones, MlpotPotential, Simulation, State
    from md_engine.state import default_device, read_structure

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--lj", action="store_true")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--replicate", type=int, default=1)
    ap.add_argument("--device", default=default_device())
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--skin", type=float, default=1.0)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    atoms = read_structure("data/water/water.lmp", type_map=["O", "H"]).repeat((args.replicate,) * 3)
    if args.lj:
        pot = LennardJones([[0.0067, 0.0], [0.0, 0.0]], [[3.166, 1.0], [1.0, 1.0]], 6.0, smooth=True)
    elif args.model:
        pot = MlpotPotential(args.model, device=args.device)
    else:
        from mlpot.model import EnergyModel

        cfg = {"type_map": ["O", "H"], "precision": args.dtype,
               "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                              "neuron": [25, 50, 100], "axis_neuron": 16, "seed": 1, "precision": args.dtype},
               "fitting_net": {"neuron": [240, 240, 240], "seed": 1, "precision": args.dtype}}
        cfg.pop("precision")
        pot = MlpotPotential(EnergyModel.from_config(cfg, device=args.device).eval(), device=args.device)
    st = State.from_atoms(atoms, type_map=["O", "H"], device=args.device, dtype=dtype, temperature=300.0, seed=1)
    sim = Simulation(st, pot, CSVR(0.5, 300.0, tau=100.0, seed=1), skin=args.skin)
    sim.run(10)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    b0 = sim.n_rebuilds
    sim.run(args.steps)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    el = time.perf_counter() - t0
    ns_day = args.steps * 0.5e-6 / (el / 86400)
    print(f"{st.n_atoms} atoms, {args.steps} steps on {args.device} ({args.dtype}): {el / args.steps * 1e3:.2f} ms/step, "
          f"{ns_day:.3f} ns/day, {sim.n_rebuilds - b0} neighbor rebuilds")


if __name__ == "__main__":
    main()
