"""Free-energy methods of md_engine against exact references (no fitted tolerances).

Each switching test bounds its error by what the run itself measures: the forward/backward estimate
ΔF = (W_f − W_b)/2 lies within the dissipation E_d = (W_f + W_b)/2 of the true ΔF (W_f ≥ ΔF and
W_b ≥ −ΔF on average, the second law), plus 3 standard errors over the cycles. Every exact value is
computed independently of the code under test (normal modes, Gaussian integrals, the published UF
table). Small systems and short runs, 1 CPU thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlpot.units import BAR_TO_EV_PER_A3, FORCE_TO_ACC, KB_EV_PER_K

from md_engine import State
from md_engine.free_energy import references as ref
from md_engine.free_energy.protocols import (einstein_to_einstein, frenkel_ladd, reversible_scaling,
                                             switching_cycles, _sim)
from md_engine.free_energy.switching import lambda_polynomial, lambda_polynomial_slope
from md_engine.potentials import LennardJones
from md_engine.potentials.coupled import CoupledPotential, switch_slope, switch_value
from md_engine.potentials.einstein import EinsteinCrystal, minimum_image
from md_engine.potentials.uf import UhlenbeckFord

T300 = 300.0


# ------------------------------------------------------------------------------ exact small pieces
def test_switching_polynomial() -> None:
    tau = np.linspace(0, 1, 1001)
    lam = lambda_polynomial(tau)
    assert lam[0] == 0 and abs(lam[-1] - 1) < 1e-12
    # slope by the closed form vs central differences; symmetric protocol f(1 − τ) = 1 − f(τ)
    fd = np.gradient(lam, tau)
    assert np.max(np.abs(fd[2:-2] - lambda_polynomial_slope(tau)[2:-2])) < 1e-4
    assert np.max(np.abs(lambda_polynomial(1 - tau) - (1 - lam))) < 1e-12
    assert lambda_polynomial_slope(0.0) == 0 and lambda_polynomial_slope(1.0) == 0
    assert abs(switch_value(0.3, "polynomial") - lambda_polynomial(0.3)) < 1e-15
    assert abs(switch_slope(0.3, "polynomial") - lambda_polynomial_slope(0.3)) < 1e-12


def test_ideal_gas_and_uf_table() -> None:
    # Cu, 1000 K, ρ = 0.08 Å⁻³: F_ig/N = −0.99406 eV in the Stirling limit (PHASE_DIAGRAMS.md §3)
    n = 10**6
    f = ref.ideal_gas_free_energy([n], [63.546], 1000.0, n / 0.08) / n
    stirling = KB_EV_PER_K * 1000.0 * math.log(2 * math.pi * n) / (2 * n)
    assert abs(f - stirling - (-0.99406)) < 5e-6
    # the table values as published (Paula Leite et al. 2016) and the p = 1 low-density limit f/x → 1
    assert ref.uf_excess_free_energy(50, 1.0) == 32.20278
    assert ref.uf_excess_free_energy(100, 3.9) == 404.77413
    assert abs(ref.uf_second_virial(1.0) / ref.uf_b(1.0) - 1.0) < 1e-6
    with pytest.raises(ValueError):
        ref.uf_excess_free_energy(40, 1.0)


def test_lj_tail_correction() -> None:
    """E_tail and P_tail against direct quadrature of ∫ r²φ and ∫ r³φ′ beyond r_c (one species)."""
    eps, sig, rc = 0.0104, 3.4, 8.5
    at = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(3)
    st = State.from_atoms(at)
    from mlpot.neighbors import neighbor_list

    nl = neighbor_list(st.positions, st.cell, st.pbc, rc)
    base = LennardJones(eps, sig, rc, shift=True).compute(st.positions, st.types, st.cell, st.pbc, nl)
    tail = LennardJones(eps, sig, rc, shift=True, tail=True).compute(st.positions, st.types, st.cell, st.pbc, nl)
    n, v = len(at), float(st.volume)
    r = np.linspace(rc, 400 * sig, 2_000_001)
    phi = 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)
    dphi = 4 * eps * (-12 * sig**12 / r**13 + 6 * sig**6 / r**7)
    e_q = 2 * math.pi * n * n / v * np.trapezoid(r**2 * phi, r)
    p_q = -2 * math.pi * n * n / (3 * v * v) * np.trapezoid(r**3 * dphi, r)
    assert abs(float(tail["energy"] - base["energy"]) - e_q) < 1e-6 * abs(e_q)
    dp = float(torch.trace(tail["virial"] - base["virial"])) / (3 * v)
    assert abs(dp - p_q) < 1e-6 * abs(p_q)
    assert torch.equal(tail["forces"], base["forces"])


# ----------------------------------------------------------------------------- Einstein → Einstein
def _lattice(n_rep: int = 2, symbol: str = "He", temperature: float = T300, seed: int = 1) -> State:
    return State.from_atoms(bulk(symbol, "fcc", a=3.6, cubic=True).repeat(n_rep), temperature=temperature, seed=seed)


def test_einstein_to_einstein_and_dissipation_vanishes() -> None:
    """k₁ → k₂ = 2k₁: ΔF = (3/2)k_BT ln(k₂/k₁) per free atom; with the COM fixed (the switching
    dynamics) exactly (3/2)k_BT (N − 1) ln 2 in total. Dissipation falls as t_s grows (∝ 1/t_s in
    linear response). Langevin τ = 10 fs ≈ 1/(2ω): near-critical damping, the fastest relaxation."""
    st = _lattice(3)
    n = st.n_atoms
    exact = 1.5 * KB_EV_PER_K * T300 * (n - 1) * math.log(2.0)
    short = einstein_to_einstein(st, 1.0, 2.0, T300, n_eq=50, n_switch=100, n_cycles=2, dt=1.0, tau=10.0)
    long = einstein_to_einstein(st, 1.0, 2.0, T300, n_eq=100, n_switch=600, n_cycles=3, dt=1.0, tau=10.0, seed=3)
    assert long["dissipation"] < 0.5 * short["dissipation"]
    assert long["dissipation"] > 0  # second law, on average (3 cycles)
    tol = long["dissipation"] + 3 * long["delta_F_sem"]
    assert abs(long["delta_F"] - exact) < tol, (long, exact, tol)
    assert tol / n < 2e-3  # eV/atom: the check is not vacuous (7 % of ΔF/N = 27 meV)


# ------------------------------------------------------------------------- harmonic lattice (exact)
class HarmonicLattice:
    """U = (K/2) Σ_bonds |u_i − u_j|², u the displacement from the ideal fcc site (nearest-neighbour
    bonds of the ideal lattice): translation invariant and exactly harmonic; H = K (L ⊗ 𝟙₃) with L
    the bond graph's Laplacian."""

    cutoff = 0.0

    def __init__(self, state: State, spring: float) -> None:
        from mlpot.neighbors import neighbor_list, pair_vectors

        self.sites = state.positions.clone()
        nl = neighbor_list(state.positions, state.cell, state.pbc, 2.7)
        d = pair_vectors(state.positions, state.cell, None, nl).norm(dim=1)
        keep = (d < 2.6) & (nl.centers < nl.neighbors)
        self.i, self.j = nl.centers[keep], nl.neighbors[keep]
        self.K = float(spring)
        n = state.n_atoms
        lap = np.zeros((n, n))
        for a, b in zip(self.i.tolist(), self.j.tolist()):
            lap[a, a] += 1
            lap[b, b] += 1
            lap[a, b] -= 1
            lap[b, a] -= 1
        self.hessian = self.K * np.kron(lap, np.eye(3))

    def compute(self, positions, atom_types, cell, pbc, nl, n_local=None, outputs=frozenset()):
        u = minimum_image(positions - self.sites, cell, pbc)
        du = u[self.i] - u[self.j]
        g = self.K * du
        f = torch.zeros_like(positions)
        f.index_add_(0, self.i, -g)
        f.index_add_(0, self.j, g)
        return {"energy": 0.5 * self.K * (du * du).sum(), "forces": f, "virial": torch.zeros(3, 3, dtype=positions.dtype)}

    def exact_free_energy(self, state: State, temperature: float) -> float:
        m = state.masses.double().numpy()
        w = ref.normal_mode_frequencies(self.hessian, m)
        return ref.harmonic_lattice_free_energy(w, float(m.sum()), state.n_atoms, temperature, float(state.volume))

    def einstein_k(self, state: State, temperature: float) -> float:
        """3k_BT/⟨|u|²⟩ (eV/Å²), ⟨|u|²⟩ per atom from the exact modes (COM fixed)."""
        m = float(state.masses[0])
        w = ref.normal_mode_frequencies(self.hessian, state.masses.double().numpy())
        msd = KB_EV_PER_K * temperature * FORCE_TO_ACC / m * float(np.sum(1 / w**2)) / state.n_atoms
        return 3 * KB_EV_PER_K * temperature / msd


