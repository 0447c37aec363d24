"""mlpot's HDF5 store (``hdf5``; ``.h5``/``.hdf5``): many systems in one file, read lazily for training.

The schema and the store classes are in :mod:`mlpot.data.store`; this module registers the format:
:func:`read` loads every system, :func:`open_lazy` gives one :class:`~mlpot.data.store.SystemView`
per system (a :class:`~mlpot.data.dataset.Dataset` that reads only the frames asked for), and the
writer appends to an existing store with ``append=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from mlpot.data.formats import register
from mlpot.data.frames import LabeledFrames


def read(path: Path, type_map: Optional[Sequence[str]]) -> list[LabeledFrames]:
    from mlpot.data.store import read_hdf5

    systems = read_hdf5(path)
    return systems if type_map is None else [s.with_type_map(type_map) for s in systems]


def open_lazy(path: Path, type_map: Optional[Sequence[str]]) -> list:
    """One :class:`~mlpot.data.store.SystemView` per system of the store (the file stays open for
    as long as a view is referenced)."""
    from mlpot.data.store import HDF5Store

    store = HDF5Store(path)
    views = [store[name] for name in store.names]
    return views if type_map is None else [v.with_type_map(type_map) for v in views]


def write(systems: list[LabeledFrames], path: Path, append: bool = False) -> None:
    from mlpot.data.store import write_hdf5

    write_hdf5(path, systems, append=append)


register(
    "hdf5", aliases=("h5",), read=read, write=write, open=open_lazy, suffixes=(".h5", ".hdf5"), priority=90,
    description="mlpot HDF5 store (several systems; lazily read for training; --append adds systems)",
)
