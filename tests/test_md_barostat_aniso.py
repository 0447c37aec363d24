"""Anisotropic stochastic cell rescaling (``StochasticCellRescaling(mode="anisotropic")``).

References, all independent of the barostat: the static elastic response of the 32-atom LJ argon fcc
crystal (lattice constant where the static virial pressure is P₀, found by bisection, and the Hessian
H = ∂²(E + P₀V)/∂ε_α∂ε_β in log strains ε_α = ln L_α, by central finite differences of energies);
in the harmonic limit (T = 5 K) the strains sample Cov(ε) = k_BT H⁻¹ and a strain relaxes with the
rate (β_T/(3τ)) × eigenvalue/V. Plus: the isotropic mode unchanged, one rescaling step of a triclinic
cell checked term by term, effective-energy conservation, exact restarts, 2 MPI ranks = 1 rank, config.
Statistical errors from block averages (10 blocks); tolerances 4 standard errors.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from md_engine import (
    CSVR, CheckpointReporter, Langevin, Reporter, Simulation, State, StochasticCellRescaling,
    kinetic_energy,
)
from conftest import ARGON_EPS, ARGON_SIG, MPIRUN, argon_atoms, argon_lj
from md_engine.config import parse_config
from md_engine import NPT, rng
from md_engine.observables import kinetic_tensor
from mlpot.errors import ConfigError, SimulationError
from mlpot.neighbors import neighbor_list
from mlpot.units import BAR_TO_EV_PER_A3, EV_PER_A3_TO_BAR, KB_EV_PER_K

EPS, SIG, RC, RO = ARGON_EPS, ARGON_SIG, 8.0, 6.0  # argon (eV, Å); switch from RO to RC, away from the fcc shells
P0 = 300.0  # bar
N_ATOMS = 32


def crystal(a: float, temperature: float, stretch: tuple[float, float, float] = (1.0, 1.0, 1.0), seed: int = 1,
            shear: bool = False) -> State:
    """2×2×2 conventional fcc cells (32 atoms), lattice constant a (Å), cell rows scaled by ``stretch``."""
    atoms = argon_atoms(2, a=a, stretch=stretch, shear=shear)  # shear: a triclinic cell
    return State.from_atoms(atoms, temperature=temperature, seed=seed, device="cpu")


def npt(mode: str, temperature: float, beta: float = 5e-4, tau: float = 1000.0, dt: float = 10.0, seed: int = 5,
        thermostat: str = "csvr", pressure: float = P0):
    baro = StochasticCellRescaling(pressure, tau=tau, compressibility=beta, mode=mode)
    cls = CSVR if thermostat == "csvr" else Langevin
    return NPT(cls(dt, temperature, tau=50.0, seed=seed), baro)


class Recorder(Reporter):
    """Every step: P_xx, P_yy, P_zz (bar, from the kinetic tensor and the virial), ln of the three cell
    diagonal entries, the effective energy (eV), time (fs) and the barostat's heat (eV)."""

    def __init__(self) -> None:
        self.interval = 1
        self.rows: list[list[float]] = []

    def report(self, sim) -> None:
        st = sim.state
        p = (torch.diagonal(kinetic_tensor(st)) + torch.diagonal(st.virial)) / st.volume * EV_PER_A3_TO_BAR
        eff = float(st.energy) + float(kinetic_energy(st)) + sim.integrator.conserved_extra(st)
        self.rows.append([*p.tolist(), *torch.log(torch.diagonal(st.cell)).tolist(), eff, st.time_fs,
                          sim.integrator.barostat.heat])


def sample(state: State, integ, steps: int, equil: int = 0) -> np.ndarray:
    rec = Recorder()
    sim = Simulation(state, argon_lj(RC, RO), integ, [rec], skin=1.0)
    sim.run(equil)
    rec.rows.clear()
    sim.run(steps)
    return np.array(rec.rows)


