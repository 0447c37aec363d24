"""DeePMD system directories (``deepmd/npy``, ``deepmd/raw``).

``type.raw`` (one type index per atom), ``type_map.raw`` (one element per line, optional), a ``nopbc``
marker file for non-periodic systems, and either ``set.*/{coord,box,energy,force,virial}.npy`` (npy
variant; several ``set.*`` directories are concatenated in sorted order) or
``{coord,box,energy,force,virial}.raw`` text files at the top level (raw variant). One row per frame:
coord/force (3·n_atoms), box/virial (9), energy (1). Units Å, eV, eV/Å, eV. A directory that holds
several systems (found recursively) is read as all of them; several systems are written one
subdirectory each (named by :func:`~mlpot.data.formats._util.unique_names`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.data.formats import register
from mlpot.data.formats._util import PathLike, check_finite, check_readable, unique_names
from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError

_DEEPMD_FIELDS = {  # file stem -> (LabeledFrames field, columns per atom or per frame, per_atom)
    "coord": ("positions", 3, True),
    "box": ("cells", 9, False),
    "energy": ("energies", 1, False),
    "force": ("forces", 3, True),
    "virial": ("virials", 9, False),
}


def _load_numeric(path: Path, field: str) -> np.ndarray:
    """A float64 array from a ``.npy`` or whitespace-separated ``.raw`` file, always 2-D (rows = frames)."""
    check_readable(path)
    try:
        if path.suffix == ".npy":
            a = np.load(path, allow_pickle=False)
        else:
            a = np.loadtxt(path, dtype=np.float64, ndmin=2)
        a = np.asarray(a, dtype=np.float64)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: field '{field}': expected a numeric array, could not read it ({exc})") from None
    if a.ndim == 1:
        a = a.reshape(-1, 1) if field == "energy" else a.reshape(1, -1)
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    check_finite(a, path, field)
    return a


def _read_lines(path: Path, field: str) -> list[str]:
    check_readable(path)
    try:
        return path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: field '{field}': could not read it ({exc})") from None


def is_deepmd_system(path: PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / "type.raw").is_file()


def find_systems(paths: PathLike | Iterable[PathLike]) -> list[str]:
    """Expand ``paths`` into data sources: a DeePMD system dir stays; another directory is searched
    recursively (sorted) for DeePMD system dirs; a file (HDF5, extxyz, OUTCAR, ...) stays."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataError(f"{p}: system path not found")
        if p.is_file() or is_deepmd_system(p):
            out.append(str(p))
            continue
        found = []
        for root, dirs, files in os.walk(p):
            dirs.sort()
            if "type.raw" in files:
                found.append(root)
                dirs[:] = []  # a system's set.* dirs are not systems
        if not found:
            raise DataError(f"{p}: expected a DeePMD system directory (with type.raw) or directories holding some, found none")
        out += found
    return out


def read_deepmd(path: PathLike, type_map: Optional[Sequence[str]] = None) -> LabeledFrames:
    """One DeePMD system directory (npy ``set.*`` or top-level ``*.raw``) as :class:`LabeledFrames`.

    ``type_map`` (optional): the element names; when the directory has a ``type_map.raw`` its systems are
    re-indexed into ``type_map`` (which must contain its elements); without ``type_map.raw`` the given
    ``type_map`` names the type indices, else they are named ``Type_0``, ``Type_1``, ...
    """
    d = Path(path)
    check_readable(d, "system directory")
    if not d.is_dir():
        raise DataError(f"{d}: expected a DeePMD system directory, found a file")
    type_file = d / "type.raw"
    words = _read_lines(type_file, "type")
    try:
        atom_types = np.array([int(w) for w in words], dtype=np.int64)
    except ValueError:
        raise DataError(f"{type_file}: field 'type': expected integer type indices, found {words[:5]}...") from None
    if atom_types.size == 0:
        raise DataError(f"{type_file}: field 'type': expected one type index per atom, found an empty file")
    n_atoms = atom_types.size
    tm_file = d / "type_map.raw"
    file_type_map = _read_lines(tm_file, "type_map") if tm_file.exists() else None
    if file_type_map is not None:
        names = file_type_map
        if len(set(names)) != len(names) or not names:
            raise DataError(f"{tm_file}: field 'type_map': expected unique element names, found {names}")
    elif type_map is not None:
        names = [str(t) for t in type_map]
    else:
        names = [f"Type_{k}" for k in range(int(atom_types.max()) + 1)]
    if atom_types.min() < 0 or atom_types.max() >= len(names):
        bad = int(atom_types[(atom_types < 0) | (atom_types >= len(names))][0])
        src = tm_file if file_type_map is not None else "the type_map"
        raise DataError(
            f"{type_file}: field 'type': expected indices in [0, {len(names)}) for {src} {names}, found index {bad}"
        )
    nopbc = (d / "nopbc").exists()

    sets = sorted(p for p in d.glob("set.*") if p.is_dir())
    if sets:
        chunks = [_read_deepmd_set(s, ".npy", n_atoms, nopbc) for s in sets]
    elif (d / "coord.raw").exists():
        chunks = [_read_deepmd_set(d, ".raw", n_atoms, nopbc)]
    else:
        raise DataError(f"{d}: expected set.*/coord.npy or coord.raw, found neither")
    data: dict[str, Optional[np.ndarray]] = {}
    for fld in ("positions", "cells", "energies", "forces", "virials"):
        present = [c[fld] is not None for c in chunks]
        if any(present) and not all(present):
            missing = sets[present.index(False)]
            raise DataError(f"{missing}: field '{fld}': expected it in every set.* like in {sets[present.index(True)]}, found it missing")
        data[fld] = np.concatenate([c[fld] for c in chunks]) if all(present) else None
    n_frames = data["positions"].shape[0]
    cells = data["cells"] if data["cells"] is not None else np.zeros((n_frames, 3, 3))
    system = LabeledFrames(
        type_map=names,
        atom_types=atom_types,
        positions=data["positions"],
        cells=cells,
        pbc=np.array([not nopbc] * 3),
        energies=data["energies"],
        forces=data["forces"],
        virials=data["virials"],
        source=str(d),
    )
    if type_map is not None and file_type_map is not None:
        system = system.with_type_map(type_map)
    return system


