"""Reading and writing labeled DFT data: the dispatch over the format registry.

Every format is one module of :mod:`mlpot.data.formats` (DeePMD npy/raw directories, extxyz and
anything else ASE reads, VASP OUTCAR / vasprun.xml, mlpot's HDF5 store) registering its reader, its
writer and its suffixes; this module finds the format of a path and calls it:

* :func:`read` — all systems in one path, as :class:`~mlpot.data.frames.LabeledFrames`;
* :func:`load_systems` — every system in several paths (directories expanded), in one type_map;
* :func:`open_datasets` — the same as :class:`~mlpot.data.dataset.Dataset` s, HDF5 stores lazily
  (frames read on demand: the training path);
* :func:`write` — systems to one path, in the format of its suffix unless ``fmt``.

Every reader checks the file exists and is readable, shapes agree, values are finite, the atom count is
constant within a system, type indices lie inside the type_map and periodic cells have positive volume,
raising :class:`mlpot.errors.DataError` naming the file, the field and what was expected vs found.
Every writer is atomic (:func:`mlpot.atomic_io.atomic_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from mlpot.data.formats import FORMATS, Format, guess, guess_write, read_formats, write_formats
from mlpot.data.formats._util import PathLike, check_readable, common_type_map, system_name, unique_names
from mlpot.data.formats.ase import frames_from_atoms, read_ase, write_extxyz
from mlpot.data.formats.deepmd import find_systems, is_deepmd_system, read_deepmd, write_deepmd
from mlpot.data.formats.vasp import read_vasp
from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError


def get_format(fmt: str, where: str = "format") -> Format:
    """The registered :class:`~mlpot.data.formats.Format` of name or alias ``fmt`` (DataError otherwise)."""
    return FORMATS.get(fmt.lower() if isinstance(fmt, str) else fmt, where=f"{where} '{fmt}'").obj


def normalize_format(fmt: Optional[str]) -> Optional[str]:
    """Canonical format name (``None`` stays ``None``); DataError for an unknown one."""
    return None if fmt is None else get_format(fmt).name


def guess_format(path: PathLike) -> str:
    """The read format of ``path`` from what it is (directory, suffix, VASP file name)."""
    return guess(Path(path)).name


def guess_write_format(path: PathLike) -> str:
    """The write format of ``path`` from its suffix (a directory of DeePMD npy otherwise)."""
    return guess_write(Path(path)).name


def read(path: PathLike, fmt: Optional[str] = None, type_map: Optional[Sequence[str]] = None) -> list[LabeledFrames]:
    """All systems in ``path`` (format auto-detected unless ``fmt``); re-indexed into ``type_map`` if given."""
    p = Path(path)
    check_readable(p)
    f = get_format(fmt) if fmt is not None else guess(p)
    if f.read is None:
        raise DataError(f"{p}: format '{f.name}' cannot be read; expected one of {read_formats()}")
    return f.read(p, type_map)


def frame_steps(path: PathLike, fmt: Optional[str] = None) -> Optional[list]:
    """The MD step of every frame of ``path``, one int array per system :func:`read` gives, when its format
    records steps (an H5MD trajectory); None otherwise."""
    p = Path(path)
    f = get_format(fmt) if fmt is not None else guess(p)
    return None if f.steps is None else f.steps(p)


def load_systems(
    paths: PathLike | Iterable[PathLike], type_map: Optional[Sequence[str]] = None, fmt: Optional[str] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> list[LabeledFrames]:
    """Read every system in ``paths`` (directories expanded by :func:`find_systems`; format ``fmt`` or
    guessed per path) and re-index them all into one type_map: ``type_map`` if given, else the union of
    theirs in order of first appearance. ``progress`` is called with 1 after each
    path is read (a progress bar's update)."""
    systems: list[LabeledFrames] = []
    for p in find_systems(paths):
        systems += read(p, fmt=fmt, type_map=type_map)
        if progress is not None:
            progress(1)
    tm = list(type_map) if type_map is not None else common_type_map(systems)
    return [s if s.type_map == tm else s.with_type_map(tm) for s in systems]


def open_datasets(paths: PathLike | Iterable[PathLike], type_map: Optional[Sequence[str]] = None) -> list:
    """As :func:`load_systems`, as :class:`~mlpot.data.dataset.Dataset` s: a format that reads lazily
    (the HDF5 store) gives views that read frames on demand; the others are read into memory."""
    systems: list = []
    for p in find_systems(paths):
        f = guess(Path(p))
        if f.open is not None:
            check_readable(Path(p))
            systems += f.open(Path(p), type_map)
        else:
            systems += read(p, type_map=type_map)
    tm = list(type_map) if type_map is not None else common_type_map(systems)
    return [s if s.type_map == tm else s.with_type_map(tm) for s in systems]


def write(systems: LabeledFrames | Sequence[LabeledFrames], path: PathLike, fmt: Optional[str] = None, append: bool = False) -> None:
    """Write systems to ``path``: ``hdf5`` (``append`` adds to an existing store), ``extxyz`` (one file),
    ``deepmd/npy`` or ``deepmd/raw`` (one system: ``path`` is the system directory; several: one
    subdirectory each, named by :func:`unique_names`). Format from the suffix unless ``fmt``."""
    if isinstance(systems, LabeledFrames):
        systems = [systems]
    systems = list(systems)
    if not systems:
        raise DataError(f"{path}: nothing to write (no systems)")
    f = get_format(fmt, where=f"{path}: output format") if fmt else guess_write(Path(path))
    if f.write is None:
        raise DataError(f"{path}: output format '{fmt}': expected one of {write_formats()}")
    f.write(systems, Path(path), append)


__all__ = [
    "read", "write", "frame_steps", "load_systems", "open_datasets", "guess_format", "guess_write_format", "normalize_format",
    "get_format", "find_systems", "is_deepmd_system", "read_deepmd", "write_deepmd", "read_ase", "read_vasp",
    "write_extxyz", "frames_from_atoms", "system_name", "unique_names", "common_type_map",
]
