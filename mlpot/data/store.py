"""mlpot's HDF5 dataset: many systems in one file, append-safe, lazily readable frame by frame.

Schema (format version 1)::

    /                                   attrs: format = "mlpot-hdf5", version = 1,
                                               type_map = [str, ...] (union of the systems', in order),
                                               units = JSON {"length": "Å", "energy": "eV",
                                                              "force": "eV/Å", "virial": "eV"}
    /systems/<name>/                    one group per system (a fixed set of atoms);
                                        attrs: type_map = [str, ...] (the system's own),
                                               pbc = bool[3], n_frames, n_atoms, source = str
    /systems/<name>/atom_types          int64 (n_atoms,)            index into the group's type_map
    /systems/<name>/positions           float64 (n_frames, n_atoms, 3)  Å
    /systems/<name>/cells               float64 (n_frames, 3, 3)     Å, rows = lattice vectors (zeros if no PBC)
    /systems/<name>/energies            float64 (n_frames,)          eV        (optional)
    /systems/<name>/forces              float64 (n_frames, n_atoms, 3)  eV/Å  (optional)
    /systems/<name>/virials             float64 (n_frames, 3, 3)     eV = −stress·volume (optional)
    /systems/<name>/weights             float64 (n_frames,)          per-frame weight (optional)

Per-frame datasets are chunked along the frame axis (about 256 KiB per chunk, at least one frame) and
resizable (``maxshape=(None, ...)``); groups keep insertion order (``track_order``), so reading a few frames touches only their chunks. System names
default to the source directory's basename or the chemical formula (``data_0``, ``O64H128``), with
``_1``, ``_2``... on clashes.

Writes are atomic: a new file is written to a temporary sibling and renamed into place; ``append=True``
copies the existing file to the temporary sibling, adds the systems there and renames, so an error or
Ctrl-C never corrupts the original.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.data.frames import LabeledFrames
from mlpot.data.types import check_elements
from mlpot.errors import DataError

FORMAT_NAME = "mlpot-hdf5"
FORMAT_VERSION = 1
UNITS = {"length": "Å", "energy": "eV", "force": "eV/Å", "virial": "eV"}
FRAME_FIELDS = ("positions", "cells", "energies", "forces", "virials", "weights")
_CHUNK_BYTES = 1 << 18


def _h5py():
    import h5py

    return h5py


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    per_frame = 8 * int(np.prod(shape[1:])) if len(shape) > 1 else 8
    frames = max(1, min(shape[0], _CHUNK_BYTES // max(per_frame, 1)))
    return (frames,) + tuple(shape[1:])


def _write_system(group, system: LabeledFrames) -> None:
    h5py = _h5py()
    str_dt = h5py.string_dtype()
    group.attrs["type_map"] = np.array(system.type_map, dtype=object).astype(str_dt) if system.type_map else []
    group.attrs["pbc"] = system.pbc.astype(bool)
    group.attrs["n_frames"] = system.n_frames
    group.attrs["n_atoms"] = system.n_atoms
    group.attrs["source"] = str(system.source)
    group.create_dataset("atom_types", data=system.atom_types.astype(np.int64))
    for name in FRAME_FIELDS:
        a = getattr(system, name)
        if a is None:
            continue
        a = np.ascontiguousarray(a, dtype=np.float64)
        group.create_dataset(name, data=a, chunks=_chunks(a.shape), maxshape=(None,) + a.shape[1:])


def _set_root_attrs(f, names_type_maps: Iterable[Sequence[str]]) -> None:
    h5py = _h5py()
    tm: list[str] = []
    for t in names_type_maps:
        tm += [x for x in t if x not in tm]
    f.attrs["format"] = FORMAT_NAME
    f.attrs["version"] = FORMAT_VERSION
    f.attrs["type_map"] = np.array(tm, dtype=object).astype(h5py.string_dtype())
    f.attrs["units"] = json.dumps(UNITS, ensure_ascii=False)


def write_hdf5(
    path: str | os.PathLike,
    systems: LabeledFrames | Sequence[LabeledFrames],
    append: bool = False,
    names: Optional[Sequence[str]] = None,
) -> list[str]:
    """Write ``systems`` to the HDF5 store ``path`` atomically; with ``append=True`` add them to an existing
    store (created if absent). Returns the group names used."""
    from mlpot.data.io import unique_names

    h5py = _h5py()
    if isinstance(systems, LabeledFrames):
        systems = [systems]
    systems = list(systems)
    path = Path(path)
    if names is not None and len(names) != len(systems):
        raise DataError(f"{path}: expected one name per system ({len(systems)}), found {len(names)}")
    existing: list[str] = []
    if append and path.exists():
        with HDF5Store(path) as old:  # validates that it is our format
            existing = list(old.names)
    proposed = list(names) if names is not None else unique_names(systems)
    used: list[str] = []
    for n in proposed:
        base, k, name = n, 1, n
        while name in existing or name in used:
            name, k = f"{base}_{k}", k + 1
        if names is not None and name != n:
            raise DataError(f"{path}: system name '{n}': expected a new name, found it already in the store")
        used.append(name)
    with atomic_path(path) as tmp:
        if append and path.exists():
            shutil.copyfile(path, tmp)
            mode = "a"
        else:
            mode = "w"
        with h5py.File(tmp, mode) as f:
            grp = f["systems"] if "systems" in f else f.create_group("systems", track_order=True)
            for name, s in zip(used, systems):
                _write_system(grp.create_group(name), s)
            tms = [[str(x) for x in grp[n].attrs["type_map"]] for n in grp]
            _set_root_attrs(f, tms)
    return used


class SystemView:
    """Lazy access to one system of an open :class:`HDF5Store`; reads only the frames asked for.

    Implements :class:`mlpot.data.dataset.Dataset`: training on an HDF5 store reads each batch's
    frames from disk (:meth:`read`), the energy bias only the energies (:meth:`read_energies`)."""

    def __init__(self, store: "HDF5Store", name: str):
        self._store = store
        self.name = name
        g = store._group(name)
        self.type_map = [x.decode() if isinstance(x, bytes) else str(x) for x in g.attrs["type_map"]]
        self.pbc = np.asarray(g.attrs["pbc"], dtype=bool)
        #: where the frames are read from (``store.h5:name``); ``origin``: where they were written from
        self.source = f"{store.path}:{name}"
        self.origin = str(g.attrs.get("source", self.source))
        self.atom_types = np.asarray(g["atom_types"][()], dtype=np.int64)
        self.n_frames = int(g["positions"].shape[0])
        self.n_atoms = int(self.atom_types.shape[0])
        self.fields = [n for n in FRAME_FIELDS if n in g]

    def __len__(self) -> int:
        return self.n_frames

    def with_type_map(self, type_map: Sequence[str]) -> "SystemView":
        """The same view with ``atom_types`` re-indexed into ``type_map`` (a superset of ours); frames
        read through it carry that type_map."""
        type_map = [str(t) for t in type_map]
        if type_map == self.type_map:
            return self
        check_elements(self.type_map, type_map, where=str(self.source), owner="the")
        view = copy.copy(self)
        view.atom_types = np.array([type_map.index(t) for t in self.type_map], dtype=np.int64)[self.atom_types]
        view.type_map = type_map
        return view

    def read_energies(self) -> Optional[np.ndarray]:
        """The (n_frames,) energies (eV) alone, or None when the system has none."""
        if "energies" not in self.fields:
            return None
        ds = self._store._group(self.name)["energies"]
        if ds.shape[0] != self.n_frames:
            raise DataError(f"{self._store.path}:/systems/{self.name}/energies: expected {self.n_frames} frames (as positions), found {ds.shape[0]}")
        return np.asarray(ds[()], dtype=np.float64).reshape(-1)

    def read(self, frames: Optional[Sequence[int] | np.ndarray | slice] = None) -> LabeledFrames:
        """Frames ``frames`` (indices, any order, repeats allowed; a slice; None = all) as LabeledFrames."""
        g = self._store._group(self.name)
        loc = f"{self._store.path}:/systems/{self.name}"
        if frames is None:
            sel: slice | np.ndarray = slice(None)
            inverse = None
        elif isinstance(frames, slice):
            sel, inverse = frames, None
        else:
            idx = np.asarray(frames, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < -self.n_frames or idx.max() >= self.n_frames):
                raise DataError(f"{loc}: frame index: expected indices in [0, {self.n_frames}), found {idx.min()}..{idx.max()}")
            idx = np.where(idx < 0, idx + self.n_frames, idx)
            sel, inverse = np.unique(idx, return_inverse=True)  # h5py needs increasing indices
        data = {}
        for name in self.fields:
            ds = g[name]
            if ds.shape[0] != self.n_frames:
                raise DataError(f"{loc}/{name}: expected {self.n_frames} frames (as positions), found {ds.shape[0]}")
            a = ds[sel] if not (isinstance(sel, np.ndarray) and sel.size == 0) else np.zeros((0,) + ds.shape[1:])
            data[name] = a if inverse is None else a[inverse]
        return LabeledFrames(
            type_map=self.type_map, atom_types=self.atom_types, pbc=self.pbc, source=self.source, **data
        )


class HDF5Store:
    """An open HDF5 store for random access: ``store.names``, ``store[name]`` (a :class:`SystemView`),
    ``store.read(name, frames)``. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike):
        h5py = _h5py()
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: HDF5 store not found")
        if not os.access(self.path, os.R_OK):
            raise DataError(f"{self.path}: HDF5 store is not readable (permission denied)")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: expected an HDF5 file, could not open it ({exc})") from None
        fmt = self._file.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT_NAME or "systems" not in self._file:
            self._file.close()
            raise DataError(f"{self.path}: attribute 'format': expected '{FORMAT_NAME}' with a /systems group, found {fmt!r}")
        version = int(self._file.attrs.get("version", -1))
        if version > FORMAT_VERSION:
            self._file.close()
            raise DataError(f"{self.path}: attribute 'version': expected <= {FORMAT_VERSION}, found {version}")
        self.names: list[str] = list(self._file["systems"].keys())
        self.units = json.loads(self._file.attrs.get("units", json.dumps(UNITS)))
        self._views: dict[str, SystemView] = {}

    def _group(self, name: str):
        if name not in self._file["systems"]:
            raise DataError(f"{self.path}: system '{name}': expected one of {self.names}, found no such group")
        g = self._file["systems"][name]
        for req in ("atom_types", "positions", "cells"):
            if req not in g:
                raise DataError(f"{self.path}:/systems/{name}: dataset '{req}': expected it, found it missing")
        return g

    def __getitem__(self, name: str) -> SystemView:
        if name not in self._views:
            self._views[name] = SystemView(self, name)
        return self._views[name]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def read(self, name: str, frames: Optional[Sequence[int] | np.ndarray | slice] = None) -> LabeledFrames:
        return self[name].read(frames)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "HDF5Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_hdf5(path: str | os.PathLike, names: Optional[Sequence[str]] = None) -> list[LabeledFrames]:
    """All systems (or those named) of the HDF5 store ``path``, fully loaded."""
    with HDF5Store(path) as store:
        return [store.read(n) for n in (store.names if names is None else names)]
