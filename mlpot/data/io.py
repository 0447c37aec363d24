"""Readers and writers of labeled DFT data, all producing / consuming :class:`LabeledFrames`.

Formats (``fmt`` names in parentheses):

* DeePMD system directories (``deepmd/npy``, ``deepmd/raw``): ``type.raw`` (one type index per atom),
  ``type_map.raw`` (one element per line, optional), a ``nopbc`` marker file for non-periodic systems,
  and either ``set.*/{coord,box,energy,force,virial}.npy`` (npy variant; several ``set.*`` directories
  are concatenated in sorted order) or ``{coord,box,energy,force,virial}.raw`` text files at the top
  level (raw variant). One row per frame: coord/force (3·n_atoms), box/virial (9), energy (1).
  Units Å, eV, eV/Å, eV. A directory that holds several systems (found recursively) is read as all of them.
* Anything ASE reads with energies/forces attached (``extxyz``, ``ase``, ``ase/db``, ``ase/traj``).
  Frames with different atoms (symbol sequence) or pbc split into several systems, in order of first
  appearance. ASE stress (eV/Å³, Voigt or 3×3) becomes virial = −stress·volume (eV); an ``info['virial']``
  (9 numbers or 3×3, eV) is used as is. Written as extended XYZ by our own writer (full float64 precision).
* VASP ``OUTCAR`` (``vasp/outcar``; every ionic step) and ``vasprun.xml`` (``vasp/xml``) through ASE, or
  through pymatgen (``backend="pymatgen"`` of :func:`read_vasp`, imported lazily). The energy is VASP's
  free energy ``free  energy   TOTEN`` (the one the forces are consistent with, and the one dpdata /
  DeePMD-kit use), *not* ``energy(sigma->0)``. VASP's ``in kB`` line is −stress; the virial is
  virial = −stress·volume = (kB value)·0.1 GPa·volume, in eV.
* mlpot's HDF5 store (``hdf5``; ``.h5``/``.hdf5``), see :mod:`mlpot.data.store`.

Every reader checks the file exists and is readable, shapes agree, values are finite, the atom count is
constant within a system, type indices lie inside the type_map and periodic cells have positive volume,
raising :class:`mlpot.errors.DataError` naming the file, the field and what was expected vs found.
Every writer is atomic (:func:`mlpot.atomic_io.atomic_path`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError

PathLike = str | os.PathLike

#: eV/Å³ per kBar (1 kBar = 0.1 GPa; 1 eV/Å³ = 160.21766208 GPa)
EV_PER_A3_PER_KBAR = 0.1 / 160.21766208

DEEPMD_FORMATS = ("deepmd/npy", "deepmd/raw", "deepmd")
_FMT_ALIASES = {
    "deepmd": "deepmd/npy",
    "npy": "deepmd/npy",
    "raw": "deepmd/raw",
    "xyz": "extxyz",
    "h5": "hdf5",
    "outcar": "vasp/outcar",
    "vasprun": "vasp/xml",
    "vasp/vasprun": "vasp/xml",
    "db": "ase/db",
    "traj": "ase/traj",
}
READ_FORMATS = ("deepmd/npy", "deepmd/raw", "hdf5", "extxyz", "vasp/outcar", "vasp/xml", "ase", "ase/db", "ase/traj")
WRITE_FORMATS = ("deepmd/npy", "deepmd/raw", "extxyz", "hdf5")

_DEEPMD_FIELDS = {  # file stem -> (LabeledFrames field, columns per atom or per frame, per_atom)
    "coord": ("positions", 3, True),
    "box": ("cells", 9, False),
    "energy": ("energies", 1, False),
    "force": ("forces", 3, True),
    "virial": ("virials", 9, False),
}


# ---------------------------------------------------------------------------------------- helpers
def normalize_format(fmt: Optional[str]) -> Optional[str]:
    """Canonical format name (``None`` stays ``None``); DataError for an unknown one."""
    if fmt is None:
        return None
    f = _FMT_ALIASES.get(fmt.lower(), fmt.lower())
    if f not in READ_FORMATS:
        raise DataError(f"format '{fmt}': expected one of {list(READ_FORMATS)}")
    return f


def _check_readable(path: Path, what: str = "file") -> None:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: {what} is not readable (permission denied)")


def _check_finite(a: np.ndarray, path: Path, field: str) -> None:
    if not np.all(np.isfinite(a)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise DataError(f"{path}: field '{field}': expected finite values, found {a[idx]} at index {idx}")


def _load_numeric(path: Path, field: str) -> np.ndarray:
    """A float64 array from a ``.npy`` or whitespace-separated ``.raw`` file, always 2-D (rows = frames)."""
    _check_readable(path)
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
    _check_finite(a, path, field)
    return a


def _read_lines(path: Path, field: str) -> list[str]:
    _check_readable(path)
    try:
        return path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: field '{field}': could not read it ({exc})") from None


def _formula(symbols: Sequence[str]) -> str:
    """Chemical formula in order of first appearance, e.g. ``O64H128``."""
    order: dict[str, int] = {}
    for s in symbols:
        order[s] = order.get(s, 0) + 1
    return "".join(f"{s}{n}" for s, n in order.items())


def system_name(system: LabeledFrames) -> str:
    """A short readable name for a system: its formula (``O64H128``)."""
    return _formula(system.symbols)


def unique_names(systems: Sequence[LabeledFrames]) -> list[str]:
    """Distinct names for systems: the source's basename when it is one, else the formula; ``_1``... on clashes."""
    names: list[str] = []
    for s in systems:
        src = s.source if s.source and not s.source.startswith("<") else ""
        base = Path(src.rsplit(":", 1)[-1] if ":" in src else src).name  # "store.h5:name" -> "name"
        base = re.sub(r"[^A-Za-z0-9_.+-]", "_", base).strip(".") or system_name(s)
        if base.endswith((".xyz", ".extxyz", ".h5", ".hdf5", ".db", ".traj", ".xml")) or base in ("OUTCAR",):
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


