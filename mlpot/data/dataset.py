"""The Dataset protocol: one system whose frames are read on demand.

Training, statistics and neighbor statistics consume systems only through this protocol, so that data
in memory (:class:`~mlpot.data.frames.LabeledFrames`) and data on disk (an HDF5 store's
:class:`~mlpot.data.store.SystemView`, which reads only the frames asked for) are interchangeable::

    ds.n_frames, ds.n_atoms          int
    ds.type_map                      list[str]; ds.atom_types (n_atoms,) int64 indices into it
    ds.pbc                           (3,) bool;  ds.source  str (for messages)
    ds.read(frames)                  LabeledFrames of those frames (indices, a slice; None = all)
    ds.read_energies()               (n_frames,) eV, or None without energy labels (reads nothing else)
    ds.with_type_map(type_map)       the same dataset with atom_types re-indexed into ``type_map``
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from mlpot.data.frames import LabeledFrames

FrameIndex = Union[Sequence[int], np.ndarray, slice, None]


@runtime_checkable
class Dataset(Protocol):
    """One system (fixed atoms) with frames read on demand; see the module docstring."""

    type_map: list[str]
    atom_types: np.ndarray
    pbc: np.ndarray
    source: str

    @property
    def n_frames(self) -> int: ...

    @property
    def n_atoms(self) -> int: ...

    def read(self, frames: FrameIndex = None) -> LabeledFrames: ...

    def read_energies(self) -> Optional[np.ndarray]: ...

    def with_type_map(self, type_map: Sequence[str]) -> "Dataset": ...


__all__ = ["Dataset", "FrameIndex"]
