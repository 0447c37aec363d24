"""mlpot.DeepPotCalculator: outputs equal the model's, stress = strain derivative, NVE energy
conservation, cell relaxation, any pbc, ensembles, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError

from conftest import small_water_atoms, water_model_kw
from mlpot import testing
from mlpot.errors import ModelError


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model(**water_model_kw())


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    from mlpot.export import save_model

    return save_model(model, tmp_path_factory.mktemp("calc") / "model.pt")


def _direct(model, atoms):
    """The model's own outputs through mlpot.model.evaluate (no calculator code involved)."""
    from mlpot.model import evaluate

    types = torch.tensor([model.type_map.index(s) for s in atoms.get_chemical_symbols()])
    res = evaluate(
        model,
        torch.tensor(atoms.get_positions()),
        types,
        torch.tensor(atoms.get_cell()[:]).reshape(1, 3, 3),
        torch.tensor(atoms.get_pbc()[None]),
    )
    return {k: v.detach().numpy() for k, v in res.items()}


def test_outputs_equal_model_outputs(model_file, model):
    from mlpot import DeepPotCalculator

    atoms = small_water_atoms(2, triclinic=True)
    atoms.calc = DeepPotCalculator(model_file, device="cpu")
    ref = _direct(model, atoms)
    e = atoms.get_potential_energy()
    assert e == pytest.approx(float(ref["energy"][0]), abs=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(e, abs=0)
    np.testing.assert_allclose(atoms.get_potential_energies(), ref["atom_energy"], atol=1e-12)
    assert atoms.get_potential_energies().sum() == pytest.approx(e, abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-12)
    virial = ref["virial"][0]
    stress_3x3 = -0.5 * (virial + virial.T) / atoms.get_volume()  # stress = −virial/V (DeePMD convention)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), stress_3x3, atol=1e-14)
    np.testing.assert_allclose(atoms.calc.results["virial"], virial, atol=1e-12)


def _fd_stress(atoms, h=1e-5):
    """Stress (Voigt, eV/Å³) as (1/V) ∂E/∂ε by central differences of symmetric strains."""
    w = testing.fd_virial(testing.atoms_energy_fn(atoms), atoms.get_positions(), atoms.get_cell()[:], testing.VOIGT,
                          h=h, order=2, symmetric=True)
    return -w / atoms.get_volume()


def _fd_forces(atoms, idx, h=1e-5):
    """−∂E/∂r for the atoms ``idx`` by central differences."""
    comps = [(i, k) for i in idx for k in range(3)]
    return testing.fd_forces(testing.atoms_energy_fn(atoms), atoms.get_positions(), atoms.get_cell()[:], comps,
                             h=h, order=2).reshape(len(idx), 3)


def test_forces_and_stress_match_finite_differences(model):
    from mlpot import DeepPotCalculator

    atoms = small_water_atoms(2, triclinic=True, seed=3)
    atoms.calc = DeepPotCalculator(model)
    stress = atoms.get_stress()
    forces = atoms.get_forces()
    num_stress = _fd_stress(atoms)
    np.testing.assert_allclose(stress, num_stress, atol=1e-8, rtol=1e-5)
    assert np.abs(stress).max() > 1e-4  # a real, non-trivial check
    # ASE's own strain derivative agrees too (off-diagonal convention included)
    from ase.calculators.fd import calculate_numerical_stress

    np.testing.assert_allclose(calculate_numerical_stress(atoms, eps=1e-5), num_stress, atol=1e-8, rtol=1e-5)
    idx = [0, 1, 5]
    np.testing.assert_allclose(forces[idx], _fd_forces(atoms, idx), atol=1e-7)


def test_nonperiodic_and_mixed_pbc(model):
    from mlpot import DeepPotCalculator

    calc = DeepPotCalculator(model)
    periodic = small_water_atoms(2, seed=5)
    mol = periodic[:9].copy()  # three water molecules, no cell at all
    mol.set_pbc(False)
    mol.set_cell(np.zeros((3, 3)))
    mol.calc = calc
    ref = _direct(model, mol)
    np.testing.assert_allclose(mol.get_forces(), ref["forces"], atol=1e-12)
    assert mol.get_potential_energy() == pytest.approx(float(ref["energy"][0]), abs=1e-12)
    # far from any image: translation invariance, total force zero
    np.testing.assert_allclose(mol.get_forces().sum(0), 0.0, atol=1e-10)
    with pytest.raises(PropertyNotImplementedError, match="periodic in all 3 directions"):
        mol.get_stress()
    # a slab: periodic in x, y only
    slab = periodic.copy()
    slab.set_pbc([True, True, False])
    slab.calc = calc
    ref = _direct(model, slab)
    np.testing.assert_allclose(slab.get_forces(), ref["forces"], atol=1e-12)
    np.testing.assert_allclose(slab.get_forces()[[0, 2]], _fd_forces(slab, [0, 2]), atol=1e-7)
    with pytest.raises(PropertyNotImplementedError):
        slab.get_stress()
    # the slab differs from the 3-D periodic system (the z images are gone)
    periodic.calc = calc
    assert abs(periodic.get_potential_energy() - slab.get_potential_energy()) > 1e-8


def test_caching_between_calls(model):
    """One calculator reused across moves, element changes and pbc changes gives what a fresh
    calculator gives each time (the cached type tensor follows the elements and pbc)."""
    from mlpot import DeepPotCalculator

    calc = DeepPotCalculator(model)
    atoms = small_water_atoms(2)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.positions[0] += 0.05
    e1 = atoms.get_potential_energy()
    assert e1 != e0
    assert e1 == pytest.approx(float(_direct(model, atoms)["energy"][0]), abs=1e-12)
    atoms.positions[0] -= 0.05
    assert atoms.get_potential_energy() == pytest.approx(e0, abs=1e-12)
    # same atom count, other elements: swap an O and an H
    symbols = atoms.get_chemical_symbols()
    i_o, i_h = symbols.index("O"), symbols.index("H")
    symbols[i_o], symbols[i_h] = "H", "O"
    atoms.set_chemical_symbols(symbols)
    e_swapped = atoms.get_potential_energy()
    assert e_swapped != pytest.approx(e0, abs=1e-6)
    assert e_swapped == pytest.approx(float(_direct(model, atoms)["energy"][0]), abs=1e-12)
    # same elements, other pbc: a slab
    atoms.pbc = [True, True, False]
    e_slab = atoms.get_potential_energy()
    assert e_slab == pytest.approx(float(_direct(model, atoms)["energy"][0]), abs=1e-12)
    assert e_slab != pytest.approx(e_swapped, abs=1e-8)


def test_ensemble_mean_and_model_deviation(tiny_model, model):
    from mlpot import DeepPotCalculator
    from mlpot.calculator import EnsembleCalculator

    models = [model, tiny_model(**water_model_kw(seed=2)), tiny_model(**water_model_kw(seed=3))]
    atoms = small_water_atoms(2, seed=7)
    atoms.calc = DeepPotCalculator(models)
    assert isinstance(atoms.calc, EnsembleCalculator)  # the list shortcut gives the ensemble calculator
    refs = [_direct(m, atoms) for m in models]
    assert atoms.get_potential_energy() == pytest.approx(np.mean([float(r["energy"][0]) for r in refs]), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), np.mean([r["forces"] for r in refs], axis=0), atol=1e-12)
    res = atoms.calc.results
    # hand computation: per-atom sqrt of the mean squared distance from the ensemble-mean force
    f = np.array([r["forces"] for r in refs])
    n = len(atoms)
    devi = []
    for i in range(n):
        mean = sum(f[m, i] for m in range(3)) / 3
        devi.append(np.sqrt(sum(float(np.dot(f[m, i] - mean, f[m, i] - mean)) for m in range(3)) / 3))
    assert res["model_devi_f_max"] == pytest.approx(max(devi), rel=1e-10)
    assert res["model_devi_f_min"] == pytest.approx(min(devi), rel=1e-10)
    assert res["model_devi_f_avg"] == pytest.approx(sum(devi) / n, rel=1e-10)
    e = [float(r["energy"][0]) / n for r in refs]
    em = sum(e) / 3
    assert res["model_devi_e"] == pytest.approx(np.sqrt(sum((x - em) ** 2 for x in e) / 3), rel=1e-10)
    assert res["model_devi_f_max"] > 0
    direct = EnsembleCalculator(models)
    atoms.calc = direct
    assert atoms.get_potential_energy() == pytest.approx(np.mean([float(r["energy"][0]) for r in refs]), abs=1e-12)
    assert direct.results["model_devi_f_max"] == pytest.approx(max(devi), rel=1e-10)