def test_frenkel_ladd_harmonic_lattice_pins_ln_n() -> None:
    """FL (Einstein reference + fixed-COM correction with +k_BT ln N) reproduces the exact normal-mode
    free energy of a periodic harmonic lattice; dropping k_BT ln N/N (calphy 2.3.0) would fail."""
    st = _lattice(2)
    pot = HarmonicLattice(st, spring=0.5)
    k = pot.einstein_k(st, T300)
    r = frenkel_ladd(st, pot, T300, [k], n_eq=100, n_switch=600, n_cycles=2, dt=1.0, tau=20.0,
                     check_structure=False)
    n = st.n_atoms
    exact = pot.exact_free_energy(st, T300) / n
    tol = r["dissipation_per_atom"] + 3 * r["F_sem_per_atom"]
    ln_n_term = KB_EV_PER_K * T300 * math.log(n) / n
    assert abs(r["F_per_atom"] - exact) < tol, (r["F_per_atom"], exact, tol)
    assert tol < 0.5 * ln_n_term  # the run resolves the ln N/N term


def test_reversible_scaling_harmonic_lattice() -> None:
    """RS (NVT) from the exact F(T₀) reproduces the exact F(T) = normal-mode formula up to 2T₀."""
    st = _lattice(2)
    pot = HarmonicLattice(st, spring=0.5)
    n = st.n_atoms
    f0 = pot.exact_free_energy(st, T300) / n
    r = reversible_scaling(st, pot, T300, 2 * T300, n_eq=100, n_sweep=1000, g0_per_atom=f0, pressure_bar=None,
                           n_cycles=2, dt=1.0, tau=20.0, n_grid=5)
    for t, g, s, e in zip(r["T"], r["G_per_atom"], r["G_sem_per_atom"], r["dissipation_per_atom"]):
        exact = pot.exact_free_energy(st, t) / n
        assert abs(g - exact) < abs(e) + 3 * s + 1e-5, (t, g, exact, e, s)
    assert r["max_dissipation_per_atom"] < 2e-3


