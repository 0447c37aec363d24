"""Canonical and isobaric sampling: kinetic-energy mean and variance under Langevin (BAOAB), CSVR and
Nosé–Hoover chains against ⟨K⟩ = N_f kT/2, var K = N_f (kT)²/2 (N_f = 3N − 3); NPT (stochastic cell
rescaling) average pressure against the target. 32 LJ argon atoms, dt = 10 fs; statistical errors from
block averages, tolerance 4 standard errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from md_engine import (
    CSVR, NPT, Langevin, LennardJones, NoseHooverChain, Reporter, Simulation, State, StochasticCellRescaling,
    kinetic_energy, pressure,
)
from mlpot.units import EV_PER_A3_TO_BAR, KB_EV_PER_K

T = 120.0


class Sampler(Reporter):
    """Kinetic energy, pressure, volume and conserved quantity every step (no files)."""

    def __init__(self):
        self.interval = 1
        self.rows: list[tuple[float, float, float, float]] = []

    def report(self, sim):
        st = sim.state
        ke = kinetic_energy(st)
        self.rows.append((float(ke), float(pressure(st)) * EV_PER_A3_TO_BAR, float(st.volume),
                          float(st.energy) + float(ke) + sim.integrator.conserved_extra(st)))


def run(integ, steps=3000, equil=300):
    atoms = bulk("Ar", "fcc", a=5.8, cubic=True).repeat((2, 2, 2))
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.15, atoms.positions.shape)
    st = State.from_atoms(atoms, temperature=T, seed=1, device="cpu")
    sampler = Sampler()
    sim = Simulation(st, LennardJones(0.0104, 3.4, 8.0, smooth=True, ro=6.5), integ, [sampler], skin=1.0)
    sim.run(equil)
    sampler.rows.clear()
    sim.run(steps)
    return np.array(sampler.rows), sim


def mean_and_error(x, blocks=10):
    b = x[: len(x) // blocks * blocks].reshape(blocks, -1).mean(1)
    return x.mean(), b.std(ddof=1) / np.sqrt(blocks)


@pytest.mark.parametrize("name", ["langevin", "csvr", "nhc"])
def test_nvt_kinetic_energy_distribution(name):
    integ = {"langevin": lambda: Langevin(10.0, T, tau=25.0, seed=1),
             "csvr": lambda: CSVR(10.0, T, tau=25.0, seed=1),
             "nhc": lambda: NoseHooverChain(10.0, T, tau=50.0)}[name]()
    rows, sim = run(integ, steps=4000)
    nf, kt = 3 * 32 - 3, KB_EV_PER_K * T
    ke = rows[:, 0]
    m, dm = mean_and_error(ke / (0.5 * nf * kt))
    v, dv = mean_and_error((ke - ke.mean()) ** 2 / (0.5 * nf * kt * kt))
    assert abs(m - 1) < 4 * dm and dm < 0.012, (m, dm)
    assert abs(v - 1) < 4 * dv and dv < 0.1, (v, dv)
    # the conserved quantity (NHC) / effective energy (stochastic) only shows the integration error
    cons = rows[:, 3]
    assert np.ptp(cons) < 0.02 * 0.5 * nf * kt, np.ptp(cons)


def test_npt_stochastic_cell_rescaling_pressure():
    p0 = 300.0
    baro = StochasticCellRescaling(p0, tau=1000.0, compressibility=2e-4)
    rows, sim = run(NPT(CSVR(10.0, T, tau=50.0, seed=5), baro), steps=4000)
    p, dp = mean_and_error(rows[:, 1])
    assert abs(p - p0) < 4 * dp and dp < 60.0, (p, dp)
    vol = rows[:, 2]
    assert vol.std() > 0.01 * vol.mean()  # the volume fluctuates (≈ 7 % here)
    nf, kt = 93, KB_EV_PER_K * T
    m, dm = mean_and_error(rows[:, 0] / (0.5 * nf * kt))
    assert abs(m - 1) < 4 * dm
    assert np.ptp(rows[:, 3]) < 0.05 * 0.5 * nf * kt  # effective energy: no drift from the barostat bookkeeping
