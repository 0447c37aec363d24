"""Speed of md_engine's ``emt`` potential vs ASE's pure-Python EMT (the same potential): ms per force
call (energy + forces + stress) for rattled fcc Cu, and µs per atom-step of a short md_engine NVT run
(CSVR, 1000 K, 2 fs, skin 1 Å) with it. float64, one thread.

    python benchmarks/emt_speed.py --sizes 3 5 --reps 20 --steps 300

fcc cubic cells per direction (4 atoms each): 3 → 108 atoms, 5 → 500. Wall and process CPU time
(the steadier one on a shared machine; medians over ``reps`` calls). Writes
benchmarks/results/emt_speed.json. Units: ms per call, µs per atom-step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _timed(fn, reps: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms) of ``reps`` calls of ``fn`` (after one warm-up call)."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def force_calls(repeat: int, reps: int) -> dict:
    from ase.build import bulk
    from ase.calculators.emt import EMT as AseEMT

    from md_engine.potentials.emt import EMT
    from md_engine.state import State
    from mlpot.neighbors import neighbor_list

    at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((repeat,) * 3)
    at.rattle(0.1, seed=1)
    st = State.from_atoms(at, device="cpu")
    pot = EMT(["Cu"])
    nl = neighbor_list(st.positions, st.cell[None], st.pbc[None], pot.cutoff + 1.0)  # the engine's Verlet list

    pos = st.positions.clone()
    kick_t = [1e-6]

    def torch_call():  # moved like ase_call's atoms (new positions: no cached pair geometry)
        pos[0, 0] += kick_t[0]
        kick_t[0] = -kick_t[0]
        pot.compute(pos, st.types, st.cell, st.pbc, nl)

    a = at.copy()
    a.calc = AseEMT()
    kick = [1e-6]

    def ase_call():  # a tiny move each call: a new calculation (ASE caches), its list is kept as in MD
        p = a.get_positions()
        p[0, 0] += kick[0]
        kick[0] = -kick[0]
        a.set_positions(p)
        a.get_forces()
        a.get_stress()

    tw, tc = _timed(torch_call, reps)
    aw, ac = _timed(ase_call, max(3, reps // 4))
    return {"atoms": len(at), "pairs_in_list": int(nl.centers.numel()), "torch_ms_wall": tw, "torch_ms_cpu": tc,
            "ase_ms_wall": aw, "ase_ms_cpu": ac}


def nvt_run(repeat: int, steps: int) -> dict:
    from ase.build import bulk

    from md_engine import CSVR, Simulation, State
    from md_engine.potentials.emt import EMT

    at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((repeat,) * 3)
    st = State.from_atoms(at, temperature=1000.0, seed=1, device="cpu")
    sim = Simulation(st, EMT(["Cu"]), CSVR(2.0, 1000.0, 100.0, seed=1), skin=1.0)
    sim.run(20)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    sim.run(steps)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = st.n_atoms
    return {"atoms": n, "steps": steps, "us_per_atom_step_wall": 1e6 * wall / (n * steps),
            "us_per_atom_step_cpu": 1e6 * cpu / (n * steps), "ms_per_step_wall": 1e3 * wall / steps,
            "rebuilds": sim.n_rebuilds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "emt_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import ase

    res = {"torch": torch.__version__, "ase": ase.__version__, "cpu": platform.processor() or platform.machine(),
           "load_avg": os.getloadavg(), "threads": 1,
           "force_calls": [force_calls(r, args.reps) for r in args.sizes], "nvt": nvt_run(3, args.steps)}
    res["load_avg_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(out)


if __name__ == "__main__":
    main()
