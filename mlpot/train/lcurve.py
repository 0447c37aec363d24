"""The ``lcurve.out`` learning-curve format (DeePMD-kit's column layout), written and read here only.

::

    #  step      rmse_val    rmse_trn    rmse_e_val  rmse_e_trn    rmse_f_val  rmse_f_trn         lr
          1      1.23e+01    1.30e+01    ...                                                  1.0e-03

A header line ``# step`` + for every metric ``<m>_val <m>_trn`` (or only ``<m>_trn`` without
validation data) + ``lr``, then one row per reported step: step ``%7d``, metrics ``%11.2e``, lr
``%8.1e`` (``deepmd/pt/train/training.py`` ``print_header`` / ``print_on_training``). Metrics are in
the loss's units (:mod:`mlpot.train.loss`): eV/atom, eV/Å; NaN where a label is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.errors import DataError

PathLike = Union[str, os.PathLike]


def header(metric_keys: Sequence[str], validation: bool) -> str:
    """The header line (with newline) for the metrics ``metric_keys``; ``validation``: val columns too."""
    s = "# %5s" % "step"
    for k in metric_keys:
        s += ("   %11s %11s" % (k + "_val", k + "_trn")) if validation else ("   %11s" % (k + "_trn"))
    return s + "   %8s\n" % "lr"


def line(
    step: int, lr: float, trn: Mapping[str, float], val: Mapping[str, float], metric_keys: Sequence[str], validation: bool
) -> str:
    """One row (with newline): ``step``, the metrics of ``val`` / ``trn`` by key, the learning rate."""
    s = "%7d" % step
    for k in metric_keys:
        s += ("   %11.2e %11.2e" % (val[k], trn[k])) if validation else ("   %11.2e" % trn[k])
    return s + "   %8.1e\n" % lr


def truncate(path: PathLike, last_step: int) -> None:
    """Keep the header and the rows of steps <= ``last_step`` (atomic rewrite; a restart from an older
    checkpoint drops the later rows)."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    keep = [ln for ln in lines if ln.startswith("#") or not ln.strip() or int(ln.split()[0]) <= last_step]
    if len(keep) != len(lines):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(keep))


def read(path: PathLike) -> dict[str, np.ndarray]:
    """Columns of an lcurve file by header name (``step``, ``rmse_e_val``, ..., ``lr``); (n_rows,) each."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{p}: cannot read the learning curve ({exc.strerror or exc})") from None
    head = next((ln for ln in lines if ln.startswith("#")), None)
    if head is None:
        raise DataError(f"{p}: expected a header line '# step ... lr', found none")
    names = head.lstrip("#").split()
    if not names or names[0] != "step":
        raise DataError(f"{p}: expected the header to start with 'step', found {names[:1]}")
    rows = []
    for k, ln in enumerate(lines):
        if not ln.strip() or ln.startswith("#"):
            continue
        parts = ln.split()
        if len(parts) != len(names):
            raise DataError(f"{p}: line {k + 1}: expected {len(names)} columns, found {len(parts)}")
        try:
            rows.append([float(x) for x in parts])
        except ValueError:
            raise DataError(f"{p}: line {k + 1}: expected numbers, found {ln.strip()!r}") from None
    data = np.asarray(rows, dtype=np.float64).reshape(-1, len(names))
    return {name: data[:, i] for i, name in enumerate(names)}


__all__ = ["header", "line", "truncate", "read"]
