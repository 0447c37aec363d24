"""From the task results to G(T) per phase and the coexistence of each pair at each pressure.

G_α(T)/N = G_RS(T; G₀ = 0) + G_α(T₀)·T/T₀ (the RS curve is linear in G(T₀)). Error of G: the
reference's SEM × T/T₀ and the sweep's SEM over cycles in quadrature. "Forward-only" and
"backward-only" curves use only the forward (or backward) legs of both stages: G ∓ E_d,ref·T/T₀ ±
e_RS(T) (their crossings are reported). The protocol error of a replica's crossing is bounded by the
dissipations that enter ΔG there: Σ_phases (|E_d,ref|·T/T₀ + |e_RS(T)|)/|ΔS|
(:func:`md_engine.free_energy.coexistence.dissipation_bound`; the forward and backward legs of the two
phases can partly cancel in the fwd/bwd crossings, the bound cannot). T_coex per pressure: mean over
replicas ± √(SEM² + bound²) (:func:`md_engine.free_energy.coexistence.combine_replicas`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np

from md_engine.free_energy.coexistence import clausius_clapeyron, combine_replicas, crossing, dissipation_bound


def phase_curve(ref: Mapping[str, Any], rs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """G(T) (eV/atom) of one replica on its sweep grid, sorted by T, with SEM, forward-/backward-only
    curves, ⟨H⟩ = ⟨U + PV⟩/N (eV/atom) and ⟨V⟩/N (Å³/atom) along the sweep."""
    t = np.asarray(rs["T"], float)
    t0 = float(rs["t0"])
    g0 = float(ref["G_per_atom"])
    scale = t / t0
    g = np.asarray(rs["G_per_atom"], float) + g0 * scale
    sem = np.sqrt(np.asarray(rs["G_sem_per_atom"], float) ** 2 + (float(ref.get("F_sem_per_atom", 0.0)) * scale) ** 2)
    e_rs = np.asarray(rs["dissipation_per_atom"], float)
    e_ref = float(ref.get("dissipation_per_atom", 0.0)) * scale
    order = np.argsort(t)
    out = {"T": t, "G": g, "sem": sem, "G_forward": g - e_ref + e_rs, "G_backward": g + e_ref - e_rs,
           "dissipation": np.abs(e_ref) + np.abs(e_rs),
           "H": np.asarray(rs["H_per_atom"], float), "V": np.asarray(rs["V_per_atom"], float)}
    return {k: v[order] for k, v in out.items()}


def _on(grid: np.ndarray, c: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    return np.interp(grid, c["T"], c[key])


def pair_crossings(results: Mapping[str, Any], a: Mapping[str, str], b: Mapping[str, str]) -> Optional[dict[str, float]]:
    """The crossing of one replica's phases ``a`` and ``b`` (task names ``{"ref": ..., "rs": ...}``)
    with forward-/backward-only crossings, ΔH (from TΔS and from ⟨H⟩), ΔV; None if they do not cross."""
    ca = phase_curve(results[a["ref"]], results[a["rs"]])
    cb = phase_curve(results[b["ref"]], results[b["rs"]])
    lo, hi = max(ca["T"][0], cb["T"][0]), min(ca["T"][-1], cb["T"][-1])
    grid = np.linspace(lo, hi, max(len(ca["T"]), len(cb["T"])))
    x = crossing(grid, _on(grid, ca, "G"), _on(grid, cb, "G"), _on(grid, ca, "sem"), _on(grid, cb, "sem"))
    if x is None:
        return None
    xf = crossing(grid, _on(grid, ca, "G_forward"), _on(grid, cb, "G_forward"))
    xb = crossing(grid, _on(grid, ca, "G_backward"), _on(grid, cb, "G_backward"))
    tx = x["T"]
    dh_direct = float(np.interp(tx, ca["T"], ca["H"]) - np.interp(tx, cb["T"], cb["H"]))
    dv = float(np.interp(tx, ca["T"], ca["V"]) - np.interp(tx, cb["T"], cb["V"]))
    bound = dissipation_bound([np.interp(tx, ca["T"], ca["dissipation"]), np.interp(tx, cb["T"], cb["dissipation"])],
                              x["delta_S"])
    return {"T": tx, "sigma_T": x["sigma_T"], "T_dissipation_bound": bound, "T_forward": xf["T"] if xf else math.nan,
            "T_backward": xb["T"] if xb else math.nan, "delta_S": x["delta_S"], "delta_H": tx * x["delta_S"],
            "delta_H_direct": dh_direct, "delta_V": dv}


def analyse(results: Mapping[str, Any], layout: Mapping[str, Any]) -> dict[str, Any]:
    """Every pair at every pressure (``layout``: pressures, pairs, task names per phase/pressure/replica)."""
    transitions = []
    for pair in layout["pairs"]:
        a, b = pair
        for p in layout["pressures"]:
            reps, bounds, rows = [], [], []
            for r in range(layout["replicas"]):
                ta, tb = layout["tasks"][a][str(p)][r], layout["tasks"][b][str(p)][r]
                if not all(k in results for k in (ta["ref"], ta["rs"], tb["ref"], tb["rs"])):
                    continue
                c = pair_crossings(results, ta, tb)
                if c is None:
                    continue
                rows.append(c)
                reps.append(c["T"])
                bounds.append(c["T_dissipation_bound"])
            entry: dict[str, Any] = {"pair": [a, b], "pressure_bar": p, "replicas": rows}
            if reps:
                comb = combine_replicas(reps, bounds)
                if len(reps) == 1:  # one replica: its own statistical σ stands in for the spread
                    comb["sem"] = rows[0]["sigma_T"]
                    comb["error"] = math.sqrt(comb["sem"] ** 2 + comb["hysteresis"] ** 2)
                dh = float(np.mean([c["delta_H"] for c in rows]))
                dh_direct = float(np.mean([c["delta_H_direct"] for c in rows]))
                dv = float(np.mean([c["delta_V"] for c in rows]))
                entry.update({"T_coex": comb["T"], "T_error": comb["error"], "T_sem": comb["sem"],
                              "dissipation_bound": comb["hysteresis"], "hysteresis": comb["hysteresis"], "delta_H": dh, "delta_H_direct": dh_direct,
                              "delta_V": dv, "dTdP_clausius_clapeyron": clausius_clapeyron(comb["T"], dv, dh)})
            transitions.append(entry)
    # dT/dP from neighbouring pressures vs Clausius–Clapeyron
    for pair in layout["pairs"]:
        pts = sorted((e for e in transitions if e["pair"] == list(pair) and "T_coex" in e), key=lambda e: e["pressure_bar"])
        for e0, e1 in zip(pts, pts[1:]):
            dp = e1["pressure_bar"] - e0["pressure_bar"]
            e1["dTdP_finite_difference"] = (e1["T_coex"] - e0["T_coex"]) / dp
            e1["dTdP_finite_difference_error"] = math.hypot(e0["T_error"], e1["T_error"]) / abs(dp)
    return {"transitions": transitions}


def curves(results: Mapping[str, Any], layout: Mapping[str, Any]) -> dict[str, Any]:
    """G(T) per phase and pressure averaged over replicas (T K, G eV/atom, error = SEM over replicas
    or the single replica's σ)."""
    out: dict[str, Any] = {}
    for name, by_p in layout["tasks"].items():
        for p, reps in by_p.items():
            cs = [phase_curve(results[t["ref"]], results[t["rs"]]) for t in reps
                  if t["ref"] in results and t["rs"] in results]
            if not cs:
                continue
            grid = cs[0]["T"]
            gs = np.array([np.interp(grid, c["T"], c["G"]) for c in cs])
            err = gs.std(0, ddof=1) / math.sqrt(len(gs)) if len(gs) > 1 else cs[0]["sem"]
            out.setdefault(name, {})[p] = {"T": grid.tolist(), "G": gs.mean(0).tolist(), "error": np.asarray(err).tolist()}
    return out


__all__ = ["phase_curve", "pair_crossings", "analyse", "curves"]