# -------------------------------------------------------------------------------- Uhlenbeck–Ford
def test_uf_from_ideal_gas_matches_table() -> None:
    """Switching the Uhlenbeck–Ford interaction (p = 1) on from the ideal gas at x = bρ = 1 returns
    the published f(1; 1) = 1.09276 k_BT per atom within the run's dissipation + 3 SEM. (A 2400-step
    version of this run gave 1.1015 ± 0.031 k_BT; p = 50, f = 32.20278, needs ~10× longer switching to
    be sharp: 33.17 ± 0.11 k_BT with 2.8 k_BT dissipation at 600 steps, 108 atoms.)"""
    sigma = 1.6
    rho = 1.0 / ref.uf_b(sigma)  # x = 1
    vol = 32 / rho
    at = bulk("Ar", "fcc", a=(vol / 8) ** (1 / 3), cubic=True).repeat(2)
    st = State.from_atoms(at, temperature=T300, seed=5)
    cp = CoupledPotential(None, UhlenbeckFord(1.0, sigma, T300), switch="polynomial")  # A = ideal gas, B = UF
    sim, integ = _sim(st, cp, T300, dt=2.0, tau=100.0, seed=2, min_distance=0.0)
    r = switching_cycles(sim, integ, n_eq=100, n_switch=600, n_cycles=3)
    n = st.n_atoms
    kt = KB_EV_PER_K * T300
    got = r["delta_F"] / (n * kt)
    tol = (abs(r["dissipation"]) + 3 * r["delta_F_sem"]) / (n * kt)
    assert abs(got - ref.uf_excess_free_energy(1, 1.0)) < tol, (got, tol)
    assert tol < 0.5  # k_BT per atom: a third of f itself


def test_ase_potential_matches_the_calculator() -> None:
    """The ASE wrapper returns the calculator's energy, forces and virial (−stress·V) in md_engine's
    convention, and runs MD (EMT Cu)."""
    from ase.calculators.emt import EMT

    from md_engine.integrators import Langevin
    from md_engine.potentials.ase_calc import ASEPotential
    from md_engine.simulation import Simulation
    from mlpot.neighbors import neighbor_list

    at = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    at.rattle(0.05, seed=1)
    st = State.from_atoms(at, temperature=300.0)
    pot = ASEPotential(EMT(), ["Cu"])
    out = pot.compute(st.positions, st.types, st.cell, st.pbc, neighbor_list(st.positions, st.cell, st.pbc, 4.0))
    ref_at = at.copy()
    ref_at.calc = EMT()
    assert abs(float(out["energy"]) - ref_at.get_potential_energy()) < 1e-10
    assert np.allclose(out["forces"].numpy(), ref_at.get_forces(), atol=1e-10)
    assert np.allclose(out["virial"].numpy(), -ref_at.get_stress(voigt=False) * ref_at.get_volume(), atol=1e-9)
    sim = Simulation(st, pot, Langevin(2.0, 300.0, tau=100.0), skin=1.0)
    sim.run(10)
    assert math.isfinite(float(sim.state.energy))