def _read_deepmd_set(d: Path, ext: str, n_atoms: int, nopbc: bool) -> dict[str, Optional[np.ndarray]]:
    """The arrays of one ``set.*`` (or of the top-level ``*.raw`` files), reshaped and shape-checked."""
    out: dict[str, Optional[np.ndarray]] = {}
    n_frames: Optional[int] = None
    first = None
    for stem, (fld, ncol, per_atom) in _DEEPMD_FIELDS.items():
        f = d / f"{stem}{ext}"
        if not f.exists():
            if stem == "coord":
                raise DataError(f"{f}: field 'coord': file not found (every set needs coordinates)")
            if stem == "box" and not nopbc:
                raise DataError(f"{f}: field 'box': file not found (periodic system without a 'nopbc' marker)")
            out[fld] = None
            continue
        a = _load_numeric(f, stem)
        width = ncol * n_atoms if per_atom else ncol
        if a.shape[1] != width:
            if per_atom and a.shape[1] % 3 == 0:
                raise DataError(
                    f"{f}: field '{stem}': expected {width} columns ({n_atoms} atoms from type.raw x 3), "
                    f"found {a.shape[1]} ({a.shape[1] // 3} atoms): the atom count must be constant within a system"
                )
            raise DataError(f"{f}: field '{stem}': expected {width} columns per frame, found shape {a.shape}")
        if n_frames is None:
            n_frames, first = a.shape[0], f
        elif a.shape[0] != n_frames:
            raise DataError(f"{f}: field '{stem}': expected {n_frames} frames (as in {first.name}), found {a.shape[0]}")
        if stem == "energy":
            a = a.reshape(-1)
        elif per_atom:
            a = a.reshape(n_frames, n_atoms, 3)
        else:
            a = a.reshape(n_frames, 3, 3)
        out[fld] = a
    if not nopbc and out["cells"] is not None:
        vol = np.linalg.det(out["cells"])
        if np.any(vol <= 1e-12):
            k = int(np.argmax(vol <= 1e-12))
            raise DataError(f"{d / ('box' + ext)}: field 'box': expected a positive cell volume, found {vol[k]:.6g} Å³ in frame {k}")
    return out


def write_deepmd(system: LabeledFrames, path: PathLike, fmt: str = "npy", set_size: Optional[int] = None) -> None:
    """Write one system as a DeePMD directory, atomically. ``fmt``: ``"npy"`` (``set.000``, ``set.001``, ...
    of ``set_size`` frames each, default all in one set; float64) or ``"raw"`` (top-level text files,
    ``%.17g``, lossless)."""
    fmt = fmt.split("/")[-1]
    if fmt not in ("npy", "raw"):
        raise DataError(f"{path}: format '{fmt}': expected 'npy' or 'raw'")
    pbc = system.pbc
    if pbc.any() and not pbc.all():
        raise DataError(f"{system.source}: field 'pbc': expected all or no directions periodic for DeePMD format, found {pbc.tolist()}")
    nf = system.n_frames
    arrays = {
        "coord": system.positions.reshape(nf, -1),
        "box": system.cells.reshape(nf, 9),
        "energy": system.energies,
        "force": None if system.forces is None else system.forces.reshape(nf, -1),
        "virial": None if system.virials is None else system.virials.reshape(nf, 9),
    }
    with atomic_path(path, is_dir=True) as tmp:
        np.savetxt(tmp / "type.raw", system.atom_types, fmt="%d")
        (tmp / "type_map.raw").write_text("".join(f"{t}\n" for t in system.type_map))
        if not pbc.any():
            (tmp / "nopbc").write_text("")
        if fmt == "raw":
            for stem, a in arrays.items():
                if a is not None:
                    np.savetxt(tmp / f"{stem}.raw", a.reshape(nf, -1), fmt="%.17g")
            return
        size = nf if not set_size or set_size <= 0 else int(set_size)
        for k, start in enumerate(range(0, nf, size)):
            sd = tmp / f"set.{k:03d}"
            sd.mkdir()
            for stem, a in arrays.items():
                if a is not None:
                    np.save(sd / f"{stem}.npy", np.ascontiguousarray(a[start : start + size], dtype=np.float64))



def _read(path: Path, type_map: Optional[Sequence[str]]) -> list[LabeledFrames]:
    if not path.is_dir():
        raise DataError(f"{path}: expected a DeePMD system directory, found a file")
    return [read_deepmd(d, type_map=type_map) for d in find_systems(path)]


def _writer(fmt: str):
    def write(systems: list[LabeledFrames], path: Path, append: bool = False) -> None:
        if len(systems) == 1:
            write_deepmd(systems[0], path, fmt=fmt)
            return
        with atomic_path(path, is_dir=True) as tmp:
            for name, s in zip(unique_names(systems), systems):
                write_deepmd(s, tmp / name, fmt=fmt)

    return write


register(
    "deepmd/npy", aliases=("deepmd", "npy"), read=_read, write=_writer("npy"), match=lambda p: p.is_dir(),
    priority=100, default_write=True, description="DeePMD system directory, set.*/*.npy (or directories of them)",
)
register(
    "deepmd/raw", aliases=("raw",), read=_read, write=_writer("raw"),
    description="DeePMD system directory, *.raw text files (lossless %.17g)",
)
