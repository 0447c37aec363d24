"""Plots: learning curves from ``lcurve.out`` (DeePMD-kit's column layout) and parity plots of a
model's predictions against labels (``mlpot test --plot``).

``lcurve.out`` starts with a header ``# step rmse_val rmse_trn rmse_e_val rmse_e_trn ... lr`` and holds
one row per reported step. :func:`read_lcurve` returns the columns by name; :func:`plot_lcurve`
draws, with logarithmic y axes against the (linear) step, one panel per quantity (total loss, energy per atom, force, virial) with the
training and validation curves, plus the learning rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.errors import DataError, MlpotError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from mlpot.data.frames import LabeledFrames

_UNITS = {"rmse": "sqrt(loss)", "rmse_e": "eV/atom", "rmse_f": "eV/Å", "rmse_v": "eV/atom"}
_TITLES = {"rmse": "total loss", "rmse_e": "energy RMSE", "rmse_f": "force RMSE", "rmse_v": "virial RMSE"}


def _require_matplotlib(output: Union[str, os.PathLike]) -> None:
    """matplotlib is an optional dependency (the ``plot`` extra): a one-line error when it is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise MlpotError(f"{output}: plotting needs matplotlib: pip install 'mlpot[plot]'")


def save_figure(fig: "Figure", path: Union[str, os.PathLike], dpi: int = 120) -> Path:
    """Write a matplotlib figure to ``path`` (PNG/PDF/SVG by its suffix, PNG without one) through a
    temporary name, then rename; returns the path."""
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format=out.suffix.lstrip(".") or "png")
    return out


def read_lcurve(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """Columns of an lcurve file by header name: :func:`mlpot.train.lcurve.read`."""
    from mlpot.train import lcurve

    return lcurve.read(path)


def plot_lcurve(path: Union[str, os.PathLike], output: Union[str, os.PathLike], dpi: int = 120) -> Path:
    """Draw ``path`` (an lcurve file) into the image ``output`` (format from its suffix); atomic write."""
    _require_matplotlib(output)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_lcurve(path)
    if cols["step"].size == 0:
        raise DataError(f"{path}: no data rows to plot")
    quantities = []
    for name in cols:
        base = name[:-4] if name.endswith(("_val", "_trn")) else None
        if base and base not in quantities:
            quantities.append(base)
    panels = quantities + (["lr"] if "lr" in cols else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 2.2 * len(panels) + 0.6), sharex=True, squeeze=False)
    step = cols["step"]
    for ax, q in zip(axes[:, 0], panels):
        if q == "lr":
            ax.plot(step, cols["lr"], color="k")
            ax.set_ylabel("learning rate")
        else:
            for suffix, style in (("_trn", "-"), ("_val", "--")):
                y = cols.get(q + suffix)
                if y is not None:
                    ok = np.isfinite(y) & (y > 0)
                    ax.plot(step[ok], y[ok], style, label="training" if suffix == "_trn" else "validation")
            ax.set_ylabel(f"{_TITLES.get(q, q)}\n({_UNITS.get(q, '')})")
            ax.legend(loc="upper right", fontsize="small")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[-1, 0].set_xlim(left=0)
    fig.suptitle(str(Path(path).name))
    fig.tight_layout()
    out = save_figure(fig, output, dpi=dpi)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------- parity plots
@dataclass
class ParityData:
    """Reference and predicted values collected over systems for :func:`parity_plot`."""

    e_ref: list[np.ndarray]
    e_pred: list[np.ndarray]
    f_ref: list[np.ndarray]
    f_pred: list[np.ndarray]
    v_ref: list[np.ndarray]
    v_pred: list[np.ndarray]

    @classmethod
    def empty(cls) -> "ParityData":
        return cls([], [], [], [], [], [])

    def add(self, pred: dict[str, np.ndarray], system: "LabeledFrames") -> None:
        n, na = len(pred["energy"]), system.n_atoms
        if system.energies is not None:
            self.e_ref.append(system.energies[:n] / na)
            self.e_pred.append(pred["energy"] / na)
        if system.forces is not None and "forces" in pred:
            self.f_ref.append(system.forces[:n].reshape(-1))
            self.f_pred.append(pred["forces"].reshape(-1))
        if system.virials is not None and "virial" in pred and bool(np.all(system.pbc)):
            self.v_ref.append(system.virials[:n].reshape(-1) / na)
            self.v_pred.append(pred["virial"].reshape(-1) / na)


#: above this many points a panel is drawn as a density (hexbin, log counts) instead of a scatter
HEXBIN_MIN_POINTS = 2000


def parity_figure(data: ParityData, title: Optional[str] = None, where: str = "parity plot") -> "Figure":
    """The parity-plot figure (see :func:`parity_plot`); a matplotlib ``Figure`` on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    from mlpot.metrics import mae, rmse

    panels = []
    for label, unit, ref, prd in (
        ("energy per atom", "eV/atom", data.e_ref, data.e_pred),
        ("force components", "eV/Å", data.f_ref, data.f_pred),
        ("virial per atom", "eV/atom", data.v_ref, data.v_pred),
    ):
        if ref:
            panels.append((label, unit, np.concatenate(ref), np.concatenate(prd)))
    if not panels:
        raise DataError(f"{where}: no labels (energies, forces or virials) to draw a parity plot of")
    fig = Figure(figsize=(4.6 * len(panels), 4.9), layout="constrained")
    FigureCanvasAgg(fig)
    for k, (label, unit, ref, prd) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        lo, hi = float(min(ref.min(), prd.min())), float(max(ref.max(), prd.max()))
        pad = 0.05 * (hi - lo if hi > lo else max(abs(hi), 1.0))
        lim = (lo - pad, hi + pad)
        ax.plot(lim, lim, color="0.5", lw=1, zorder=0)
        if ref.size >= HEXBIN_MIN_POINTS:
            hb = ax.hexbin(ref, prd, gridsize=60, bins="log", mincnt=1, cmap="viridis", extent=(*lim, *lim),
                           linewidths=0.0)
            fig.colorbar(hb, ax=ax, shrink=0.8, pad=0.02, label="count")
        else:
            ax.scatter(ref, prd, s=8, alpha=0.7, edgecolors="none", color="C0")
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
        for axis in (ax.xaxis, ax.yaxis):  # absolute values (e.g. −155.123 eV/atom), never an offset
            fmt = ScalarFormatter(useOffset=False)
            fmt.set_scientific(False)
            axis.set_major_formatter(fmt)
            axis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.text(0.04, 0.96, f"RMSE {rmse(prd - ref):.3g} {unit}\nMAE  {mae(prd - ref):.3g} {unit}\nN = {ref.size}",
                transform=ax.transAxes, fontsize=8, va="top", family="monospace",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
    if title:
        fig.suptitle(title)
    return fig


def parity_plot(path: str | os.PathLike, data: ParityData, title: Optional[str] = None) -> Path:
    """Parity plots (predicted vs reference): energy per atom (eV/atom, absolute values on the axes),
    force components (eV/Å) and, when labeled, virial per atom (eV/atom), with RMSE, MAE and count in
    each panel; a panel of many points (forces) is a density (hexbin, log counts). The same look as
    :func:`plot_lcurve` (grid, title above the panels). Written atomically (PNG/PDF/SVG by extension)
    with matplotlib's Agg canvas; no global backend is changed."""
    _require_matplotlib(path)
    fig = parity_figure(data, title=title, where=str(path))
    return save_figure(fig, path)