# ---------------------------------------------------------------------------------------- DeePMD
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
    _check_readable(d, "system directory")
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


# ---------------------------------------------------------------------------------------- ASE
def _atoms_labels(atoms, path: Path, index: int, vasp: bool) -> dict[str, Optional[np.ndarray]]:
    """Energy, forces, virial of one ase.Atoms (None where absent)."""
    calc = atoms.calc
    results = dict(calc.results) if calc is not None and hasattr(calc, "results") else {}
    info = atoms.info
    energy = None
    if vasp and results.get("free_energy") is not None:
        energy = results["free_energy"]  # VASP's TOTEN (see module docstring)
    elif results.get("energy") is not None:
        energy = results["energy"]
    elif info.get("energy") is not None:
        energy = info["energy"]
    forces = results.get("forces")
    if forces is None and "forces" in atoms.arrays:
        forces = atoms.arrays["forces"]
    virial = None
    if info.get("virial") is not None:
        virial = np.asarray(info["virial"], dtype=np.float64).reshape(3, 3)
    else:
        stress = results.get("stress", info.get("stress"))
        if stress is not None:
            stress = np.asarray(stress, dtype=np.float64)
            if stress.shape == (6,):  # Voigt xx yy zz yz xz xy
                xx, yy, zz, yz, xz, xy = stress
                stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
            elif stress.size == 9:
                stress = stress.reshape(3, 3)
            else:
                raise DataError(f"{path}: field 'stress' of frame {index}: expected 6 (Voigt) or 9 numbers, found shape {stress.shape}")
            vol = abs(float(np.linalg.det(np.asarray(atoms.cell))))
            if vol <= 1e-12:
                raise DataError(f"{path}: field 'stress' of frame {index}: expected a cell with positive volume to convert stress to virial, found volume {vol}")
            virial = -stress * vol
    return {
        "energies": None if energy is None else np.float64(energy),
        "forces": None if forces is None else np.asarray(forces, dtype=np.float64),
        "virials": virial,
    }