def _npt_frenkel_ladd(ideal: State, lj: LennardJones, t: float, p: float, eq_steps: int, fl_steps: int,
                      seed: int) -> tuple[dict, State]:
    """An independent FL free energy at (t K, p bar): NPT equilibration, lattice sites scaled to the
    mean cell, spring constants from the MSD, then Frenkel–Ladd (dt 8 fs, τ 200 fs). Returns (FL
    result, sites)."""
    from md_engine.free_energy.protocols import equilibrate_npt, scale_to_cell, spring_constants

    kw = dict(dt=8.0, tau=200.0)
    eq = equilibrate_npt(ideal, lj, t, p, eq_steps, seed=seed, **kw, tau_p=2000.0, compressibility=5e-4)
    sites = scale_to_cell(ideal, torch.tensor(eq["cell"]))
    k = spring_constants(sites, lj, t, 300, seed=seed + 1, **kw)["k"]
    return frenkel_ladd(sites, lj, t, k, 100, fl_steps, 1, seed=seed + 2, pressure_bar=p, **kw), sites


def test_rs_npt_agrees_with_independent_frenkel_ladd() -> None:
    """LJ solid (2.5σ, shifted) at 926 bar: G(T₁) from FL at T₀ + reversible scaling under NPT
    (barostat at λP) agrees with an independent FL at T₁ (its own NPT volume and springs) within the
    dissipations of the three runs plus k_BT₁/N, the size of the fixed-volume approximation
    G ≈ F(V̄) + PV̄ that both FL values make (the RS integrates the isobaric G exactly)."""
    lj = LennardJones(0.0104, 3.4, 8.5, shift=True)
    p, t0, t1 = 926.0, 70.0, 90.0
    ideal = State.from_atoms(bulk("Ar", "fcc", a=5.40, cubic=True).repeat(2), temperature=t0, seed=3)
    kw = dict(dt=8.0, tau=200.0)
    npt = dict(tau_p=2000.0, compressibility=5e-4)

    r0, sites0 = _npt_frenkel_ladd(ideal, lj, t0, p, 800, 1000, 10)
    r1, _ = _npt_frenkel_ladd(ideal, lj, t1, p, 800, 1000, 20)
    rs = reversible_scaling(sites0, lj, t0, t1, 100, 1500, r0["G_per_atom"], pressure_bar=p, seed=30, n_grid=3,
                            **kw, **npt)
    g_rs, e_rs = rs["G_per_atom"][-1], abs(rs["dissipation_per_atom"][-1])
    n = ideal.n_atoms
    tol = abs(r0["dissipation_per_atom"]) * t1 / t0 + abs(r1["dissipation_per_atom"]) + e_rs + KB_EV_PER_K * t1 / n
    assert abs(g_rs - r1["G_per_atom"]) < tol, (g_rs, r1["G_per_atom"], tol)
    assert tol < 2e-3, tol  # eV/atom (a 600-step FL / 1000-step RS version: 1.4 meV)


def test_pressure_sweep_agrees_with_independent_frenkel_ladd() -> None:
    """LJ solid at 70 K: G(P₁) = G(P₀) + ∫⟨V⟩dP from the pressure sweep (target ramped, forward and
    backward) agrees with an independent FL at P₁ within the FL dissipations + the sweep's hysteresis
    + k_BT/N (the fixed-volume approximation of both FL values, as in the RS test)."""
    from md_engine.free_energy.protocols import pressure_sweep

    lj = LennardJones(0.0104, 3.4, 8.5, shift=True)
    t, p0, p1 = 70.0, 0.0, 5000.0
    ideal = State.from_atoms(bulk("Ar", "fcc", a=5.40, cubic=True).repeat(2), temperature=t, seed=4)
    kw = dict(dt=8.0, tau=200.0)
    npt = dict(tau_p=2000.0, compressibility=5e-4)

    r0, sites0 = _npt_frenkel_ladd(ideal, lj, t, p0, 600, 700, 40)
    r1, _ = _npt_frenkel_ladd(ideal, lj, t, p1, 600, 700, 50)
    ps = pressure_sweep(sites0, lj, t, p0, p1, 200, 1000, r0["G_per_atom"], n_grid=3, seed=60, **kw, **npt)
    g, hyst = ps["G_per_atom"][-1], abs(ps["hysteresis_per_atom"][-1])
    tol = abs(r0["dissipation_per_atom"]) + abs(r1["dissipation_per_atom"]) + hyst + KB_EV_PER_K * t / ideal.n_atoms
    assert abs(g - r1["G_per_atom"]) < tol, (g, r1["G_per_atom"], tol)
    assert g - r0["G_per_atom"] > 0.02  # ∫V dP over 5 kbar ≈ 0.12 eV/atom: the sweep does something
