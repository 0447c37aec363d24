"""``mlpot phase``: analysis against exact synthetic free energies, input mistakes (exit 2, one line
naming the task / state point / what to change), restart of a task from its own journal, and the
Lennard-Jones (truncated and shifted at 2.5σ) coexistence check at P* = 2.185 (T* = 0.80, Pedersen,
JCP 139, 104102 (2013)). Tasks run through the workflow engine (:func:`mlpot.workflows.engine.run_workflow`, local executor)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mlpot import cli
from mlpot.errors import ConfigError, MlpotError, SimulationError
from mlpot.units import BAR_TO_EV_PER_A3, KB_EV_PER_K

from md_engine.free_energy.coexistence import clausius_clapeyron, crossing, gibbs_duhem

ROOT = Path(__file__).resolve().parents[1]
ARGON = {"epsilon": 0.0104, "sigma": 3.4}  # eV, Å: LJ reduced units → T* = k_BT/ε, P* = Pσ³/ε
EPS_K = ARGON["epsilon"] / KB_EV_PER_K  # ε/k_B = 120.7 K
P_UNIT_BAR = ARGON["epsilon"] / ARGON["sigma"] ** 3 / BAR_TO_EV_PER_A3  # ε/σ³ in bar


# --------------------------------------------------------------------------- analysis, exactly
def _fake(g0: float, t0: float, t_end: float, s: float, h: float, v: float, n: int = 41) -> tuple[dict, dict]:
    """(ref, rs) task results of a phase with G(T) = h − sT exactly (eV/atom), as the RS task writes
    them (G(T; G0 = 0) = G(T) − G(T0)·T/T0)."""
    t = np.linspace(t0, t_end, n)
    g = h - s * t
    rs = {"T": t.tolist(), "t0": t0, "G_per_atom": (g - g[0] * t / t0).tolist(), "G_sem_per_atom": [0.0] * n,
          "dissipation_per_atom": [0.0] * n, "H_per_atom": [h] * n, "V_per_atom": [v] * n}
    return {"G_per_atom": float(g[0]), "F_sem_per_atom": 0.0, "dissipation_per_atom": 0.0}, rs


def test_analysis_exact_crossing_and_clausius_clapeyron() -> None:
    from mlpot.workflows.phase.analysis import analyse

    # solid: h = −0.10 + v_s P, s = 1e-4; liquid: h = −0.09 + v_l P, s = 2e-4 (eV/K/atom); exact T(P) = Δh/Δs
    vs, vl = 40.0, 44.0
    res, layout = {}, {"pressures": [0.0, 1000.0], "replicas": 1, "pairs": [["s", "l"]], "tasks": {"s": {}, "l": {}}}
    for p in layout["pressures"]:
        pv = p * BAR_TO_EV_PER_A3
        for name, h, s, v, (t0, t1) in (("s", -0.10, 1e-4, vs, (50.0, 150.0)), ("l", -0.09, 2e-4, vl, (150.0, 50.0))):
            ref, rs = _fake(0.0, t0, t1, s, h + v * pv, v)
            ref["G_per_atom"] = h + v * pv - s * t0
            res[f"{name}{p}ref"], res[f"{name}{p}rs"] = ref, rs
            layout["tasks"][name][str(p)] = [{"ref": f"{name}{p}ref", "rs": f"{name}{p}rs"}]
    out = analyse(res, layout)["transitions"]
    for e in out:
        pv = e["pressure_bar"] * BAR_TO_EV_PER_A3
        exact = (0.01 + (vl - vs) * pv) / 1e-4
        assert abs(e["T_coex"] - exact) < 1e-6
        assert abs(e["delta_H"] - (-0.01 - (vl - vs) * pv)) < 1e-9
        assert abs(e["delta_V"] - (vs - vl)) < 1e-12
        assert abs(e["dTdP_clausius_clapeyron"] - (vl - vs) * BAR_TO_EV_PER_A3 / 1e-4) < 1e-12
    assert abs(out[1]["dTdP_finite_difference"] - out[1]["dTdP_clausius_clapeyron"]) < 1e-9


def test_gibbs_duhem_exact_line() -> None:
    """dT/dP = TΔv/Δh with Δh = T·Δs (constant Δs, Δv): T(P) = T0 + Δv (P − P0)/Δs exactly linear;
    the trapezoidal predictor–corrector reproduces it."""
    ds, dv = -1e-4, -4.0
    line = gibbs_duhem(100.0, 0.0, [1000.0, 2000.0], lambda t, p: (t * ds, dv))
    for q in line:
        assert abs(q["T"] - (100.0 + dv * q["P"] * BAR_TO_EV_PER_A3 / ds)) < 1e-9 * q["T"] + 1e-6
    x = crossing([0, 1, 2], [0.0, -1.0, -2.0], [-0.5, -0.5, -0.5])
    assert x is not None and abs(x["T"] - 0.5) < 1e-12
    assert crossing([0, 1], [0, 0.1], [1, 1]) is None
    assert clausius_clapeyron(100.0, 1.0, 1.0) == pytest.approx(100 * BAR_TO_EV_PER_A3)


# --------------------------------------------------------------------------- input mistakes
def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "input.yaml"
    p.write_text(text)
    return p


LJ_POT = "potential: {lj: {epsilon: 0.0104, sigma: 3.4, cutoff: 8.5}}\n"


def test_unknown_lattice_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = _write(tmp_path, LJ_POT + "phases:\n  x: {lattice: fcx, a: 5.4, element: Ar}\n  l: {liquid_of: x}\n"
                                  "t_min: 80\nt_max: 110\n")
    assert cli.main(["phase", str(p)]) == 2
    err = capsys.readouterr().err
    assert "phases.x.lattice" in err and "fcc" in err and err.count("\n") == 1


def test_model_type_map_lacking_element(tmp_path: Path) -> None:
    from mlpot.workflows.phase.config import load_phase_config
    from mlpot.workflows.phase.driver import check_inputs

    model = ROOT / "data" / "models" / "water_se_e2_a.pt"
    p = _write(tmp_path, f"potential: {{model: {model}}}\nphases:\n  fcc: {{lattice: fcc, a: 3.6, element: Cu}}\n"
                         "  liquid: {liquid_of: fcc}\nt_min: 1000\nt_max: 1500\n")
    with pytest.raises(ConfigError, match=r"phases.fcc: elements \['Cu'\] are not in the potential's type_map"):
        check_inputs(load_phase_config(p))


def test_bad_physics_errors_name_state_point() -> None:
    """Non-finite spring constant (T = 0: no motion), pressure not converging, a solid melting in a
    sweep: each one MlpotError naming where and what to change."""
    from ase.build import bulk

    from md_engine import State
    from md_engine.free_energy.protocols import equilibrate_npt, reversible_scaling, bragg_vector, spring_constants
    from md_engine.potentials import LennardJones

    lj = LennardJones(0.0104, 3.4, 8.5)
    st = State.from_atoms(bulk("Ar", "fcc", a=5.445, cubic=True).repeat(2), temperature=0.0)
    with pytest.raises(SimulationError, match="non-finite spring constant"):
        spring_constants(st, lj, 0.0, 20, dt=5.0, where="fcc/P0/r0/prep (T0 = 0 K)")
    with pytest.raises(SimulationError, match=r"pressure did not converge.*target 100000 bar"):
        equilibrate_npt(State.from_atoms(bulk("Ar", "fcc", a=5.445, cubic=True).repeat(2), temperature=80.0), lj,
                        80.0, 1e5, 40, dt=5.0, tolerance_bar=10.0, sample_every=2)
    hot = State.from_atoms(bulk("Ar", "fcc", a=5.445, cubic=True).repeat(2), temperature=80.0)
    with pytest.raises(SimulationError, match=r"fcc/P0/r0/rs: the solid melted at about T = \d+ K"):
        reversible_scaling(hot, lj, 80.0, 400.0, 50, 1500, 0.0, pressure_bar=0.0, dt=5.0, tau=200.0,
                           tau_p=2000.0, compressibility=5e-4, phase="solid", hkl=bragg_vector(hot),
                           where="fcc/P0/r0/rs")


# --------------------------------------------------------------------------- restart
def test_task_restarts_from_its_journal(tmp_path: Path) -> None:
    """A reference task killed after its first cycle continues from its journal and MD checkpoint:
    the finished cycle is not recomputed and the result equals the uninterrupted run's bit for bit."""
    from mlpot.workflows.phase import tasks

    params = _lj_params(tmp_path, cycles=2)
    prep = tasks.prepare(dict(params, task="fcc/P0/r0/prep"), tmp_path / "prep", {})
    deps = {params["prep"]: prep}
    full = tasks.reference(dict(params), tmp_path / "a", deps)
    # killed after cycle 0: a run of one cycle leaves exactly that journal and checkpoint behind
    tasks.reference(dict(params, cycles=1), tmp_path / "b", deps)
    again = tasks.reference(dict(params), tmp_path / "b", deps)
    assert again["W_forward"] == full["W_forward"] and again["W_backward"] == full["W_backward"]
    assert again["G_per_atom"] == full["G_per_atom"]


