"""Short ASE Langevin MD of the bundled 192-atom water box with a trained mlpot model.

Usage: python examples/ase_md_water.py --model demo_out/model.pt [--steps 100] [--temperature 300]

Prints temperature (K) and potential/total energy (eV) every 10 steps. Units: fs, K, eV.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

import mlpot
from mlpot.data import io

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "demo_out" / "model.pt"), help="frozen mlpot model file")
    parser.add_argument("--steps", type=int, default=100, help="MD steps of 0.5 fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    args = parser.parse_args()

    system = io.read(ROOT / "data" / "water" / "data_3")[0]
    atoms = system_to_atoms(system, frame=0)
    atoms.calc = mlpot.DeepPotCalculator(model=args.model, device=args.device)
    with warnings.catch_warnings():  # the helper's name changes across ASE versions; its result does not
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=args.temperature, friction=0.01 / units.fs,
                   fixcm=False, rng=np.random.default_rng(1))

    def report() -> None:
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        print(f"step {dyn.nsteps:5d}  T = {atoms.get_temperature():7.1f} K  "
              f"E_pot = {epot:12.4f} eV  E_tot = {epot + ekin:12.4f} eV")

    dyn.attach(report, interval=10)
    start = time.perf_counter()
    dyn.run(args.steps)
    elapsed = time.perf_counter() - start
    print(f"{args.steps} steps of {len(atoms)} atoms in {elapsed:.1f} s "
          f"({1e6 * elapsed / (args.steps * len(atoms)):.1f} µs/atom-step)")


def system_to_atoms(system, frame: int = 0):
    """One frame of a :class:`mlpot.data.LabeledFrames` as an ASE ``Atoms`` (Å)."""
    from ase import Atoms

    return Atoms(symbols=system.symbols, positions=system.positions[frame], cell=system.cells[frame],
                 pbc=system.pbc)


if __name__ == "__main__":
    main()
