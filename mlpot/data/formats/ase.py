"""Anything ASE reads with energies/forces attached (``extxyz``, ``ase``, ``ase/db``, ``ase/traj``).

Frames with different atoms (symbol sequence) or pbc split into several systems, in order of first
appearance. ASE stress (eV/Å³, Voigt or 3×3) becomes virial = −stress·volume (eV); an
``info['virial']`` (9 numbers or 3×3, eV) is used as is. Written as extended XYZ by our own writer
(full float64 precision, ``repr``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.data.formats import register
from mlpot.data.formats._util import PathLike, check_readable, formula
from mlpot.data.frames import LabeledFrames
from mlpot.data.types import type_indices
from mlpot.errors import DataError

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
                from ase.stress import voigt_6_to_full_3x3_stress

                stress = voigt_6_to_full_3x3_stress(stress)
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
        types = type_indices(symbols, tm, where=str(path), owner="the given")
        labels = [_atoms_labels(atoms_list[k], path, k, vasp) for k in idx]
        data: dict[str, Optional[np.ndarray]] = {}
        for fld in ("energies", "forces", "virials"):
            have = [lab[fld] is not None for lab in labels]
            if any(have) and not all(have):
                k = idx[have.index(False)]
                raise DataError(f"{path}: field '{fld}' of frame {k}: expected it in every frame of {formula(symbols)}, found it missing")
            data[fld] = np.stack([lab[fld] for lab in labels]) if all(have) else None
        name = f"{path}" if len(groups) == 1 else f"{path}:{formula(symbols)}"
        systems.append(
            LabeledFrames(
                type_map=tm,
                atom_types=types,
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
    check_readable(path)
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



def _reader(ase_format: Optional[str]):
    def read(path: Path, type_map: Optional[Sequence[str]]) -> list[LabeledFrames]:
        return read_ase(path, fmt=ase_format, type_map=type_map)

    return read


def _write_extxyz(systems: list[LabeledFrames], path: Path, append: bool = False) -> None:
    write_extxyz(systems, path)


register(
    "extxyz", aliases=("xyz",), read=_reader("extxyz"), write=_write_extxyz, suffixes=(".xyz", ".extxyz"),
    priority=70, description="extended XYZ (read by ASE; written by mlpot at full float64 precision)",
)
register("ase/db", aliases=("db",), read=_reader("db"), suffixes=(".db",), priority=70, description="ASE database")
register("ase/traj", aliases=("traj",), read=_reader("traj"), suffixes=(".traj",), priority=70, description="ASE trajectory")
register("ase", read=_reader(None), fallback=True, description="any other file ASE can read (format guessed by ASE)")