def block_mean(x: np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Mean and its standard error from ``blocks`` contiguous block means."""
    b = x[: len(x) // blocks * blocks].reshape(blocks, -1).mean(axis=1)
    return float(x.mean()), float(b.std(ddof=1) / math.sqrt(blocks))


# ------------------------------------------------------------------------------- static reference
def _static(a: float, eps=(0.0, 0.0, 0.0)) -> tuple[float, torch.Tensor]:
    """Energy (eV) and virial (eV) of the perfect crystal, lattice constant a, log strains eps."""
    mu = torch.exp(torch.tensor(eps))
    base = torch.tensor(argon_atoms(2, a=1.0).positions)
    cell, pos = torch.diag(2 * a * mu), base * a * mu
    pbc = torch.ones(3, dtype=torch.bool)
    nl = neighbor_list(pos, cell[None], pbc[None], RC)
    out = argon_lj(RC, RO).compute(pos, torch.zeros(N_ATOMS, dtype=torch.long), cell, pbc, nl)
    e, w = out["energy"], out["virial"]
    return float(e), w


@pytest.fixture(scope="module")
def static_ref():
    """(a_static at P0, V, H (3, 3) eV) — H_αβ = ∂²(E + P₀V)/∂ε_α∂ε_β by central differences of energies."""
    p0 = P0 * BAR_TO_EV_PER_A3
    lo, hi = 4.9, 5.8
    for _ in range(45):
        mid = 0.5 * (lo + hi)
        _, w = _static(mid)
        lo, hi = (mid, hi) if float(torch.trace(w)) / (3 * (2 * mid) ** 3) > p0 else (lo, mid)
    a = 0.5 * (lo + hi)
    vol = (2 * a) ** 3
    h = 2e-3

    def g(e):
        return _static(a, e)[0] + p0 * vol * math.exp(sum(e))

    hess = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            def at(si, sj):
                e = [0.0, 0.0, 0.0]
                e[i] += si * h
                e[j] += sj * h
                return g(e)
            hess[i, j] = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h * h)
    return a, vol, hess


# ------------------------------------------------------------------------------- (a) isotropic unchanged
@pytest.mark.parametrize("thermostat", ["csvr", "langevin"])
def test_isotropic_mode_is_the_default_bit_for_bit(thermostat):
    def run(**kw):
        baro = StochasticCellRescaling(P0, tau=300.0, compressibility=1e-3, **kw)
        cls = CSVR if thermostat == "csvr" else Langevin
        sim = Simulation(crystal(5.5, 120.0, seed=3), argon_lj(RC, RO), NPT(cls(5.0, 120.0, tau=50.0, seed=7), baro), skin=1.0)
        sim.run(150)
        return sim

    a, b = run(), run(mode="isotropic")
    for attr in ("positions", "velocities", "cell", "image"):
        assert torch.equal(getattr(a.state, attr), getattr(b.state, attr)), attr
    assert a.thermo()["conserved_eV"] == b.thermo()["conserved_eV"]
    cell0 = crystal(5.5, 120.0).cell
    ratio = torch.diagonal(a.state.cell) / torch.diagonal(cell0)
    assert abs(float(ratio[0]) - 1) > 1e-3  # the volume did change ...
    assert float(ratio.max() - ratio.min()) < 1e-12  # ... isotropically


def test_bad_mode_rejected():
    with pytest.raises(ValueError, match="mode"):
        StochasticCellRescaling(P0, mode="triclinic")


# ------------------------------------------------------------------------------- one step, triclinic cell
def _one_step(beta: float) -> tuple[torch.Tensor, float, float, float]:
    """One anisotropic rescaling of a sheared 120 K crystal (barostat at k_BT of 1 K, so the drift
    dominates Δε), checked against the equation; returns (Δε, effective-energy error, ΔU, the
    first-order potential work −Σ W_αα,before Δε_α), eV."""
    tau, target = 1000.0, -3000.0
    integ = npt("anisotropic", 1.0, beta=beta, tau=tau, pressure=target)
    sim = Simulation(crystal(5.3, 120.0, shear=True, seed=4), argon_lj(RC, RO), integ, skin=1.0)
    sim.setup()
    st, baro = sim.state, integ.barostat
    pos0, vel0, cell0 = st.positions.clone(), st.velocities.clone(), st.cell.clone()
    v0, u0, k0 = float(st.volume), float(st.energy), float(kinetic_energy(st))
    p_diag = (torch.diagonal(kinetic_tensor(st)) + torch.diagonal(st.virial)) / v0  # eV/Å³
    w0 = torch.diagonal(st.virial).clone()
    # the barostat's three normals of this step (keyed RNG: seed, stream, rank 0, step)
    r = torch.as_tensor(rng.generator(baro.seed, "barostat", 0, st.step).standard_normal(3))

    baro.measure(st)
    baro.rescale(st)
    b = beta * EV_PER_A3_TO_BAR
    deps = b / (3 * tau) * (p_diag - target * BAR_TO_EV_PER_A3) * integ.dt + \
        math.sqrt(2 * integ.kt * b * integ.dt / (3 * v0 * tau)) * r
    mu = torch.exp(deps)
    assert torch.allclose(st.positions, pos0 * mu, rtol=1e-14, atol=0)
    assert torch.allclose(st.cell, cell0 @ torch.diag(mu), rtol=1e-14, atol=1e-14)
    assert torch.allclose(st.velocities, vel0 / mu, rtol=1e-14, atol=0)
    assert torch.allclose(st.positions @ torch.linalg.inv(st.cell), pos0 @ torch.linalg.inv(cell0), rtol=0, atol=1e-12)
    assert math.isclose(float(st.volume), v0 * float(mu.prod()), rel_tol=1e-13)

    sim.evaluate(st)
    baro.after_forces(st)
    v1, u1, k1 = float(st.volume), float(st.energy), float(kinetic_energy(st))
    p0 = target * BAR_TO_EV_PER_A3
    err = (u1 + k1 + p0 * v1 + baro.heat) - (u0 + k0 + p0 * v0)  # effective-energy change
    return deps, err, u1 - u0, -float((w0 * deps).sum())


def test_one_rescaling_step_affine_and_bookkeeping():
    """r ← r·diag(μ), cell ← cell·diag(μ), v ← v/μ with Δε_α = (β_T/(3τ))(P_αα − P₀) dt +
    √(2k_BTβ_T dt/(3Vτ)) R_α, fractional coordinates unchanged (a triclinic cell); the bookkeeping
    K + P₀V − Σ (W_αα,before + W_αα,after)/2 Δε_α leaves an effective-energy error of third order in
    Δε: halving Δε divides it by ≈ 8, and it is a few % of the second-order part of ΔU."""
    deps, err, du, first = _one_step(1e-3)
    deps2, err2, du2, first2 = _one_step(5e-4)
    assert 0.01 < float(deps.abs().max()) < 0.05 and torch.allclose(deps2, deps / 2, rtol=0.05)
    assert abs(du) > 0.05 and abs(err) < 0.1 * abs(du - first), (err, du, first)
    assert 5.0 < err / err2 < 12.0, (err, err2)


# ------------------------------------------------------------------------------- (b) sampling
@pytest.mark.slow
def test_anisotropic_npt_pressure_tensor_and_strain_fluctuations(static_ref):
    """5 K, 6000 steps: ⟨P_αα⟩ = P₀ for each α; the strains fluctuate independently with the harmonic
    covariance k_BT H⁻¹ (shape: ln(L_α/L_β); volume: ln V). Systematic allowance 10 % beyond 4σ:
    thermal softening of the crystal (measured 21 % for the shape stiffness at 20 K, ∝ T) and the
    Euler–Maruyama discretisation (variance × 1/(1 − k dt/2) ≈ 1.09 for the fast volume mode here)."""
    a, vol, hess = static_ref
    T = 5.0
    rows = sample(crystal(a, T), npt("anisotropic", T), steps=6000, equil=300)
    for k, name in enumerate(("P_xx", "P_yy", "P_zz")):
        p, dp = block_mean(rows[:, k])
        assert abs(p - P0) < 4 * dp and dp < 30.0, (name, p, dp)
    eps = rows[:, 3:6] - rows[:, 3:6].mean(axis=0)
    cov = KB_EV_PER_K * T * np.linalg.inv(hess)
    pairs = [np.array(d, dtype=float) for d in ((1, -1, 0), (0, 1, -1), (-1, 0, 1))]
    shape_sq = np.mean([(eps @ d) ** 2 for d in pairs], axis=0)
    shape_pred = np.mean([d @ cov @ d for d in pairs])
    u = np.ones(3)
    for q, pred, name in ((shape_sq, shape_pred, "ln(L_a/L_b)"), ((eps @ u) ** 2, u @ cov @ u, "ln V")):
        m, dm = block_mean(q)
        assert abs(m / pred - 1) < 4 * dm / pred + 0.10 and dm < 0.15 * pred, (name, m, dm, pred)
    # the ratios really move: several standard deviations of the harmonic prediction over the run
    assert np.ptp(eps[:, 0] - eps[:, 1]) > 4 * math.sqrt(pairs[0] @ cov @ pairs[0])


# ------------------------------------------------------------------------------- (c) relaxation of a stretched box
def test_stretched_box_relaxes_to_cubic_only_anisotropically(static_ref):
    """Box stretched 10 % along x from the P₀ lattice: ln(L_x/L_y) decays with the rate
    k = (β_T/(3τ)) (H_xx − H_xy)/V predicted from the static Hessian (1/e time within ±40 %) and
    ends at the cubic value; the isotropic mode cannot change the ratio at all."""
    a, vol, hess = static_ref
    T, beta, tau, dt = 5.0, 5e-4, 1000.0, 10.0
    rows = sample(crystal(a, T, stretch=(1.1, 1.0, 1.0)), npt("anisotropic", T, beta=beta, tau=tau), steps=400)
    lr = rows[:, 3] - rows[:, 4]
    k = beta * EV_PER_A3_TO_BAR / (3 * tau) * (hess[0, 0] - hess[0, 1]) / vol  # 1/fs
    t_e = (np.argmax(lr < math.log(1.1) / math.e) + 1) * dt
    assert 0.6 < t_e * k < 1.4, (t_e, 1 / k)
    assert abs(lr[-200:].mean()) < 0.015 and abs((rows[:, 4] - rows[:, 5])[-200:].mean()) < 0.015
    iso = sample(crystal(a, T, stretch=(1.1, 1.0, 1.0)), npt("isotropic", T, beta=beta, tau=tau), steps=200)
    assert np.abs(iso[:, 3] - iso[:, 4] - math.log(1.1)).max() < 1e-12
    assert np.ptp(iso[:, 3]) > 1e-3  # while its volume moves


# ------------------------------------------------------------------------------- (d) effective energy
@pytest.mark.parametrize("thermostat", ["csvr", "langevin"])
def test_effective_energy_conserved(thermostat):
    """40 K, dt = 2 fs, 2 ps: the effective energy U + K + P₀V + heat drifts < 2e-5 eV/atom/ps
    (measured ≈ 2e-6) while the barostat alone moves ≫ that much energy in and out."""
    rows = sample(crystal(5.3, 40.0), npt("anisotropic", 40.0, beta=5e-4, tau=500.0, dt=2.0, thermostat=thermostat),
                  steps=1000)
    e = rows[:, 6] / N_ATOMS
    slope = np.polyfit(rows[:, 7] / 1000.0, e, 1)[0]  # eV/atom/ps
    heat = rows[:, 8] / N_ATOMS
    assert abs(slope) < 2e-5, slope
    assert np.ptp(e) < 0.02 * np.ptp(heat), (np.ptp(e), np.ptp(heat))


# ------------------------------------------------------------------------------- (e) restart
def test_restart_continues_exactly(tmp_path):
    def make(ckpt: Path | None):
        reps = [CheckpointReporter(ckpt, 20)] if ckpt is not None else []
        return Simulation(crystal(5.4, 80.0, seed=2), argon_lj(RC, RO), npt("anisotropic", 80.0, beta=1e-3, tau=300.0, dt=5.0),
                          reps, skin=0.7)

    full = make(None)
    full.run(60)
    ck = tmp_path / "ck.pt"
    part = make(ck)
    part.run(40)
    assert torch.load(ck, weights_only=True)["integrator"]["barostat"]["mode"] == "anisotropic"
    again = make(None)
    again.load_checkpoint(ck)
    again.run(20)
    for attr in ("positions", "velocities", "cell", "image"):
        assert torch.equal(getattr(full.state, attr), getattr(again.state, attr)), attr
    assert full.thermo()["conserved_eV"] == again.thermo()["conserved_eV"]
    d = torch.diagonal(full.state.cell)
    assert float(d.max() / d.min()) > 1.0 + 1e-4  # anisotropic indeed
    iso = Simulation(crystal(5.4, 80.0, seed=2), argon_lj(RC, RO), npt("isotropic", 80.0, beta=1e-3, tau=300.0, dt=5.0), skin=0.7)
    with pytest.raises(SimulationError, match="barostat mode 'anisotropic'"):
        iso.load_checkpoint(ck)


# ------------------------------------------------------------------------------- (f) config + CLI build
def _cfg(**kw):
    base = {"structure": "x.xyz", "potential": {"lj": {"epsilon": EPS, "sigma": SIG, "cutoff": RC}},
            "ensemble": "npt-scr", "temperature": 50.0, "pressure": P0, "steps": 5}
    base.update(kw)
    return base


def test_config_barostat_mode(tmp_path):
    assert parse_config(_cfg()).barostat_mode == "isotropic"
    assert parse_config(_cfg(barostat_mode="anisotropic")).barostat_mode == "anisotropic"
    with pytest.raises(ConfigError, match="barostat_mode") as exc:
        parse_config(_cfg(barostat_mode="aniso"), "in.yaml")
    assert "in.yaml" in str(exc.value) and "'aniso'" in str(exc.value)
    with pytest.raises(ConfigError, match="barostat_mode.*npt-scr"):
        parse_config(_cfg(ensemble="nvt-csvr", barostat_mode="anisotropic"))
    from md_engine import build_simulation

    xyz = tmp_path / "ar.xyz"
    argon_atoms(2, a=5.4).write(xyz)
    cfg = parse_config(_cfg(structure=str(xyz), barostat_mode="anisotropic", output_dir=str(tmp_path / "out"),
                            device="cpu", progress=False))
    sim = build_simulation(cfg)
    assert sim.integrator.barostat.mode == "anisotropic"


# ------------------------------------------------------------------------------- MPI
HERE = Path(__file__).resolve().parent
WORKER = HERE / "mpi_scripts" / "md_worker.py"


@pytest.mark.mpi
def test_two_ranks_match_one_rank(tmp_path):
    """72 atoms in a triclinic cell, 150 steps CSVR + anisotropic barostat: 2 ranks == serial."""
    sys.path.insert(0, str(WORKER.parent))
    import md_worker as w

    out = tmp_path / "a.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([str(MPIRUN), "-n", "2", sys.executable, str(WORKER), "npt-aniso", str(out), "150"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    d = np.load(out)
    cell0 = w.lj_state().cell
    sim = Simulation(w.lj_state(), w.lj_potential(), w.npt_aniso_integrator(), skin=w.LJ_SKIN)
    sim.run(150)
    assert int(d["size"]) == 2
    assert np.abs(d["cell"] - sim.state.cell.numpy()).max() < 1e-10
    assert np.abs(d["positions"] - w.unwrapped(sim.state)).max() < 1e-8
    assert np.abs(d["velocities"] - sim.state.velocities.numpy()).max() < 1e-10
    assert abs(float(d["conserved"]) - sim.thermo()["conserved_eV"]) < 1e-8
    ratio = torch.diagonal(sim.state.cell) / torch.diagonal(cell0)
    assert float(ratio.max() - ratio.min()) > 1e-3  # the box did deform anisotropically
