"""Size dependence of the Lennard-Jones melting point from ``benchmarks/phase_lj.py`` runs, and its
N → ∞ extrapolation.

Free energies from Frenkel–Ladd / Uhlenbeck–Ford switching are exact for the finite periodic system
(``mlpot phase`` keeps the exact finite-N centre-of-mass and ln N! terms), so T_m(N) differs from the
large-system value by a size effect of order 1/N (Polson, Trizac, Pronk & Frenkel, J. Chem. Phys. 112,
5339 (2000)). The reference T* = 0.80 at P* = 2.185 (Pedersen, J. Chem. Phys. 139, 104102 (2013)) is
an interface-pinning result on 5,120 atoms, effectively the large-N value. This script fits

    T*(N) = T*_∞ + a / N

by weighted least squares (weights 1/σ², σ = each run's error bar) to the runs given, and reports
T*_∞ ± its standard error, each run's deviation from 0.80 and a plot (T* against 1/N).

    python benchmarks/phase_lj_size.py benchmarks/results/phase_lj_n256_s8.json \\
        benchmarks/results/phase_lj_n500_s8.json benchmarks/results/phase_lj_n864_s8.json --tag s8

Writes ``benchmarks/results/phase_lj_size[_TAG].json`` and ``.png``. Units: reduced temperature T* = k_BT/ε.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from phase_lj import P_STAR, T_STAR_REF as T_REF  # noqa: E402


def fit_inverse_n(n: np.ndarray, t: np.ndarray, sigma: np.ndarray) -> dict:
    """Weighted least squares of t = t_inf + a/n: t_inf, a, their standard errors (from the weights)
    and χ² per degree of freedom (NaN with two points)."""
    x = 1.0 / n
    w = 1.0 / sigma**2
    a_mat = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(a_mat.T @ (a_mat * w[:, None]))
    coef = cov @ (a_mat.T @ (w * t))
    resid = t - a_mat @ coef
    dof = len(t) - 2
    chi2 = float(np.sum(w * resid**2) / dof) if dof > 0 else float("nan")
    return {"T_inf": float(coef[0]), "T_inf_error": float(np.sqrt(cov[0, 0])), "a": float(coef[1]),
            "a_error": float(np.sqrt(cov[1, 1])), "chi2_per_dof": chi2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="phase_lj.py result files (different atom counts)")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    rows = []
    for p in args.runs:
        d = json.loads(p.read_text())
        for key in ("n_atoms", "T_star", "T_star_error"):
            if key not in d:
                sys.exit(f"{p}: no '{key}' (not a finished phase_lj.py result)")
        rows.append({"file": p.name, "n_atoms": int(d["n_atoms"]), "replicas": d.get("replicas"),
                     "switching": d.get("steps", {}).get("switching"), "T_star": float(d["T_star"]),
                     "T_star_error": float(d["T_star_error"]), "T_star_sem": d.get("T_star_sem"),
                     "relative_deviation": abs(float(d["T_star"]) - T_REF) / T_REF})
    rows.sort(key=lambda r: r["n_atoms"])
    if len({r["n_atoms"] for r in rows}) < 2:
        sys.exit("need runs at two or more atom counts")
    n = np.array([r["n_atoms"] for r in rows], float)
    t = np.array([r["T_star"] for r in rows])
    s = np.array([r["T_star_error"] for r in rows])
    fit = fit_inverse_n(n, t, s)
    fit["relative_deviation"] = abs(fit["T_inf"] - T_REF) / T_REF
    fit["deviation_in_error_bars"] = abs(fit["T_inf"] - T_REF) / fit["T_inf_error"]
    for r in rows:
        print(f"N = {r['n_atoms']:5d}: T* = {r['T_star']:.4f} ± {r['T_star_error']:.4f} "
              f"({100 * r['relative_deviation']:.1f} % from {T_REF})")
    print(f"T*(N) = T*_inf + a/N: T*_inf = {fit['T_inf']:.4f} ± {fit['T_inf_error']:.4f} "
          f"({100 * fit['relative_deviation']:.2f} % from {T_REF}), a = {fit['a']:.2f} ± {fit['a_error']:.2f}, "
          f"chi2/dof = {fit['chi2_per_dof']:.2f}")
    out = {"runs": rows, "fit": fit, "model": "T*(N) = T*_inf + a/N, weights 1/error^2", "T_star_reference": T_REF}
    stem = "phase_lj_size" + (f"_{args.tag}" if args.tag else "")
    res_dir = ROOT / "benchmarks" / "results"
    tmp = res_dir / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(res_dir / f"{stem}.json")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(1.0 / n, t, yerr=s, fmt="o", capsize=3, label="mlpot phase (FL/UF + RS)")
    xx = np.linspace(0.0, 1.05 / n.min(), 50)
    ax.plot(xx, fit["T_inf"] + fit["a"] * xx, "-", color="C1",
            label=f"fit T*∞ + a/N: T*∞ = {fit['T_inf']:.3f} ± {fit['T_inf_error']:.3f}")
    ax.axhline(T_REF, color="k", ls="--", lw=1, label=f"Pedersen 2013 (5,120 atoms): {T_REF:.2f}")
    ax.axhspan(0.99 * T_REF, 1.01 * T_REF, color="0.85", label="±1 %")
    for r in rows:
        ax.annotate(f"N={r['n_atoms']}", (1.0 / r["n_atoms"], r["T_star"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("1 / N (atoms⁻¹)")
    ax.set_ylabel(f"melting temperature T* = k_BT/ε at P* = {P_STAR}")
    ax.set_title("LJ (2.5σ, shifted) melting point vs system size")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    tmp_png = res_dir / f"{stem}.tmp.png"
    fig.savefig(tmp_png, dpi=130)
    tmp_png.replace(res_dir / f"{stem}.png")
    print(res_dir / f"{stem}.json")


if __name__ == "__main__":
    main()
