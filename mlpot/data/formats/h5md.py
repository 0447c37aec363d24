"""H5MD trajectories (``h5md``; ``.h5``/``.h5md`` files holding an ``/h5md`` group), as ``mlpot md`` writes them.

Read with h5py directly (mlpot does not import md_engine). Layout (https://www.nongnu.org/h5md/):
``/particles/<group>/position/{value (T, N, 3), step (T,), time (T,)}`` (Å, or nm by its ``unit``
attribute), ``/particles/<group>/box`` (attr ``boundary``: ``periodic``/``none`` per direction) with
``edges/value`` (T, 3, 3) cell rows, or (T, 3) / (3,) for an orthorhombic box, ``/particles/<group>/species``
(N,) type indices with attr ``type_map`` (element names; without it the indices are the names ``"0"``,
``"1"``, ...). The group is ``all`` when present, else the first. The frames are unlabeled: the
observables an MD run records are model predictions, not reference labels, and are not read as labels.
:func:`frame_steps` gives the MD step of every frame (``position/step``), which ``mlpot model-devi``
writes in its ``step`` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mlpot.data.formats import register
from mlpot.data.formats._util import check_readable
from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError

_LENGTH = {"angstrom": 1.0, "a": 1.0, "å": 1.0, "ang": 1.0, "nm": 10.0, "nanometer": 10.0}


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_signature(path: Path) -> bool:
    """Whether the HDF5 signature is at offset 0, 512, 1024 or 2048 (where a user block may push it)."""
    try:
        with open(path, "rb") as f:
            for offset in (0, 512, 1024, 2048):
                f.seek(offset)
                if f.read(8) == _SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def is_h5md(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file with an ``/h5md`` group (False for anything unreadable)."""
    if not path.is_file() or not _hdf5_signature(path):  # no h5py import for the other formats' files
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "h5md" in f and "particles" in f
    except Exception:
        return False


def _particles(f: Any, path: Path) -> Any:
    if "particles" not in f or len(f["particles"]) == 0:
        raise DataError(f"{path}: H5MD file without a /particles group")
    name = "all" if "all" in f["particles"] else next(iter(f["particles"]))
    part = f["particles"][name]
    for key in ("position/value", "species"):
        if key not in part:
            raise DataError(f"{path}: H5MD field 'particles/{name}/{key}' not found")
    return part


def _scale(ds: Any) -> float:
    unit = ds.attrs.get("unit", "angstrom")
    unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    try:
        return _LENGTH[unit.strip().lower()]
    except KeyError:
        raise DataError(f"{ds.file.filename}: H5MD field '{ds.name}': unit '{unit}': expected one of "
                        f"{sorted(_LENGTH)}") from None


def _cells(part: Any, n_frames: int, steps: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(cells (T, 3, 3) Å, pbc (3,)) of every position frame."""
    box = part.get("box")
    if box is None:
        return np.zeros((n_frames, 3, 3)), np.zeros(3, dtype=bool)
    boundary = [b.decode() if isinstance(b, bytes) else str(b) for b in box.attrs.get("boundary", ["periodic"] * 3)]
    pbc = np.array([b == "periodic" for b in boundary], dtype=bool)
    if "edges" not in box:
        if pbc.any():
            raise DataError(f"{path}: H5MD field '{box.name}/edges' not found for a periodic box")
        return np.zeros((n_frames, 3, 3)), pbc
    edges = box["edges"]
    if isinstance(edges, type(box)):  # time-dependent element: value/step/time
        values = edges["value"][()] * _scale(edges["value"])
        if values.shape[0] != n_frames:
            estep = edges["step"][()] if "step" in edges else np.arange(values.shape[0])
            idx = np.searchsorted(estep, steps, side="right") - 1  # the box recorded at or before each frame
            if np.any(idx < 0):
                raise DataError(f"{path}: H5MD box edges start after the first position frame")
            values = values[idx]
    else:  # fixed box
        values = np.broadcast_to(edges[()] * _scale(edges), (n_frames, *edges.shape))
    values = np.asarray(values, dtype=np.float64)
    if values.shape[1:] == (3,):
        values = values[:, :, None] * np.eye(3)  # orthorhombic: edge lengths
    if values.shape[1:] != (3, 3):
        raise DataError(f"{path}: H5MD field 'box/edges/value': expected shape (T, 3, 3) or (T, 3), "
                        f"found {values.shape}")
    return values, pbc


def read(path: Path, type_map: Optional[Sequence[str]] = None) -> list[LabeledFrames]:
    """The position frames of an H5MD file as one unlabeled system (see the module docstring)."""
    import h5py

    check_readable(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        part = _particles(f, path)
        pos = part["position/value"]
        positions = pos[()] * _scale(pos)
        steps = part["position/step"][()] if "position/step" in part else np.arange(positions.shape[0])
        species = np.asarray(part["species"][()])
        if species.ndim == 2:  # time-dependent species: the first frame's (mlpot systems keep their types)
            species = species[0]
        names = part["species"].attrs.get("type_map")
        if names is None:
            names = [str(t) for t in range(int(species.max()) + 1)]
        tm = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        cells, pbc = _cells(part, positions.shape[0], np.asarray(steps), path)
    if positions.shape[0] == 0:
        raise DataError(f"{path}: H5MD trajectory with no frames")
    system = LabeledFrames(type_map=tm, atom_types=species, positions=positions, cells=cells, pbc=pbc,
                           source=str(path))
    return [system if type_map is None else system.with_type_map(type_map)]


def frame_steps(path: Path) -> list[np.ndarray]:
    """The MD step of every frame (``particles/<group>/position/step``), one array per system read."""
    import h5py

    with h5py.File(path, "r") as f:
        part = _particles(f, path)
        if "position/step" in part:
            return [np.asarray(part["position/step"][()], dtype=np.int64)]
        return [np.arange(part["position/value"].shape[0], dtype=np.int64)]


register(
    "h5md", read=read, steps=frame_steps, suffixes=(".h5md",), match=lambda p: is_h5md(p), priority=95,
    description="H5MD trajectory (what mlpot md writes; read only, frames unlabeled; model-devi takes each frame's MD step)",
)