def _nve_energy_error(model, dt_fs, n_steps):
    from ase import units
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from mlpot import DeepPotCalculator

    atoms = small_water_atoms(2, seed=11)
    atoms.calc = DeepPotCalculator(model)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    etot = []
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    dyn.attach(lambda: etot.append(atoms.get_total_energy()), interval=1)
    dyn.run(n_steps)
    etot = np.array(etot)
    assert len(etot) == n_steps + 1
    return np.abs(etot - etot[0]).max() / len(atoms)


def test_velocity_verlet_conserves_energy(model):
    """NVE with ASE's VelocityVerlet, 24-atom water cell, 300 K, 0.5 fs, 20 steps (10 fs).

    The model is random-init (descriptor statistics and energy bias from DFT water), not trained: it
    has no O–H repulsion, so after ~15 fs it starts pulling H onto O and the trajectory stops being
    meaningful; the run stays inside the regular part. Asserted: max |E_tot(t) − E_tot(0)| < 1e-4
    eV/atom (measured ≈ 2e-5), and halving the time step cuts that error by > 3× (Verlet's O(dt²):
    measured 4.0×), which an inconsistent force/energy pair or a discontinuous potential would not do.
    """
    err = _nve_energy_error(model, 0.5, 20)
    err_half = _nve_energy_error(model, 0.25, 40)
    assert err < 1e-4, err
    assert err_half < err / 3, (err, err_half)


