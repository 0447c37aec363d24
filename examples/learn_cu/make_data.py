"""The data of the learn_cu example, all labelled by ASE's EMT (Jacobsen, Stoltze & Nørskov, Surf.
Sci. 366, 394 (1996)):

* ``init.extxyz``: the 10 initial frames: fcc Cu, 2×2×2 conventional cells (32 atoms), lattice
  constant 3.61 Å scaled by 0.98–1.02, atoms displaced at random (σ = 0.03–0.12 Å);
* ``fcc108.extxyz``: the exploration start of the solid, fcc Cu 3×3×3 (108 atoms), a = 3.61 Å;
* ``liquid108.extxyz``: the exploration start of the liquid: those 108 atoms melted by EMT Langevin
  MD at 2,500 K (2 ps, at the volume of a = 3.61 × 1.03 Å), then 0.4 ps at 1,500 K;
* ``test.extxyz`` (with ``--test``): the independent test set: 60 frames of 108 atoms from ASE
  Langevin MD with EMT itself, 10 frames each (80 fs apart after 0.6 ps): the crystal at 300, 600,
  900, 1200 and 1500 K and the liquid at 1500 K, so it shares nothing with the loop's own
  exploration (which is MD with the models).

    python make_data.py [--test | --test-only]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

HERE = Path(__file__).resolve().parent
A0 = 3.61  # Å


def labelled(atoms):
    """A copy of ``atoms`` carrying its EMT energy (eV), forces (eV/Å) and stress (eV/Å³)."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    return atoms


def initial_frames(n: int = 10, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        scale = 0.98 + 0.04 * k / max(1, n - 1)
        at = bulk("Cu", "fcc", a=A0 * scale, cubic=True).repeat((2, 2, 2))
        sigma = 0.03 + 0.09 * rng.random()
        at.positions += rng.normal(0.0, sigma, at.positions.shape)
        frames.append(labelled(at))
    return frames


def _langevin(at, t: float, steps: int, seed: int):
    """EMT Langevin MD of ``at`` at ``t`` K (2 fs steps, friction 0.02 fs⁻¹); returns the integrator."""
    from ase.md import velocitydistribution as vd
    from ase.md.langevin import Langevin

    at.calc = EMT()
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29 (MaxwellBoltzmannDistribution deprecated there)
        vd.thermalize_momenta(at, t, rng=np.random.default_rng(seed), exact_temperature=True)
    else:
        vd.MaxwellBoltzmannDistribution(at, temperature_K=t, rng=np.random.default_rng(seed), force_temp=True)
    md = Langevin(at, 2 * units.fs, temperature_K=t, friction=0.02, fixcm=False, rng=np.random.default_rng(seed + 100))
    md.run(steps)
    return md


def liquid(seed: int = 7) -> "Atoms":
    """108 Cu atoms melted with EMT (module docstring), positions only."""
    from ase import Atoms

    at = bulk("Cu", "fcc", a=A0 * 1.03, cubic=True).repeat((3, 3, 3))
    _langevin(at, 2500.0, 1000, seed)
    _langevin(at, 1500.0, 200, seed + 1)
    return Atoms(at.get_chemical_symbols(), positions=at.positions, cell=at.cell, pbc=True)


def test_frames(temperatures=(300, 600, 900, 1200, 1500), per_t: int = 10, seed: int = 1) -> list:
    starts = [(t, bulk("Cu", "fcc", a=A0 * (1 + 2e-5 * t), cubic=True).repeat((3, 3, 3))) for t in temperatures]
    starts.append((1500.0, liquid(seed + 50)))
    frames = []
    for i, (t, at) in enumerate(starts):
        md = _langevin(at, t, 300, seed + i)
        for _ in range(per_t):
            md.run(40)
            frames.append(labelled(at))
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", action="store_true", help="also write the independent test set test.extxyz")
    ap.add_argument("--test-only", action="store_true", help="write only test.extxyz")
    args = ap.parse_args()
    if not args.test_only:
        write(HERE / "init.extxyz", initial_frames())
        write(HERE / "fcc108.extxyz", bulk("Cu", "fcc", a=A0, cubic=True).repeat((3, 3, 3)))
        write(HERE / "liquid108.extxyz", liquid())
        print(f"wrote {HERE / 'init.extxyz'} (10 frames, 32 atoms), {HERE / 'fcc108.extxyz'} and "
              f"{HERE / 'liquid108.extxyz'}")
    if args.test or args.test_only:
        write(HERE / "test.extxyz", test_frames())
        print(f"wrote {HERE / 'test.extxyz'} (60 frames, 108 atoms, EMT MD: crystal at 300-1500 K, liquid at 1500 K)")


if __name__ == "__main__":
    main()
