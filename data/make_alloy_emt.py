"""Generate ``data/alloy_emt/``: a small labelled many-element metal data set (ASE's EMT potential).

NOT first-principles data: energies, forces and virials come from ASE's Effective Medium Theory
calculator (``ase.calculators.emt.EMT``, parameters for Al, Cu, Ag, Au, Ni, Pd, Pt). It exists so
that the type-embedding descriptors (se_atten, se_atten_v2) can be trained and tested on systems
with several elements without shipping DFT data.

Systems (DeePMD npy directories, one ``type_map.raw`` each, float64 arrays), 32-atom fcc 2×2×2
supercells with a random composition of the listed elements:

* ``<elements>_solid``: one random decoration of the fcc lattice (a = Vegard average of the elements' EMT lattice constants),
  scaled by 0.97–1.03, sheared by up to ±2 %, atoms rattled by σ = 0.08 Å;
* ``<elements>_liquid``: snapshots of a Langevin MD at 2500 K (EMT, 2 fs steps, every 10th step
  after 200 steps of melting), in the same box expanded by 3 %.

Run: ``python data/make_alloy_emt.py [OUTDIR]`` (default ``data/alloy_emt``; ~1 min on one core).
The random seed is fixed: the output is reproducible with the same ASE/NumPy versions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

#: the elements EMT supports, in the order of the shared type_map
ELEMENTS = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
#: fcc lattice constants (Å) used for the Vegard average (experimental values)
LATTICE = {"Al": 4.05, "Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92}
#: (elements, phase, frames)
SYSTEMS = [
    (["Cu", "Au"], "solid", 20),
    (["Al", "Cu", "Ni"], "solid", 20),
    (["Ag", "Au", "Pd", "Pt"], "solid", 20),
    (["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"], "solid", 20),
    (["Cu", "Ag", "Au", "Pd"], "liquid", 20),
    (["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"], "liquid", 20),
]


def random_cell(elements: list[str], rng: np.random.Generator) -> Atoms:
    """32-atom fcc supercell with each site an element drawn uniformly from ``elements``."""
    symbols = list(rng.choice(elements, size=32))
    for k, el in enumerate(elements):  # every listed element occurs at least once
        symbols[k] = el
    rng.shuffle(symbols)
    a = float(np.mean([LATTICE[s] for s in symbols]))
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 2, 2))
    atoms.set_chemical_symbols(symbols)
    return atoms


def label(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    atoms.calc = EMT()
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    virial = -atoms.get_stress(voigt=False) * atoms.get_volume()
    return atoms.get_positions().copy(), atoms.get_cell().array.copy(), float(e), f.copy(), virial


def solid_frames(elements: list[str], n: int, rng: np.random.Generator) -> list[tuple]:
    base = random_cell(elements, rng)
    out = []
    for _ in range(n):
        atoms = base.copy()
        strain = np.eye(3) * rng.uniform(0.97, 1.03) + rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.get_cell().array @ strain, scale_atoms=True)
        atoms.rattle(stdev=0.08, seed=int(rng.integers(1 << 30)))
        out.append((atoms.get_chemical_symbols(), *label(atoms)))
    return out


def liquid_frames(elements: list[str], n: int, rng: np.random.Generator) -> list[tuple]:
    atoms = random_cell(elements, rng)
    atoms.set_cell(atoms.get_cell().array * 1.03, scale_atoms=True)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=2500, rng=rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=2500, friction=0.02, rng=rng)
    dyn.run(200)
    out = []
    for _ in range(n):
        dyn.run(10)
        snap = atoms.copy()
        out.append((snap.get_chemical_symbols(), *label(snap)))
    return out


def write_system(path: Path, frames: list[tuple], elements: list[str]) -> None:
    """One DeePMD npy system (all frames share the first frame's atom order and types)."""
    symbols = frames[0][0]
    assert all(f[0] == symbols for f in frames)
    type_map = [e for e in ELEMENTS if e in elements]
    path.mkdir(parents=True, exist_ok=True)
    (path / "set.000").mkdir(exist_ok=True)
    (path / "type_map.raw").write_text("\n".join(type_map) + "\n")
    (path / "type.raw").write_text("\n".join(str(type_map.index(s)) for s in symbols) + "\n")
    nf = len(frames)
    np.save(path / "set.000/coord.npy", np.stack([f[1] for f in frames]).reshape(nf, -1))
    np.save(path / "set.000/box.npy", np.stack([f[2] for f in frames]).reshape(nf, 9))
    np.save(path / "set.000/energy.npy", np.array([f[3] for f in frames]))
    np.save(path / "set.000/force.npy", np.stack([f[4] for f in frames]).reshape(nf, -1))
    np.save(path / "set.000/virial.npy", np.stack([f[5] for f in frames]).reshape(nf, 9))


def main(outdir: str = "data/alloy_emt") -> None:
    rng = np.random.default_rng(20261201)
    out = Path(outdir)
    for elements, phase, n in SYSTEMS:
        frames = solid_frames(elements, n, rng) if phase == "solid" else liquid_frames(elements, n, rng)
        name = "".join(e for e in ELEMENTS if e in elements) + f"_{phase}"
        write_system(out / name, frames, elements)
        print(f"{out / name}: {len(frames)} frames x 32 atoms")


if __name__ == "__main__":
    main(*sys.argv[1:2])
