"""mlpot's calculator against LAMMPS (DeePMD-kit's pair_style deepmd) running the same model, without LAMMPS.

tests/data/lammps_water/ holds a tiny float64 se_e2_a model (model.pt; model.dp is its `mlpot export-deepmd`
export, the file LAMMPS ran after `dp convert-backend`) and LAMMPS's step-0 energy, per-atom energies, forces and
virial of the 192-atom water box, dumped with 17 significant digits on 1 and 2 MPI ranks by
examples/lammps/run.sh (tests/data/lammps_water/README.md has the command). Measured agreement ~1e-16 relative;
the test allows 1e-10.
"""
import pathlib

import numpy as np
import pytest
from ase import Atoms

from mlpot import DeepPotCalculator

DATA = pathlib.Path(__file__).parent / "data" / "lammps_water"
TOL = 1e-10  # relative for energy and virial, eV/Å for forces and per-atom energies


def _atoms(ref) -> Atoms:
    return Atoms(symbols=[str(s) for s in ref["symbols"]], positions=ref["positions"], cell=ref["cell"], pbc=True)


def _check(calc, ref) -> None:
    atoms = _atoms(ref)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert abs(energy - float(ref["energy"])) <= TOL * abs(float(ref["energy"]))
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], rtol=0, atol=TOL)
    np.testing.assert_allclose(atoms.get_potential_energies(), ref["atom_energy"], rtol=0, atol=TOL)
    virial = atoms.calc.results["virial"]
    assert np.linalg.norm(virial - ref["virial"]) <= TOL * np.linalg.norm(ref["virial"])
    # the stress ASE reports is LAMMPS's pressure tensor from the same virial: -W / V
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    stress = np.array([-ref["virial"][i, j] for i, j in voigt]) / atoms.get_volume()
    np.testing.assert_allclose(atoms.get_stress(), stress, rtol=0, atol=TOL * np.abs(stress).max())


@pytest.mark.parametrize("nprocs", [1, 2])
def test_calculator_matches_lammps(nprocs):
    ref = np.load(DATA / f"reference_np{nprocs}.npz")
    assert int(ref["nprocs"]) == nprocs and len(ref["positions"]) == 192
    assert float(np.abs(ref["forces"]).max()) > 0.01  # a real force field, not zeros
    _check(DeepPotCalculator(str(DATA / "model.pt"), device="cpu"), ref)


def test_shipped_export_is_the_model_lammps_ran():
    """model.dp (what LAMMPS evaluated, via dp convert-backend) imported back gives LAMMPS's numbers too."""
    from mlpot.interop.deepmd import import_deepmd

    ref = np.load(DATA / "reference_np1.npz")
    _check(DeepPotCalculator(import_deepmd(DATA / "model.dp", device="cpu")), ref)


def test_one_and_two_ranks_agree():
    one, two = (np.load(DATA / f"reference_np{p}.npz") for p in (1, 2))
    np.testing.assert_array_equal(one["positions"], two["positions"])
    assert abs(float(one["energy"]) - float(two["energy"])) <= TOL * abs(float(one["energy"]))
    np.testing.assert_allclose(one["forces"], two["forces"], rtol=0, atol=TOL)
