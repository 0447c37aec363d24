"""Plots of ``mlpot phase`` (matplotlib, Agg): G(T) per phase at each pressure relative to the last
phase of the first pair (so the crossing is a zero crossing), with the crossing marked; the P–T
diagram with error bars and, if traced, the Gibbs–Duhem line. Written to temp, then renamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpot.plot import save_figure


def plot_g_t(data: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    g = data["G_T"]
    trans = data["transitions"]
    pressures = sorted({p for by_p in g.values() for p in by_p}, key=float)
    for p in pressures:
        ref_name = next((e["pair"][1] for e in trans if str(e["pressure_bar"]) == p or e["pressure_bar"] == float(p)), None)
        ref_name = ref_name if ref_name in g and p in g[ref_name] else next(iter(g))
        base = g[ref_name][p]
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, by_p in g.items():
            if p not in by_p:
                continue
            c = by_p[p]
            t = np.asarray(c["T"])
            dg = (np.asarray(c["G"]) - np.interp(t, base["T"], base["G"])) * 1e3
            err = np.asarray(c["error"]) * 1e3
            ax.plot(t, dg, label=name)
            ax.fill_between(t, dg - err, dg + err, alpha=0.3)
        for e in trans:
            if float(e["pressure_bar"]) == float(p) and "T_coex" in e:
                ax.axvline(e["T_coex"], color="k", ls="--", lw=0.8)
                ax.axvspan(e["T_coex"] - e["T_error"], e["T_coex"] + e["T_error"], color="k", alpha=0.1)
                ax.annotate(f"{e['pair'][0]}/{e['pair'][1]}: {e['T_coex']:.1f} ± {e['T_error']:.1f} K",
                            (e["T_coex"], 0), textcoords="offset points", xytext=(5, 10), fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("T (K)")
        ax.set_ylabel(f"G − G_{ref_name} (meV/atom)")
        ax.set_title(f"P = {float(p):g} bar")
        ax.legend()
        fig.tight_layout()
        path = out / f"G_T_P{float(p):g}.png"
        save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_diagram(data: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    pairs = sorted({tuple(e["pair"]) for e in data["transitions"]})
    for pair in pairs:
        pts = sorted((e for e in data["transitions"] if tuple(e["pair"]) == pair and "T_coex" in e),
                     key=lambda e: e["pressure_bar"])
        if pts:
            ax.errorbar([e["T_coex"] for e in pts], [e["pressure_bar"] for e in pts],
                        xerr=[e["T_error"] for e in pts], fmt="o-", capsize=3, label=f"{pair[0]}/{pair[1]} (free energies)")
    gd = data.get("gibbs_duhem")
    if gd:
        ax.plot([q["T"] for q in gd["line"]], [q["P"] for q in gd["line"]], "s--", label="Gibbs–Duhem")
    ax.set_xlabel("T (K)")
    ax.set_ylabel("P (bar)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "phase_diagram.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


__all__ = ["plot_g_t", "plot_diagram"]