def _lj_params(tmp_path: Path, cycles: int = 1) -> dict:
    from mlpot.workflows.phase.config import PhaseConfig
    from mlpot.workflows.phase.driver import build_tasks

    cfg = PhaseConfig.model_validate({
        "potential": {"lj": {"epsilon": 0.0104, "sigma": 3.4, "cutoff": 8.5}},
        "phases": {"fcc": {"lattice": "fcc", "a": 5.445, "element": "Ar", "repeat": [2, 2, 2]}, "liquid": {"liquid_of": "fcc"}},
        "pressures": [0.0], "t_min": 70.0, "t_max": 100.0, "replicas": 1, "cycles": cycles, "dt": 5.0, "tau_t": 200.0,
        "tau_p": 2000.0, "compressibility": 5e-4, "output_dir": str(tmp_path / "out"),
        "steps": {"equilibration": 200, "spring": 100, "melt": 200, "reference_eq": 20, "switching": 100, "sweep": 100,
                  "sweep_eq": 20}})
    tasks, _ = build_tasks(cfg)
    return dict(next(t for t in tasks if t.name == "fcc/P0/r0/ref").params)


# --------------------------------------------------------------------------- LJ coexistence (CI size)
@pytest.mark.slow
def test_lj_coexistence_small(tmp_path: Path) -> None:
    """LJ truncated and shifted at 2.5σ, P* = 2.185: `mlpot phase` (fcc from ρ* = 0.9731 and its
    melt) crosses at T* = 0.80 (Pedersen 2013). Small and short (108 atoms, one replica, ~25k steps,
    ~1.5 min of one core; marked slow): the tolerance is 3 × the run's own error bar (statistical ⊕ the
    dissipation bound Σ|E_d|/|ΔS|). 32 atoms are too few: their crystal is 2 % denser and the
    crossing stayed above t_max (0.90, 0.95) in two of three runs. Measured: T* = 0.876 ± 0.082 (fwd/bwd-only
    crossings 0.871/0.881); 108 atoms with 2× longer stages gave 0.867 ± 0.031 (benchmarks/results/phase_lj_n108_short.json). Converged: benchmarks/phase_lj.py."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from phase_lj import P_STAR, T_UNIT, config

    from mlpot.workflows.phase.config import PhaseConfig
    from mlpot.workflows.phase.driver import run_phase

    data = config(3, True, tmp_path / "out", 1)
    data["steps"] = LJ_CI_STEPS
    data["t_max"] = 0.95 * T_UNIT
    cfg = PhaseConfig.model_validate(data)
    res = run_phase(cfg, progress=False, echo=lambda s: None)
    e = res["transitions"][0]
    assert "T_coex" in e, e
    ts, err = e["T_coex"] / T_UNIT, e["T_error"] / T_UNIT
    print(f"LJ coexistence (108 atoms): T* = {ts:.4f} ± {err:.4f}, fwd/bwd "
          f"{e['replicas'][0]['T_forward'] / T_UNIT:.4f}/{e['replicas'][0]['T_backward'] / T_UNIT:.4f}, "
          f"ΔH = {e['delta_H'] * 1e3:.2f} meV/atom (⟨H⟩ {e['delta_H_direct'] * 1e3:.2f}), ΔV = {e['delta_V']:.3f} Å³/atom")
    assert abs(ts - 0.80) < 3 * err, (ts, err)
    assert err < 0.1  # what ~25k steps of 108 atoms resolve (the dissipation bound dominates)
    t_fwd, t_bwd = e["replicas"][0]["T_forward"] / T_UNIT, e["replicas"][0]["T_backward"] / T_UNIT
    assert abs(t_fwd - t_bwd) / 2 <= err
    assert e["delta_H"] < 0 and e["delta_V"] < 0  # the solid is denser and lower in enthalpy


LJ_CI_STEPS = {"equilibration": 1500, "spring": 300, "melt": 2000, "reference_eq": 200, "switching": 1500,
               "sweep": 3000, "sweep_eq": 200}