def frames_from_atoms(
    atoms_list: Sequence, path: PathLike, type_map: Optional[Sequence[str]] = None, vasp: bool = False
) -> list[LabeledFrames]:
    """Group ase.Atoms into systems (same symbol sequence and pbc, in order of first appearance)."""
    path = Path(path)
    if len(atoms_list) == 0:
        raise DataError(f"{path}: expected at least one frame, found none")
    groups: dict[tuple, list[int]] = {}
    for k, atoms in enumerate(atoms_list):
        key = (tuple(atoms.get_chemical_symbols()), tuple(bool(b) for b in atoms.pbc))
        groups.setdefault(key, []).append(k)
    if type_map is None:
        tm: list[str] = []
        for key in groups:
            tm += [s for s in dict.fromkeys(key[0]) if s not in tm]
    else:
        tm = [str(t) for t in type_map]
    systems = []
    for (symbols, pbc), idx in groups.items():
        unknown = [s for s in dict.fromkeys(symbols) if s not in tm]
        if unknown:
            raise DataError(f"{path}: field 'type_map': expected it to contain every element, found {unknown} missing from {tm}")
        labels = [_atoms_labels(atoms_list[k], path, k, vasp) for k in idx]
        data: dict[str, Optional[np.ndarray]] = {}
        for fld in ("energies", "forces", "virials"):
            have = [lab[fld] is not None for lab in labels]
            if any(have) and not all(have):
                k = idx[have.index(False)]
                raise DataError(f"{path}: field '{fld}' of frame {k}: expected it in every frame of {_formula(symbols)}, found it missing")
            data[fld] = np.stack([lab[fld] for lab in labels]) if all(have) else None
        name = f"{path}" if len(groups) == 1 else f"{path}:{_formula(symbols)}"
        systems.append(
            LabeledFrames(
                type_map=tm,
                atom_types=np.array([tm.index(s) for s in symbols], dtype=np.int64),
                positions=np.stack([atoms_list[k].get_positions() for k in idx]),
                cells=np.stack([np.asarray(atoms_list[k].cell, dtype=np.float64) for k in idx]),
                pbc=np.array(pbc),
                source=name,
                **data,
            )
        )
    return systems


def read_ase(path: PathLike, fmt: Optional[str] = None, type_map: Optional[Sequence[str]] = None, vasp: bool = False) -> list[LabeledFrames]:
    """Every frame ASE reads from ``path`` (``fmt``: an ASE format name or None to guess), as systems."""
    import ase.io

    path = Path(path)
    _check_readable(path)
    try:
        atoms_list = ase.io.read(str(path), index=":", format=fmt)
    except Exception as exc:  # ASE raises many types for a malformed file
        raise DataError(f"{path}: could not read it with ASE (format {fmt or 'auto'}): {type(exc).__name__}: {exc}") from None
    if not isinstance(atoms_list, list):
        atoms_list = [atoms_list]
    for k, atoms in enumerate(atoms_list):
        for name, a in (("positions", atoms.get_positions()), ("cell", np.asarray(atoms.cell))):
            if not np.all(np.isfinite(a)):
                raise DataError(f"{path}: field '{name}' of frame {k}: expected finite values, found non-finite")
    return frames_from_atoms(atoms_list, path, type_map=type_map, vasp=vasp)