def test_fire_with_frechet_cell_filter(model):
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    from mlpot import DeepPotCalculator

    atoms = small_water_atoms(2, seed=13, triclinic=True)
    atoms.calc = DeepPotCalculator(model)
    filt = FrechetCellFilter(atoms)
    e0, v0, cell0 = atoms.get_potential_energy(), atoms.get_volume(), atoms.get_cell()[:].copy()
    energies = []
    opt = FIRE(filt, logfile=None)
    opt.attach(lambda: energies.append(atoms.get_potential_energy()))
    opt.run(fmax=1e-6, steps=8)
    assert len(energies) >= 8
    assert atoms.get_potential_energy() < e0 - 1e-3  # the optimizer went downhill
    assert not np.allclose(atoms.get_cell()[:], cell0)  # the stress moved the cell
    assert atoms.get_volume() != pytest.approx(v0, rel=1e-6)
    assert np.isfinite(atoms.get_stress()).all() and np.isfinite(atoms.get_forces()).all()


def test_clear_errors(tiny_model, model, tmp_path):
    from mlpot import DeepPotCalculator

    calc = DeepPotCalculator(model)
    fe = Atoms("FeO", positions=[[0, 0, 0], [0, 0, 2.0]])
    fe.calc = calc
    with pytest.raises(ModelError, match=r"\['Fe'\] not in the model's type_map \['O', 'H'\]"):
        fe.get_potential_energy()
    empty = Atoms()
    empty.calc = calc
    with pytest.raises(ModelError, match="empty"):
        empty.get_potential_energy()
    with pytest.raises(ModelError, match="no_such_model.pt': no such file"):
        DeepPotCalculator(tmp_path / "no_such_model.pt")
    with pytest.raises(ModelError, match="type_map"):
        DeepPotCalculator([model, tiny_model(**water_model_kw(type_map=("H", "O")))])
    with pytest.raises(TypeError):
        DeepPotCalculator()  # the model is required: no default file in the working directory
    bad = Atoms("OH", positions=[[0, 0, 0], [0, 0, 1.0]], pbc=True)  # periodic but no cell
    bad.calc = calc
    with pytest.raises(ModelError, match="zero lattice vector"):
        bad.get_potential_energy()
