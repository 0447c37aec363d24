"""Learning-curve plots from ``lcurve.out`` (DeePMD-kit's column layout).

``lcurve.out`` starts with a header ``# step rmse_val rmse_trn rmse_e_val rmse_e_trn ... lr`` and holds
one row per reported step. :func:`read_lcurve` returns the columns by name; :func:`plot_lcurve`
draws, with logarithmic y axes against the (linear) step, one panel per quantity (total loss, energy per atom, force, virial) with the
training and validation curves, plus the learning rate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.errors import DataError

_UNITS = {"rmse": "sqrt(loss)", "rmse_e": "eV/atom", "rmse_f": "eV/Å", "rmse_v": "eV/atom"}
_TITLES = {"rmse": "total loss", "rmse_e": "energy RMSE", "rmse_f": "force RMSE", "rmse_v": "virial RMSE"}


def read_lcurve(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """Columns of an lcurve file by header name: :func:`mlpot.train.lcurve.read`."""
    from mlpot.train import lcurve

    return lcurve.read(path)


def plot_lcurve(path: Union[str, os.PathLike], output: Union[str, os.PathLike], dpi: int = 120) -> Path:
    """Draw ``path`` (an lcurve file) into the image ``output`` (format from its suffix); atomic write."""
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
    out = Path(output)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out
