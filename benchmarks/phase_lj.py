"""Lennard-Jones (truncated and shifted at 2.5σ, no tail correction) solid–liquid coexistence at
P* = 2.185 with ``mlpot phase``: the reference is T* = 0.80 (Pedersen, JCP 139, 104102 (2013);
LAMMPS examples/PACKAGES/rhok, crystal density 0.9731).

Argon units: ε = 0.0104 eV, σ = 3.4 Å, m = 39.948 amu, so T* = k_BT/ε (ε/k_B = 120.7 K) and
P* = Pσ³/ε (ε/σ³ = 423.8 bar). The potential is exactly the reference one: ``lj/cut 2.5``,
``pair_modify shift yes``, no tail.

    python benchmarks/phase_lj.py                    # converged: 5×5×5 fcc (500 atoms), 3 replicas
    python benchmarks/phase_lj.py --repeat 3 --quick # the CI-sized run (108 atoms, short stages)

Writes ``benchmarks/results/phase_lj[_quick].json`` (T*, its error bar, |T* − 0.80| in σ) and the
``mlpot phase`` outputs under ``--out``. CPU cost of the default run: ≈ 3 × 2 phases × 0.2 M steps of
500 atoms (hours on one core; minutes on a GPU). The protocol measured in benchmarks/RESULTS.md
("Phase diagrams, session 8": 1 cycle, switching 32,000, sweeps 20,000) is converged at fixed N; T*
then still falls with N as 1/N (finite-size effect), see ``benchmarks/phase_lj_size.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlpot.units import BAR_TO_EV_PER_A3, KB_EV_PER_K  # noqa: E402

EPS, SIG = 0.0104, 3.4
T_UNIT = EPS / KB_EV_PER_K  # K
P_UNIT = EPS / SIG**3 / BAR_TO_EV_PER_A3  # bar
P_STAR, T_STAR_REF, RHO_S = 2.185, 0.80, 0.9731


def config(repeat: int, quick: bool, out: Path, replicas: int, t_range: tuple[float, float] = (0.70, 0.90),
           cycles: int | None = None) -> dict:
    a = (4 / RHO_S) ** (1 / 3) * SIG
    steps = ({"equilibration": 3000, "spring": 1000, "melt": 3000, "reference_eq": 300, "switching": 3000,
              "sweep": 6000, "sweep_eq": 300} if quick else
             {"equilibration": 20000, "spring": 5000, "melt": 10000, "reference_eq": 2000, "switching": 20000,
              "sweep": 50000, "sweep_eq": 2000})
    return {
        "potential": {"lj": {"epsilon": EPS, "sigma": SIG, "cutoff": 2.5 * SIG, "shift": True, "tail": False}},
        "phases": {"fcc": {"lattice": "fcc", "a": a, "element": "Ar", "repeat": [repeat] * 3},
                   "liquid": {"liquid_of": "fcc"}},
        "pressures": [P_STAR * P_UNIT],
        "t_min": t_range[0] * T_UNIT, "t_max": t_range[1] * T_UNIT, "replicas": replicas,
        "cycles": cycles if cycles is not None else (1 if quick else 2),
        "dt": 5.0,  # 0.0023 τ (τ = σ√(m/ε) = 2.15 ps)
        "tau_t": 200.0, "tau_p": 2000.0, "compressibility": 5e-4, "pressure_tolerance": 150.0,
        "steps": steps, "n_grid": 201, "seed": 7, "output_dir": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="fcc cells per direction (4 atoms each)")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="short stages (CI-sized)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "phase_lj_run")
    ap.add_argument("--steps", type=str, default=None,
                    help='JSON object overriding stage lengths, e.g. \'{"switching": 6000, "sweep": 10000}\'')
    ap.add_argument("--tag", type=str, default="", help="suffix of the results file name")
    ap.add_argument("--t-range", type=float, nargs=2, default=(0.70, 0.90), metavar=("TMIN", "TMAX"),
                    help="reduced temperatures: the solid's T0 and the liquid's T0 (the sweeps span them)")
    ap.add_argument("--cycles", type=int, default=None, help="fwd+bwd cycles per switching and sweep (default 2; quick 1)")
    args = ap.parse_args()
    from mlpot.workflows.phase.config import PhaseConfig
    from mlpot.workflows.phase.driver import run_phase

    data = config(args.repeat, args.quick, args.out, args.replicas, tuple(args.t_range), args.cycles)
    if args.steps:
        data["steps"].update(json.loads(args.steps))
    cfg = PhaseConfig.model_validate(data)
    t = time.perf_counter()
    data = run_phase(cfg, progress=True)
    wall = time.perf_counter() - t
    e = data["transitions"][0]
    n_atoms = 4 * args.repeat**3
    st, c = cfg.steps, cfg.cycles
    # MD steps of one replica: solid (NPT, springs) + liquid (melt, NPT) + per phase c × (FL/UF + RS) legs
    per_replica = (st.equilibration + st.spring) + (st.melt + st.equilibration) + \
        2 * c * (2 * st.reference_eq + 2 * st.switching + 2 * st.sweep_eq + 2 * st.sweep)
    res = {"n_atoms": n_atoms, "replicas": args.replicas, "quick": args.quick, "wall_s": wall,
           "P_star": P_STAR, "T_star_reference": T_STAR_REF, "steps": cfg.steps.model_dump(), "cycles": c,
           "T_star_range": list(args.t_range), "md_steps_per_replica": per_replica,
           "atom_steps": per_replica * n_atoms * args.replicas}
    if "T_coex" in e:
        ts, err = e["T_coex"] / T_UNIT, e["T_error"] / T_UNIT
        res.update({"T_star": ts, "T_star_error": err, "deviation_in_error_bars": abs(ts - T_STAR_REF) / err if err else None,
                    "relative_deviation": abs(ts - T_STAR_REF) / T_STAR_REF,
                    "T_star_sem": e.get("T_sem", float("nan")) / T_UNIT,
                    "T_star_dissipation_bound": e.get("dissipation_bound", float("nan")) / T_UNIT,
                    "delta_H_eV_per_atom": e["delta_H"], "delta_V_A3_per_atom": e["delta_V"]})
    name = ("phase_lj_quick" if args.quick else "phase_lj") + (f"_{args.tag}" if args.tag else "") + ".json"
    path = ROOT / "benchmarks" / "results" / name
    path.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