def read_vasp(path: PathLike, type_map: Optional[Sequence[str]] = None, backend: str = "ase") -> list[LabeledFrames]:
    """All ionic steps of a VASP ``OUTCAR`` or ``vasprun.xml``; energy = free energy TOTEN (eV),
    virial = −stress·volume (eV). ``backend``: ``"ase"`` or ``"pymatgen"`` (vasprun.xml only)."""
    path = Path(path)
    if backend == "ase":
        fmt = "vasp-xml" if path.name.endswith(".xml") else "vasp-out"
        return read_ase(path, fmt=fmt, type_map=type_map, vasp=True)
    if backend != "pymatgen":
        raise DataError(f"{path}: VASP backend '{backend}': expected 'ase' or 'pymatgen'")
    _check_readable(path)
    return frames_from_atoms(_pymatgen_atoms(path), path, type_map=type_map, vasp=True)


def _pymatgen_atoms(path: Path) -> list:
    """ionic steps of a vasprun.xml read with pymatgen, as ase.Atoms with a SinglePointCalculator."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    try:
        from pymatgen.io.vasp.outputs import Vasprun
    except ImportError as exc:  # pragma: no cover - pymatgen is an optional dependency
        raise DataError(f"{path}: the pymatgen backend needs pymatgen installed ({exc})") from None
    if not path.name.endswith(".xml"):
        raise DataError(f"{path}: the pymatgen backend reads vasprun.xml, found another file name")
    try:
        vr = Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    except Exception as exc:
        raise DataError(f"{path}: could not read it with pymatgen: {type(exc).__name__}: {exc}") from None
    out = []
    for step in vr.ionic_steps:
        st = step["structure"]
        atoms = Atoms([str(s.specie) for s in st], positions=st.cart_coords, cell=st.lattice.matrix, pbc=True)
        kbar = np.asarray(step["stress"], dtype=np.float64)  # pymatgen: VASP's kB values (= −stress)
        stress = -kbar * EV_PER_A3_PER_KBAR
        calc = SinglePointCalculator(atoms, energy=step["e_0_energy"], free_energy=step["e_fr_energy"],
                                     forces=np.asarray(step["forces"]), stress=stress)
        atoms.calc = calc
        out.append(atoms)
    return out


def _fmt_floats(a: np.ndarray) -> str:
    return " ".join(repr(float(x)) for x in np.asarray(a).reshape(-1))


def write_extxyz(systems: Sequence[LabeledFrames], path: PathLike) -> None:
    """All frames of all systems into one extended-XYZ file, atomically, with full float64 precision
    (``repr``). Energy → ``energy=``, forces → per-atom ``forces``, virial → ``stress=`` (eV/Å³, 3×3,
    = −virial/volume) for periodic frames with a symmetric virial, else ``virial=`` (eV)."""
    if isinstance(systems, LabeledFrames):
        systems = [systems]
    lines: list[str] = []
    for s in systems:
        pbc_s = " ".join("T" if b else "F" for b in s.pbc)
        props = "species:S:1:pos:R:3" + (":forces:R:3" if s.forces is not None else "")
        symbols = s.symbols
        for f in range(s.n_frames):
            head = [f'Lattice="{_fmt_floats(s.cells[f])}"', f"Properties={props}"]
            if s.energies is not None:
                head.append(f"energy={float(s.energies[f])!r}")
            if s.virials is not None:
                vol = abs(float(np.linalg.det(s.cells[f])))
                v = s.virials[f]
                symmetric = np.allclose(v, v.T, rtol=0, atol=1e-14 * (1.0 + np.abs(v).max()))
                if s.pbc.all() and vol > 1e-12 and symmetric:  # ASE symmetrizes stress: keep others as virial
                    head.append(f'stress="{_fmt_floats((-v / vol).T)}"')  # ASE reads 3x3 values in Fortran order
                else:
                    head.append(f'virial="{_fmt_floats(v.T)}"')
            head.append(f'pbc="{pbc_s}"')
            lines.append(str(s.n_atoms))
            lines.append(" ".join(head))
            cols = [s.positions[f]] + ([s.forces[f]] if s.forces is not None else [])
            block = np.concatenate(cols, axis=1)
            for sym, row in zip(symbols, block):
                lines.append(sym + " " + _fmt_floats(row))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------- dispatch
def guess_format(path: PathLike) -> str:
    """The read format of ``path`` from what it is (directory, suffix, VASP file name)."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        return "deepmd/npy"
    if name.endswith((".h5", ".hdf5")):
        return "hdf5"
    if "outcar" in name:
        return "vasp/outcar"
    if name.endswith(".xml") and "vasprun" in name:
        return "vasp/xml"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if name.endswith(".db"):
        return "ase/db"
    if name.endswith(".traj"):
        return "ase/traj"
    return "ase"


