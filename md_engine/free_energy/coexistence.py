"""Coexistence from free-energy curves: the crossing of G_α(T) and G_β(T) on an isobar with its error
bar, ΔS, ΔH, ΔV, the Clausius–Clapeyron slope, and Gibbs–Duhem (Clausius–Clapeyron) integration of
the coexistence line (Kofke, JCP 98, 4149 (1993)).

Units: T K, P bar, G and H eV/atom, V Å³/atom; dT/dP in K/bar.

* Crossing: the root of ΔG(T) = G_α − G_β by linear interpolation between the two grid points that
  bracket the sign change (the grid is fine, ΔG is smooth). σ_T = σ_ΔG/|dΔG/dT| at the root.
* ΔS = −dΔG/dT (eV/K/atom, α minus β), ΔH = T ΔS at coexistence (ΔG = 0), ΔV from ⟨V⟩ of the sweeps.
* Clausius–Clapeyron: dT/dP = T Δv/Δh (Δv Å³ × 1 bar = 6.2415e-7 eV × ...).
* Gibbs–Duhem: dT/dP = T Δv(T, P)/Δh(T, P) along the line; trapezoidal predictor–corrector in P,
  each right-hand side from two NPT runs (one per phase) supplied by the caller.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from mlpot.units import BAR_TO_EV_PER_A3


def crossing(t: Sequence[float], g_a: Sequence[float], g_b: Sequence[float],
             sem_a: Optional[Sequence[float]] = None, sem_b: Optional[Sequence[float]] = None) -> Optional[dict[str, float]]:
    """The temperature where G_a(T) = G_b(T) (module docstring), or None if the curves do not cross on
    the grid. Returns T, its statistical σ, ΔS = −d(G_a − G_b)/dT and the index of the bracket."""
    t, ga, gb = (np.asarray(x, float) for x in (t, g_a, g_b))
    dg = ga - gb
    s = np.sign(dg)
    idx = np.nonzero(s[:-1] * s[1:] <= 0)[0]
    if idx.size == 0:
        return None
    i = int(idx[0])
    if dg[i] == dg[i + 1]:
        tx = float(t[i])
    else:
        tx = float(t[i] - dg[i] * (t[i + 1] - t[i]) / (dg[i + 1] - dg[i]))
    slope = float((dg[i + 1] - dg[i]) / (t[i + 1] - t[i]))
    var = 0.0
    for sem in (sem_a, sem_b):
        if sem is not None:
            sv = np.asarray(sem, float)
            var += float(np.interp(tx, t, sv)) ** 2
    sig = math.sqrt(var) / abs(slope) if slope != 0 else math.inf
    return {"T": tx, "sigma_T": sig, "delta_S": -slope, "index": i}


def clausius_clapeyron(t: float, dv: float, dh: float) -> float:
    """dT/dP = T Δv/Δh in K/bar (Δv Å³/atom, Δh eV/atom)."""
    return t * dv * BAR_TO_EV_PER_A3 / dh


def combine_replicas(values: Sequence[float], bounds: Sequence[float]) -> dict[str, float]:
    """T_coex over independent replicas (K): mean, SEM over replicas, the mean dissipation bound
    (the second law puts the true crossing within ``bounds`` of each replica's, see
    :func:`dissipation_bound`) and the error bar √(SEM² + bound²)."""
    v = np.asarray(values, float)
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    hyst = float(np.mean(np.asarray(bounds, float)))
    return {"T": float(v.mean()), "sem": sem, "hysteresis": hyst, "error": math.sqrt(sem**2 + hyst**2),
            "n_replicas": int(v.size)}


def dissipation_bound(dissipations: Sequence[float], delta_s: float) -> float:
    """ΔT (K) that the dissipated energies (eV/atom, |E_d| of every switching and sweep that enters
    ΔG at the crossing) can move the crossing: Σ|E_d| / |ΔS|. Each forward/backward estimate lies
    within its dissipation of the reversible value (W_f ≥ ΔF ≥ −W_b on average), so this bounds the
    protocol error of the crossing (a bound, not a standard deviation)."""
    return float(np.sum(np.abs(dissipations))) / abs(delta_s) if delta_s else math.inf


def gibbs_duhem(t0: float, p0: float, pressures: Sequence[float],
                rhs: Callable[[float, float], tuple[float, float]]) -> list[dict[str, float]]:
    """Trace T_coex(P) from the anchor (t0 K, p0 bar) to each of ``pressures`` (bar, monotonic) by
    trapezoidal predictor–corrector on dT/dP = T Δv/Δh, with ``rhs(T, P) -> (Δh eV/atom, Δv
    Å³/atom)`` from NPT runs of both phases. Returns the points with their slopes."""
    out = [{"P": p0, "T": t0}]
    t, p = t0, p0
    dh, dv = rhs(t, p)
    f = clausius_clapeyron(t, dv, dh)
    out[0].update({"dTdP": f, "delta_H": dh, "delta_V": dv})
    for p1 in pressures:
        h = p1 - p
        t_pred = t + h * f
        dh1, dv1 = rhs(t_pred, p1)
        f1 = clausius_clapeyron(t_pred, dv1, dh1)
        t_corr = t + 0.5 * h * (f + f1)
        dh2, dv2 = rhs(t_corr, p1)
        f2 = clausius_clapeyron(t_corr, dv2, dh2)
        out.append({"P": p1, "T": t_corr, "T_predictor": t_pred, "dTdP": f2, "delta_H": dh2, "delta_V": dv2})
        t, p, f = t_corr, p1, f2
    return out


__all__ = ["crossing", "clausius_clapeyron", "combine_replicas", "dissipation_bound", "gibbs_duhem"]
