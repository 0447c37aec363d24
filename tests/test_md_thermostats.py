"""Canonical and isobaric sampling: kinetic-energy mean and variance under Langevin (BAOAB), CSVR and
Nosé–Hoover chains against ⟨K⟩ = N_f kT/2, var K = N_f (kT)²/2 (N_f = 3N − 3); NPT (stochastic cell
rescaling) average pressure against the target. 32 LJ argon atoms, dt = 10 fs; statistical errors from
block averages, tolerance 4 standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from md_engine import (
    CSVR, NPT, Langevin, NoseHooverChain, Reporter, Simulation, State, StochasticCellRescaling,
    kinetic_energy, pressure,
)
from conftest import argon_atoms, argon_lj
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
    atoms = argon_atoms(2, a=5.8, jitter=0.15, seed=0)
    st = State.from_atoms(atoms, temperature=T, seed=1, device="cpu")
    sampler = Sampler()
    sim = Simulation(st, argon_lj(8.0, 6.5), integ, [sampler], skin=1.0)
    sim.run(equil)
    sampler.rows.clear()
    sim.run(steps)
    return np.array(sampler.rows), sim


def mean_and_error(x, blocks=10):
    b = x[: len(x) // blocks * blocks].reshape(blocks, -1).mean(1)
    return x.mean(), b.std(ddof=1) / np.sqrt(blocks)


@pytest.mark.slow
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


@pytest.mark.slow
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


def _static_energy(a: float, log_v: float = 0.0) -> tuple[float, float]:
    """Energy (eV) and tr W (eV) of the perfect 32-atom fcc crystal (lattice constant a, Å) scaled
    isotropically to volume (2a)³·e^{log_v}."""
    from mlpot.neighbors import neighbor_list

    s = math.exp(log_v / 3)
    base = torch.tensor(argon_atoms(2, a=1.0).positions)
    cell, pos = torch.eye(3, dtype=torch.float64) * 2 * a * s, base * a * s
    pbc = torch.ones(3, dtype=torch.bool)
    nl = neighbor_list(pos, cell[None], pbc[None], 8.0)
    out = argon_lj(8.0, 6.5).compute(pos, torch.zeros(32, dtype=torch.long), cell, pbc, nl)
    return float(out["energy"]), float(torch.trace(out["virial"]))


@pytest.mark.slow
def test_npt_isotropic_volume_fluctuation_matches_compressibility():
    """Isotropic stochastic cell rescaling samples the volume distribution, not only its mean: a 5 K
    (harmonic) crystal at P₀ has ⟨δV²⟩ = k_BT V κ_T, with κ_T = V/H, H = ∂²(E + P₀V)/∂(ln V)² from
    central finite differences of static energies (lattice constant at P₀ by bisection). Tolerance
    4 standard errors + 10 % (thermal softening and the Euler–Maruyama discretisation, ≈ 3 % here)."""
    from mlpot.units import BAR_TO_EV_PER_A3

    p0, temp = 300.0, 5.0
    p0_ev = p0 * BAR_TO_EV_PER_A3
    lo, hi = 4.9, 5.8
    for _ in range(45):  # static pressure tr W/(3V) = P₀
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _static_energy(mid)[1] / (3 * (2 * mid) ** 3) > p0_ev else (lo, mid)
    a = 0.5 * (lo + hi)
    vol, h = (2 * a) ** 3, 2e-3

    def g(x):
        return _static_energy(a, x)[0] + p0_ev * vol * math.exp(x)

    hess = (g(h) - 2 * g(0.0) + g(-h)) / (h * h)  # eV
    kappa = vol / hess  # Å³/eV: κ_T = −(1/V) dV/dP
    pred = KB_EV_PER_K * temp * vol * kappa  # ⟨δV²⟩, Å⁶

    atoms = argon_atoms(2, a=a)
    st = State.from_atoms(atoms, temperature=temp, seed=3, device="cpu")
    baro = StochasticCellRescaling(p0, tau=1000.0, compressibility=2e-4)
    sampler = Sampler()
    sim = Simulation(st, argon_lj(8.0, 6.5), NPT(CSVR(10.0, temp, tau=50.0, seed=2), baro),
                     [sampler], skin=1.0)
    sim.run(300)
    sampler.rows.clear()
    sim.run(4000)
    v = np.array(sampler.rows)[:, 2]
    m, dm = mean_and_error((v - v.mean()) ** 2)
    assert abs(m / pred - 1) < 4 * dm / pred + 0.10 and dm < 0.15 * pred, (m, dm, pred)
    p, dp = mean_and_error(np.array(sampler.rows)[:, 1])
    assert abs(p - p0) < 4 * dp, (p, dp)
