"""ASE's VelocityVerlet with mlpot.DeepPotCalculator conserves energy for a *trained* water model.

The model is the small se_e2_a shipped in tests/data/deepmd_water_se_e2_a (trained by DeePMD-kit on the
bundled water, imported through mlpot.interop). 192 atoms, 200 steps of 0.5 fs (0.1 ps) from 300 K.
Measured on 2026-11-23 over 1,000 steps: max |E_tot(t) − E_tot(0)| = 4.0e-6 eV/atom, drift
−1.2e-6 eV/atom (bounds then: 5e-5 and, for the mean of the last 100 steps − first 100, 2e-5).
The run is now a fifth as long (it was a third of the test suite's time), so the drift bound scales
by 1/5 with the run and the windows: mean of the last 20 steps − first 20 < 4e-6 eV/atom; the
deviation bound stays 5e-5 eV/atom (the deviation does not grow with the run length). Measured
over 200 steps (2026-12-01): max deviation 2.6e-6 eV/atom, drift −2.6e-7 eV/atom.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

import mlpot
from conftest import DATA, ROOT
from mlpot.data import io
from mlpot.interop.deepmd import import_deepmd


@pytest.mark.slow
def test_velocity_verlet_conserves_energy_trained_water():
    model = import_deepmd(ROOT / "tests/data/deepmd_water_se_e2_a/model.dp", device="cpu")
    system = io.read(DATA / "water" / "data_3")[0]
    atoms = Atoms(symbols=system.symbols, positions=system.positions[0], cell=system.cells[0], pbc=True)
    atoms.calc = mlpot.DeepPotCalculator(model=model, device="cpu")
    with warnings.catch_warnings():  # ASE renames this helper across versions; same distribution
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    energies: list[float] = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dyn.run(200)
    e = np.asarray(energies) / len(atoms)  # eV/atom
    assert len(e) == 201
    assert np.all(np.isfinite(e))
    assert 150.0 < atoms.get_temperature() < 600.0  # it stayed liquid-water-like, nothing blew up
    assert np.abs(e - e[0]).max() < 5e-5
    assert abs(e[-20:].mean() - e[:20].mean()) < 4e-6

