"""Equation of state of a water box with a frozen mlpot model through ASE (``mlpot.DeepPotCalculator``).

    python examples/ase_eos.py [--model demo_out/model.pt] [--system data/water/data_0] [--out demo_out/eos.png]

Takes the first frame of a DeePMD system (default: the bundled 192-atom DFT water box), scales the cell
isotropically over ±STRAIN in linear size, moving each water molecule rigidly with its oxygen (so the
O–H bonds are not stretched; ``--affine`` scales all positions instead), computes the energy at each
volume, fits a Birch–Murnaghan equation of state (``ase.eos``), prints V0, E0 and the bulk modulus,
and writes the E(V) plot. Runs in a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def water_molecules(atoms) -> np.ndarray:
    """For each atom, the index of the oxygen it belongs to (H → its nearest O under the minimum image)."""
    symbols = np.array(atoms.get_chemical_symbols())
    o_idx = np.nonzero(symbols == "O")[0]
    if len(o_idx) == 0:
        return np.arange(len(atoms))
    d = atoms.get_all_distances(mic=True)[:, o_idx]
    owner = o_idx[np.argmin(d, axis=1)]
    owner[o_idx] = o_idx
    return owner


def scaled(atoms, factor: float, owner: np.ndarray | None):
    """A copy with the cell scaled by ``factor`` (linear); molecules moved rigidly with their owner atom."""
    new = atoms.copy()
    if owner is None:
        new.set_cell(atoms.cell[:] * factor, scale_atoms=True)
        return new
    pos = atoms.get_positions()
    # intramolecular vectors under the minimum image, kept fixed
    from ase.geometry import find_mic

    rel, _ = find_mic(pos - pos[owner], atoms.cell, atoms.pbc)
    new.set_cell(atoms.cell[:] * factor, scale_atoms=False)
    new.set_positions(pos[owner] * factor + rel)
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo_out/model.pt", help="frozen model (mlpot freeze)")
    parser.add_argument("--system", default="data/water/data_0", help="DeePMD system or any file mlpot reads")
    parser.add_argument("--frame", type=int, default=0, help="which frame of the system")
    parser.add_argument("--out", default=None, help="plot file (default: next to the model, eos.png)")
    parser.add_argument("--points", type=int, default=7, help="number of volumes")
    parser.add_argument("--strain", type=float, default=0.04, help="max linear strain (±)")
    parser.add_argument("--affine", action="store_true", help="scale all positions (not rigid molecules)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase import Atoms, units
    from ase.eos import EquationOfState

    from mlpot import DeepPotCalculator, MlpotError
    from mlpot.data import io

    try:
        calc = DeepPotCalculator(args.model, device=args.device)
        system = io.read(args.system)[0]
    except MlpotError as exc:
        print(f"ase_eos.py: error: {exc}", file=sys.stderr)
        return 2
    k = args.frame
    atoms = Atoms(symbols=system.symbols, positions=system.positions[k], cell=system.cells[k], pbc=system.pbc)
    if not atoms.pbc.all():
        print("ase_eos.py: error: an equation of state needs a 3-D periodic cell", file=sys.stderr)
        return 2
    owner = None if args.affine else water_molecules(atoms)
    t0 = time.time()
    volumes, energies, pressures = [], [], []
    for f in np.linspace(1 - args.strain, 1 + args.strain, args.points):
        a = scaled(atoms, float(f), owner)
        a.calc = calc
        volumes.append(a.get_volume())
        energies.append(a.get_potential_energy())
        pressures.append(-np.trace(a.get_stress(voigt=False)) / 3 / units.GPa)
        print(f"V = {volumes[-1]:9.3f} Å³   E = {energies[-1]:14.6f} eV   P = {pressures[-1]:8.3f} GPa")
    eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
    out = Path(args.out) if args.out else Path(args.model).with_name("eos.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4))
    try:
        v0, e0, b = eos.fit()
        eos.plot(ax=ax, show=False)
        print(f"Birch–Murnaghan fit: V0 = {v0:.3f} Å³, E0 = {e0:.6f} eV, B = {b / units.GPa:.2f} GPa")
    except Exception as exc:  # noqa: BLE001 - a model without a minimum in this range
        ax.plot(volumes, energies, "o-")
        ax.set_xlabel("volume (Å³)")
        ax.set_ylabel("energy (eV)")
        print(f"no equation-of-state fit in this volume range ({exc}); plotting E(V) only")
    ax.set_title(f"{len(atoms)} atoms, {Path(args.model).name}")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"{args.points} volumes in {time.time() - t0:.1f} s; plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
