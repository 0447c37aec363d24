"""Helpers shared by the format modules: readability/finiteness checks and system names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError

PathLike = str | os.PathLike


def check_readable(path: Path, what: str = "file") -> None:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: {what} is not readable (permission denied)")


def check_finite(a: np.ndarray, path: Path, field: str) -> None:
    if not np.all(np.isfinite(a)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise DataError(f"{path}: field '{field}': expected finite values, found {a[idx]} at index {idx}")


def formula(symbols: Sequence[str]) -> str:
    """Chemical formula in order of first appearance, e.g. ``O64H128``."""
    order: dict[str, int] = {}
    for s in symbols:
        order[s] = order.get(s, 0) + 1
    return "".join(f"{s}{n}" for s, n in order.items())


def system_name(system: LabeledFrames) -> str:
    """A short readable name for a system: its formula (``O64H128``)."""
    return formula(system.symbols)


def unique_names(systems: Sequence[LabeledFrames]) -> list[str]:
    """Distinct names for systems: the source's basename when it is one, else the formula; ``_1``... on clashes."""
    names: list[str] = []
    for s in systems:
        src = s.source if s.source and not s.source.startswith("<") else ""
        base = Path(src.rsplit(":", 1)[-1] if ":" in src else src).name  # "store.h5:name" -> "name"
        base = re.sub(r"[^A-Za-z0-9_.+-]", "_", base).strip(".") or system_name(s)
        if base.endswith(_file_suffixes()) or base in ("OUTCAR",):
            base = system_name(s)
        name, k = base, 1
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def common_type_map(systems: Sequence[LabeledFrames]) -> list[str]:
    """The union of the systems' type_maps, in order of first appearance."""
    out: list[str] = []
    for s in systems:
        out += [t for t in s.type_map if t not in out]
    return out


def _file_suffixes() -> tuple[str, ...]:
    """The file suffixes of every registered format (a file's basename is no system name)."""
    from mlpot.data.formats import FORMATS

    return tuple(sorted({s for e in FORMATS for s in e.obj.suffixes})) + (".xml",)
