"""VASP ``OUTCAR`` (``vasp/outcar``; every ionic step) and ``vasprun.xml`` (``vasp/xml``).

Read through ASE, or through pymatgen (``backend="pymatgen"`` of :func:`read_vasp`, imported lazily).
The energy is VASP's free energy ``free  energy   TOTEN`` (the one the forces are consistent with,
and the one dpdata / DeePMD-kit use), *not* ``energy(sigma->0)``. VASP's ``in kB`` line is −stress;
the virial is virial = −stress·volume = (kB value)·0.1 GPa·volume, in eV
(:data:`mlpot.units.KBAR_TO_EV_PER_A3`, CODATA 2018).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mlpot.data.formats import register
from mlpot.data.formats._util import PathLike, check_readable
from mlpot.data.frames import LabeledFrames
from mlpot.errors import DataError
from mlpot.units import KBAR_TO_EV_PER_A3

def read_vasp(path: PathLike, type_map: Optional[Sequence[str]] = None, backend: str = "ase") -> list[LabeledFrames]:
    """All ionic steps of a VASP ``OUTCAR`` or ``vasprun.xml``; energy = free energy TOTEN (eV),
    virial = −stress·volume (eV). ``backend``: ``"ase"`` or ``"pymatgen"`` (vasprun.xml only)."""
    from mlpot.data.formats.ase import frames_from_atoms, read_ase

    path = Path(path)
    if backend == "ase":
        fmt = "vasp-xml" if path.name.endswith(".xml") else "vasp-out"
        return read_ase(path, fmt=fmt, type_map=type_map, vasp=True)
    if backend != "pymatgen":
        raise DataError(f"{path}: VASP backend '{backend}': expected 'ase' or 'pymatgen'")
    check_readable(path)
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
        stress = -kbar * KBAR_TO_EV_PER_A3
        calc = SinglePointCalculator(atoms, energy=step["e_0_energy"], free_energy=step["e_fr_energy"],
                                     forces=np.asarray(step["forces"]), stress=stress)
        atoms.calc = calc
        out.append(atoms)
    return out



def _read(path: Path, type_map: Optional[Sequence[str]]) -> list[LabeledFrames]:
    return read_vasp(path, type_map=type_map)


register(
    "vasp/outcar", aliases=("outcar",), read=_read, match=lambda p: "outcar" in p.name.lower(), priority=80,
    description="VASP OUTCAR (every ionic step)",
)
register(
    "vasp/xml", aliases=("vasprun", "vasp/vasprun"), read=_read,
    match=lambda p: p.name.lower().endswith(".xml") and "vasprun" in p.name.lower(), priority=80,
    description="VASP vasprun.xml",
)