def read(path: PathLike, fmt: Optional[str] = None, type_map: Optional[Sequence[str]] = None) -> list[LabeledFrames]:
    """All systems in ``path`` (format auto-detected unless ``fmt``); re-indexed into ``type_map`` if given."""
    p = Path(path)
    _check_readable(p)
    fmt = normalize_format(fmt) or guess_format(p)
    if fmt in ("deepmd/npy", "deepmd/raw"):
        if not p.is_dir():
            raise DataError(f"{p}: expected a DeePMD system directory, found a file")
        return [read_deepmd(d, type_map=type_map) for d in find_systems(p)]
    if fmt == "hdf5":
        from mlpot.data.store import read_hdf5

        systems = read_hdf5(p)
    elif fmt == "vasp/outcar" or fmt == "vasp/xml":
        return read_vasp(p, type_map=type_map)
    else:
        ase_fmt = {"extxyz": "extxyz", "ase/db": "db", "ase/traj": "traj", "ase": None}[fmt]
        return read_ase(p, fmt=ase_fmt, type_map=type_map)
    if type_map is not None:
        systems = [s.with_type_map(type_map) for s in systems]
    return systems


def load_systems(paths: PathLike | Iterable[PathLike], type_map: Optional[Sequence[str]] = None) -> list[LabeledFrames]:
    """Read every system in ``paths`` (directories expanded by :func:`find_systems`) and re-index them all
    into one type_map: ``type_map`` if given, else the union of theirs in order of first appearance."""
    systems: list[LabeledFrames] = []
    for p in find_systems(paths):
        systems += read(p, type_map=type_map)
    tm = list(type_map) if type_map is not None else common_type_map(systems)
    return [s if s.type_map == tm else s.with_type_map(tm) for s in systems]


def guess_write_format(path: PathLike) -> str:
    name = Path(path).name.lower()
    if name.endswith((".h5", ".hdf5")):
        return "hdf5"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    return "deepmd/npy"


def write(systems: LabeledFrames | Sequence[LabeledFrames], path: PathLike, fmt: Optional[str] = None, append: bool = False) -> None:
    """Write systems to ``path``: ``hdf5`` (``append`` adds to an existing store), ``extxyz`` (one file),
    ``deepmd/npy`` or ``deepmd/raw`` (one system: ``path`` is the system directory; several: one
    subdirectory each, named by :func:`unique_names`). Format from the suffix unless ``fmt``."""
    if isinstance(systems, LabeledFrames):
        systems = [systems]
    systems = list(systems)
    if not systems:
        raise DataError(f"{path}: nothing to write (no systems)")
    f = fmt.lower() if fmt else guess_write_format(path)
    f = _FMT_ALIASES.get(f, f)
    if f not in WRITE_FORMATS:
        raise DataError(f"{path}: output format '{fmt}': expected one of {list(WRITE_FORMATS)}")
    if f == "hdf5":
        from mlpot.data.store import write_hdf5

        write_hdf5(path, systems, append=append)
    elif f == "extxyz":
        write_extxyz(systems, path)
    elif len(systems) == 1:
        write_deepmd(systems[0], path, fmt=f)
    else:
        with atomic_path(path, is_dir=True) as tmp:
            for name, s in zip(unique_names(systems), systems):
                write_deepmd(s, tmp / name, fmt=f)
