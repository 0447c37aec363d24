"""Speed of the MD step of the free-energy protocols (µs per atom-step) on Lennard-Jones argon as
``mlpot phase`` runs them (benchmarks/phase_lj.py's potential and settings): the Frenkel–Ladd
switching (U_LJ ↔ Einstein crystal, Langevin with a fixed centre of mass, λ scheduled every step)
the Uhlenbeck–Ford switching of the liquid (U_LJ ↔ U_UF, p = 50, x = 1: its cutoff 5σ_UF ≈ 12.6 Å sets
the list radius) and the reversible-scaling sweep (λU_LJ under NPT: Langevin + stochastic cell
rescaling at λP₀).

    python benchmarks/phase_md_speed.py --sizes 4 5 --steps 400 --tag after
    python benchmarks/phase_md_speed.py --profile fl --sizes 5   # cProfile of the FL leg

fcc cells per direction (4 atoms each): 4 → 256 atoms, 5 → 500 atoms. float64, one thread. Both
wall time and process CPU time are reported (on a shared machine the CPU time is the steadier one).
Writes benchmarks/results/phase_md_speed[_TAG].json. Units: µs per atom-step, ms per step.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

EPS, SIG, RHO_S, P_STAR = 0.0104, 3.4, 0.9731, 2.185


def _setup(repeat: int, protocol: str):
    from ase.build import bulk

    from mlpot.units import BAR_TO_EV_PER_A3, KB_EV_PER_K
    from md_engine.free_energy.protocols import _sim
    from md_engine.potentials.coupled import CoupledPotential
    from md_engine.potentials.einstein import EinsteinCrystal
    from md_engine.potentials.lj import LennardJones
    from md_engine.state import State

    a = (4 / RHO_S) ** (1 / 3) * SIG
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(repeat)
    t0 = 0.75 * EPS / KB_EV_PER_K
    p_bar = P_STAR * EPS / SIG**3 / BAR_TO_EV_PER_A3
    st = State.from_atoms(atoms, temperature=t0, seed=1)
    lj = LennardJones(EPS, SIG, 2.5 * SIG, shift=True)
    if protocol == "uf":  # the liquid's density (ρ* ≈ 0.88 at T* = 0.9, P* = 2.185); it melts as it runs
        from md_engine.free_energy.protocols import scale_to_cell
        from md_engine.free_energy.references import uf_sigma_for
        from md_engine.potentials.uf import UhlenbeckFord

        st = scale_to_cell(st, st.cell * (RHO_S / 0.88) ** (1 / 3))
        t0 = 0.9 * EPS / KB_EV_PER_K
        uf = UhlenbeckFord(50.0, uf_sigma_for(1.0, st.n_atoms / float(st.volume)), t0)
        cp = CoupledPotential(lj, uf, switch="polynomial")
        sim, integ = _sim(st, cp, t0, 5.0, 200.0, 3)
        lam = np.linspace(0.0, 1.0, 10**6)
        p_ev = None
    elif protocol == "fl":
        ein = EinsteinCrystal(0.05, st.positions.clone())
        cp = CoupledPotential(lj, ein, switch="polynomial")
        sim, integ = _sim(st, cp, t0, 5.0, 200.0, 3)
        lam = np.linspace(0.0, 1.0, 10**6)  # λ changes every step, as in a leg
        p_ev = None
    else:
        cp = CoupledPotential(None, lj, lam=1.0, switch="linear")
        sim, integ = _sim(st, cp, t0, 5.0, 200.0, 3, pressure_bar=p_bar, tau_p=2000.0, compressibility=5e-4)
        lam = np.linspace(1.0, 0.8, 10**6)
        p_ev = p_bar * BAR_TO_EV_PER_A3
    return sim, integ, lam, p_ev, len(atoms)


def time_protocol(repeat: int, protocol: str, steps: int, warm: int = 50) -> dict:
    from md_engine.free_energy.switching import run_leg

    sim, integ, lam, p_ev, n = _setup(repeat, protocol)
    run_leg(sim, integ, lam[: warm + 1], pressure_ev=p_ev)
    b0 = sim.n_rebuilds
    t, c = time.perf_counter(), time.process_time()
    run_leg(sim, integ, lam[: steps + 1], pressure_ev=p_ev)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"protocol": protocol, "n_atoms": n, "steps": steps, "wall_s": wall, "cpu_s": cpu,
            "ms_per_step": 1e3 * wall / steps, "us_per_atom_step": 1e6 * wall / (steps * n),
            "cpu_us_per_atom_step": 1e6 * cpu / (steps * n), "rebuilds": sim.n_rebuilds - b0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 5])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--protocols", nargs="+", default=["fl", "uf", "rs"])
    ap.add_argument("--profile", choices=["fl", "uf", "rs"], default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--note", default="", help="e.g. 'loaded: 3 other helpers running'")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.profile:
        sim, integ, lam, p_ev, n = _setup(args.sizes[0], args.profile)
        from md_engine.free_energy.switching import run_leg

        run_leg(sim, integ, lam[:51], pressure_ev=p_ev)
        pr = cProfile.Profile()
        pr.enable()
        run_leg(sim, integ, lam[: args.steps + 1], pressure_ev=p_ev)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(35)
        pstats.Stats(pr).sort_stats("cumulative").print_stats(40)
        return
    rows = []
    for r in args.sizes:
        for p in args.protocols:
            row = time_protocol(r, p, args.steps)
            print(json.dumps(row))
            rows.append(row)
    out = {"rows": rows, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
           "loadavg_1min_at_end": os.getloadavg()[0], "note": args.note,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    path = ROOT / "benchmarks" / "results" / (f"phase_md_speed_{args.tag}.json" if args.tag else "phase_md_speed.json")
    path.write_text(json.dumps(out, indent=1))
    print(path)


if __name__ == "__main__":
    main()
