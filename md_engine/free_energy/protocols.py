"""Free-energy protocols on md_engine: NPT equilibration, spring constants from the MSD,
nonequilibrium Frenkel–Ladd (solids), Uhlenbeck–Ford (liquids), reversible scaling (G(T) along an
isobar) and the pressure sweep (G(P) along an isotherm), and the structural checks.

Methods: Freitas, Asta & de Koning, Comput. Mater. Sci. 112, 333 (2016) (FL and RS protocols);
Paula Leite, Freitas, Azevedo & de Koning, JCP 145, 194101 (2016) (UF liquid reference);
de Koning, Antonelli & Yip, PRL 83, 3973 (1999) and JCP 115, 11025 (2001) (reversible scaling, NPT
with the scaled pressure λP₀). Exact finite-N reference terms: :mod:`md_engine.free_energy.references`.

**Reversible scaling.** H_λ = K + λ(U + P₀V) at T₀ samples the real system at T = T₀/λ and P₀
(configurational part; the scaled system's barostat imposes λP₀). With
I(λ) = ∫₁^λ ⟨U + P₀V⟩ dλ′ (the forward and backward estimates averaged),
G(T)/N = G(T₀)/(Nλ) + (3/2) k_BT ln λ + I(λ)/(Nλ): the (3/2)k_BT ln λ is the kinetic part
(−(3/2)k_BT ln(2πmk_BT/h²) at T minus 1/λ of it at T₀); dissipation e(T) = (I_f − I_b)/(2Nλ).
λ is linear in time (the barostat then follows λP₀ closely).

**Pressure sweep.** G(P)/N = G(P₀)/N + ∫_{P₀}^{P} ⟨V⟩/N dP′ at fixed T (NPT with the target ramped;
forward and backward averaged).

All protocols take a *state* (ASE-built or read) and a potential, run serially on the state's
device, and return plain dicts of floats/lists (JSON-ready). Units: eV, Å, fs, K, bar; per-atom
quantities are named ``*_per_atom``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from mlpot.atomic_io import atomic_path
from mlpot.errors import SimulationError
from mlpot.units import BAR_TO_EV_PER_A3, EV_PER_A3_TO_BAR, KB_EV_PER_K

from md_engine.free_energy import references as ref
from md_engine.free_energy.switching import (LegResult, ScheduledIntegrator, forward_backward, lambda_polynomial,
                                             run_leg)
from md_engine.integrators import NPT, Langevin, StochasticCellRescaling
from md_engine.observables import pressure
from md_engine.potentials.coupled import CoupledPotential
from md_engine.potentials.einstein import EinsteinCrystal, minimum_image
from md_engine.potentials.uf import UhlenbeckFord
from md_engine.simulation import Simulation
from md_engine.state import State


# ------------------------------------------------------------------------------------------ helpers
def _sim(state: State, potential: Any, temperature: float, dt: float, tau: float, seed: int,
         pressure_bar: Optional[float] = None, tau_p: float = 1000.0, compressibility: float = 1e-5,
         barostat_mode: str = "isotropic", min_distance: float = 0.3) -> tuple[Simulation, ScheduledIntegrator]:
    """A simulation of ``state`` under ``potential`` (wrapped in a CoupledPotential when it is not
    one) with Langevin (fixed COM) and, with ``pressure_bar``, stochastic cell rescaling. The
    simulation runs on a copy of ``state`` (the caller's state is never moved)."""
    state = state.clone()
    cp = potential if isinstance(potential, CoupledPotential) else CoupledPotential(None, potential, lam=1.0)
    lang = Langevin(dt, temperature, tau=tau, seed=seed, fixed_com=True)
    inner: Any = lang
    if pressure_bar is not None:
        inner = NPT(lang, StochasticCellRescaling(pressure_bar, tau=tau_p, compressibility=compressibility,
                                                  seed=seed + 7919, mode=barostat_mode))
    integ = ScheduledIntegrator(inner, cp, fixed_com=True, pressure_bar=pressure_bar)
    sim = Simulation(state, cp, integ, skin=1.0, min_distance=min_distance, check_every=20)
    return sim, integ


def scale_to_cell(state: State, cell: torch.Tensor) -> State:
    """A copy of ``state`` with the box ``cell`` (Å) and the positions mapped affinely (fractional
    coordinates kept)."""
    st = state.clone()
    frac = st.positions @ torch.linalg.inv(st.cell)
    st.cell = cell.to(st.cell).clone()
    st.positions = frac @ st.cell
    return st


def bragg_vector(state: State) -> torch.Tensor:
    """The reciprocal vector k (1/Å) of the box with the largest |S(k)| = |Σ e^{ik·r}|/N among
    k = 2π (h, k, l) B, |h|,|k|,|l| ≤ 6, of the (ideal) structure ``state``: the crystal's strongest
    Bragg peak, used by :func:`bragg_order`."""
    rec = 2 * math.pi * torch.linalg.inv(state.cell).T  # rows b_i, a_i·b_j = 2π δ_ij
    r = torch.arange(-6, 7, dtype=state.dtype)
    hkl = torch.cartesian_prod(r, r, r)
    hkl = hkl[(hkl != 0).any(1)]
    ks = hkl.to(state.dtype) @ rec.to(state.dtype)
    phase = state.positions.to(ks) @ ks.T
    s = torch.sqrt(torch.cos(phase).sum(0) ** 2 + torch.sin(phase).sum(0) ** 2) / state.n_atoms
    norm = ks.norm(dim=1)
    best = torch.nonzero(s > s.max() - 1e-6).reshape(-1)
    i = best[torch.argmin(norm[best])]
    # keep it in fractional form so that it follows the box
    return hkl[i]


def bragg_order(state: State, hkl: torch.Tensor) -> float:
    """|S(k)|² = |Σ_j e^{ik·r_j}|²/N² at k = 2π hkl·B of the current box: ≈ e^{−k²⟨u²⟩/3} (0.5–1) in
    the crystal, ≈ 1/N in a liquid."""
    rec = 2 * math.pi * torch.linalg.inv(state.cell).T
    k = hkl.to(state.dtype) @ rec
    ph = state.positions @ k
    return float((torch.cos(ph).sum() ** 2 + torch.sin(ph).sum() ** 2) / state.n_atoms**2)


#: solid if the Bragg order stays above this, liquid below LIQUID_ORDER
SOLID_ORDER = 0.2
LIQUID_ORDER = 0.1


class StructureError(SimulationError):
    """The phase changed during a run (a solid melted, a liquid froze)."""


def structure_monitor(hkl: torch.Tensor, phase: str, where: str, rs_t0: Optional[float] = None) -> Callable[[Simulation], None]:
    """A monitor for :func:`run_leg`: a solid must keep its Bragg order (mean of the last 3 checks)
    above SOLID_ORDER; a liquid must not develop the Bragg order of the crystal it was melted from
    (mean of the last 5 checks above 0.5). ``rs_t0``: reversible scaling at T₀ (the message then
    names the real temperature T₀/λ)."""
    hist: list[float] = []

    def check(sim: Simulation) -> None:
        q = bragg_order(sim.state, hkl)
        hist.append(q)
        recent = float(np.mean(hist[-5:]))
        lam = float(sim.integrator.potential.lam)
        at = f"T = {rs_t0 / max(lam, 1e-12):.0f} K" if rs_t0 is not None else f"λ = {lam:.3f}"
        if phase == "solid" and len(hist) >= 3 and float(np.mean(hist[-3:])) < SOLID_ORDER:
            raise StructureError(f"{where}: the solid melted at about {at} (Bragg order {float(np.mean(hist[-3:])):.3f} "
                                 f"< {SOLID_ORDER}); lower the upper temperature of the sweep (t_max) for this phase")
        if phase == "liquid" and len(hist) >= 5 and recent > 0.5:
            raise StructureError(f"{where}: the liquid froze at about {at} (Bragg order {recent:.3f} > 0.5); "
                                 "raise the lower temperature of the sweep (t_min) for this phase")

    return check


class Journal:
    """Restart bookkeeping of one protocol in ``workdir``: finished legs' results in
    ``journal.json`` (written atomically) and the MD checkpoint after the last finished leg."""

    def __init__(self, workdir: Optional[Path]) -> None:
        self.dir = Path(workdir) if workdir is not None else None
        self.data: dict[str, Any] = {}
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            p = self.dir / "journal.json"
            if p.exists():
                self.data = json.loads(p.read_text())

    @property
    def checkpoint(self) -> Optional[Path]:
        return None if self.dir is None else self.dir / "checkpoint.pt"

    def done(self, key: str) -> bool:
        return key in self.data

    def record(self, key: str, value: Any, sim: Optional[Simulation] = None) -> None:
        self.data[key] = value
        if self.dir is None:
            return
        if sim is not None:
            sim.save_checkpoint(self.checkpoint)
        with atomic_path(self.dir / "journal.json") as tmp:
            Path(tmp).write_text(json.dumps(self.data))

    def resume(self, sim: Simulation) -> None:
        """Load the last checkpoint into ``sim`` if legs were recorded."""
        if self.data and self.checkpoint is not None and self.checkpoint.exists():
            sim.load_checkpoint(self.checkpoint)


# ------------------------------------------------------------------------------------- equilibration
def equilibrate_npt(state: State, potential: Any, temperature: float, pressure_bar: float, n_steps: int,
                    dt: float = 2.0, tau: float = 100.0, tau_p: float = 1000.0, compressibility: float = 1e-5,
                    barostat_mode: str = "isotropic", seed: int = 0, tolerance_bar: Optional[float] = None,
                    sample_every: int = 10, where: str = "equilibration") -> dict[str, Any]:
    """NPT at (T, P); the second half is averaged: ⟨V⟩ (Å³), the mean cell, ⟨P⟩ ± SEM (bar), ⟨U⟩ (eV),
    ⟨H⟩ = ⟨U⟩ + P⟨V⟩ (eV, no kinetic part). ``tolerance_bar``: raise if |⟨P⟩ − P| exceeds it by more
    than 3 SEM (the barostat did not converge). Returns the state scaled to the mean cell as ``state``."""
    sim, integ = _sim(state, potential, temperature, dt, tau, seed, pressure_bar=pressure_bar, tau_p=tau_p,
                      compressibility=compressibility, barostat_mode=barostat_mode)
    n_half = n_steps // 2
    sim.run(n_steps - n_half)
    cells, pres, energies = [], [], []
    for _ in range(max(n_half // sample_every, 1)):
        sim.run(sample_every)
        cells.append(sim.state.cell.detach().clone())
        pres.append(float(pressure(sim.state)) * EV_PER_A3_TO_BAR)
        energies.append(float(sim.state.outputs["U_B"]))
    cell = torch.stack(cells).mean(0)
    vols = torch.stack([torch.abs(torch.linalg.det(c)) for c in cells]).double().cpu().numpy()
    p = np.asarray(pres)
    sem = _block_sem(p)
    if tolerance_bar is not None and abs(p.mean() - pressure_bar) > tolerance_bar + 3 * sem:
        raise SimulationError(
            f"{where}: pressure did not converge: ⟨P⟩ = {p.mean():.0f} ± {sem:.0f} bar, target {pressure_bar:.0f} bar "
            f"(tolerance {tolerance_bar:.0f} bar); run more equilibration steps or raise tau_p/compressibility")
    out_state = scale_to_cell(sim.state, cell)
    n = state.n_atoms
    v = float(vols.mean())
    u = float(np.mean(energies))
    return {"state": out_state, "volume": v, "volume_per_atom": v / n, "volume_sem": _block_sem(vols),
            "pressure_bar": float(p.mean()), "pressure_sem_bar": sem, "potential_energy": u,
            "enthalpy_per_atom": (u + pressure_bar * BAR_TO_EV_PER_A3 * v) / n, "cell": cell.tolist()}


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp for abscissae ``xp`` in either order."""
    xp, fp = np.asarray(xp, float), np.asarray(fp, float)
    o = np.argsort(xp)
    return np.interp(np.asarray(x, float), xp[o], fp[o])


def _running_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Centred running mean of ``x`` over ``w`` samples (shorter windows at the ends)."""
    x = np.asarray(x, float)
    if w <= 1 or x.size < 2:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(x.size)
    lo, hi = np.clip(i - w // 2, 0, x.size), np.clip(i + w // 2 + 1, 0, x.size)
    return (c[hi] - c[lo]) / (hi - lo)


def _block_sem(x: np.ndarray, n_blocks: int = 5) -> float:
    x = np.asarray(x, float)
    if x.size < 2 * n_blocks:
        return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0
    b = np.array([blk.mean() for blk in np.array_split(x, n_blocks)])
    return float(b.std(ddof=1) / math.sqrt(n_blocks))


def spring_constants(state: State, potential: Any, temperature: float, n_steps: int, dt: float = 2.0,
                     tau: float = 100.0, seed: int = 0, sample_every: int = 10, where: str = "spring constants") -> dict[str, Any]:
    """k_s = 3k_BT/⟨|Δr|²⟩_s (eV/Å²) per type s from an NVT run at the box of ``state``, Δr the
    displacement from the initial (lattice) positions with the COM fixed. Raises if a k is not finite
    or ⟨|Δr|²⟩ is larger than a Lindemann-like (0.25 d_nn)² (the solid is not stable here)."""
    sim, integ = _sim(state, potential, temperature, dt, tau, seed)
    sites = state.positions.clone()
    ntypes = len(state.type_map)
    acc = torch.zeros(ntypes, dtype=torch.float64)
    cnt = torch.bincount(state.types, minlength=ntypes).double()
    n_samples = 0
    sim.run(n_steps // 5)
    for _ in range(max((n_steps - n_steps // 5) // sample_every, 1)):
        sim.run(sample_every)
        d = minimum_image(sim.state.positions - sites, sim.state.cell, sim.state.pbc)
        acc += torch.zeros(ntypes, dtype=torch.float64).index_add_(0, sim.state.types, (d * d).sum(1).double())
        n_samples += 1
    msd = (acc / cnt.clamp(min=1) / n_samples).numpy()
    kt = KB_EV_PER_K * temperature
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 3 * kt / msd
    present = cnt.numpy() > 0
    if not np.all(np.isfinite(k[present])) or np.any(k[present] <= 0):
        raise SimulationError(f"{where}: non-finite spring constant k = {k.tolist()} eV/Å² from ⟨Δr²⟩ = "
                              f"{msd.tolist()} Å²; check the structure and potential (atoms not moving or exploding)")
    dnn = _nearest_distance(state)
    if np.any(msd[present] > (0.25 * dnn) ** 2):
        raise StructureError(f"{where}: mean squared displacement {msd[present].max():.3f} Å² exceeds "
                             f"(0.25 d_nn)² = {(0.25 * dnn) ** 2:.3f} Å² at T = {temperature} K: the solid is not "
                             "stable (melted or diffusing); lower t0 or check the lattice constant")
    k = np.where(present, k, np.nanmean(k[present]))
    return {"k": k.tolist(), "msd": msd.tolist(), "d_nn": dnn}


def _nearest_distance(state: State) -> float:
    from mlpot.neighbors import neighbor_list, pair_vectors

    nl = neighbor_list(state.positions, state.cell, state.pbc, 6.0) if state.n_atoms < 4000 else None
    if nl is None or nl.centers.numel() == 0:
        return float((state.volume / state.n_atoms) ** (1 / 3))
    d = pair_vectors(state.positions, state.cell, None, nl).norm(dim=1)
    return float(d.min())


# ------------------------------------------------------------------------------------ switching cycles
def switching_cycles(sim: Simulation, integ: ScheduledIntegrator, n_eq: int, n_switch: int, n_cycles: int,
                     journal: Optional[Journal] = None, monitor: Optional[Callable[[Simulation], None]] = None,
                     prefix: str = "") -> dict[str, Any]:
    """``n_cycles`` × (equilibrate ``n_eq`` steps at λ = 0, switch 0 → 1 in ``n_switch`` steps,
    equilibrate at λ = 1, switch 1 → 0). λ runs linearly in time; the potential's ``switch``
    (``"polynomial"`` for FL/UF) shapes f(λ), so f(t) is the polynomial of
    :func:`~md_engine.free_energy.switching.lambda_polynomial`. Each finished cycle is journalled (with
    the MD checkpoint) so that a restart continues after it. Returns the per-cycle works (eV) and
    :func:`~md_engine.free_energy.switching.forward_backward`."""
    journal = journal or Journal(None)
    journal.resume(sim)
    lam_f = np.linspace(0.0, 1.0, n_switch + 1)
    wf, wb = [], []
    every = max(n_switch // 10, 1)
    for c in range(n_cycles):
        key = f"{prefix}cycle{c}"
        if journal.done(key):
            wf.append(journal.data[key]["W_forward"])
            wb.append(journal.data[key]["W_backward"])
            continue
        integ.potential.lam = 0.0
        sim.run(n_eq)
        f = run_leg(sim, integ, lam_f, monitor=monitor, monitor_every=every)
        sim.run(n_eq)
        b = run_leg(sim, integ, lam_f[::-1].copy(), monitor=monitor, monitor_every=every)
        wf.append(f.total)
        wb.append(b.total)
        journal.record(key, {"W_forward": f.total, "W_backward": b.total,
                             "lam": f.lambdas[1:].tolist()[:: max(n_switch // 200, 1)],
                             "dU_forward": f.du.tolist()[:: max(n_switch // 200, 1)]}, sim)
    out = forward_backward(wf, wb)
    out.update({"W_forward": wf, "W_backward": wb})
    return out


def einstein_to_einstein(state: State, k1: float, k2: float, temperature: float, n_eq: int, n_switch: int,
                         n_cycles: int = 1, dt: float = 2.0, tau: float = 100.0, seed: int = 0) -> dict[str, Any]:
    """Switch an Einstein crystal of springs ``k1`` → ``k2`` (eV/Å², same sites) and back. Exact:
    ΔF/N = (3/2) k_BT ln(k2/k1) for free atoms; with the COM fixed (as here) the three COM
    coordinates are removed, ΔF_cm = (3/2) k_BT (N − 1) ln(k2/k1) (total; equal masses and springs)."""
    sites = state.positions.clone()
    cp = CoupledPotential(EinsteinCrystal(k1, sites), EinsteinCrystal(k2, sites), switch="polynomial")
    sim, integ = _sim(state, cp, temperature, dt, tau, seed)
    return switching_cycles(sim, integ, n_eq, n_switch, n_cycles)


# ------------------------------------------------------------------------------------- Frenkel–Ladd
def frenkel_ladd(state: State, potential: Any, temperature: float, k: Sequence[float], n_eq: int, n_switch: int,
                 n_cycles: int = 3, dt: float = 2.0, tau: float = 100.0, seed: int = 0,
                 pressure_bar: float = 0.0, workdir: Optional[Path] = None, where: str = "Frenkel–Ladd",
                 check_structure: bool = True) -> dict[str, Any]:
    """F (and G = F + PV) per atom of the solid ``state`` (at its box, the lattice sites = its
    positions) by nonequilibrium switching U → U_E (fixed COM) and back (module docstring of
    :mod:`md_engine.free_energy.references` for F = F_E + W + F_CM). ``k``: spring constant per type
    (eV/Å²). Returns eV per atom, with the parts and the dissipation."""
    sites = state.positions.clone()
    ein = EinsteinCrystal(k, sites)
    cp = CoupledPotential(potential, ein, switch="polynomial")
    sim, integ = _sim(state, cp, temperature, dt, tau, seed)
    mon = structure_monitor(bragg_vector(state), "solid", where) if check_structure else None
    fb = switching_cycles(sim, integ, n_eq, n_switch, n_cycles, journal=Journal(workdir), monitor=mon)
    n = state.n_atoms
    kk = ein.spring_constants(state.types, state.positions).double().cpu().numpy()
    m = state.masses.double().cpu().numpy()
    vol = float(state.volume)
    f_e = ref.einstein_free_energy(kk, m, temperature)
    f_cm = ref.com_correction(kk, m, temperature, vol)
    f = f_e + f_cm - fb["delta_F"]
    return {"F_per_atom": f / n, "G_per_atom": f / n + pressure_bar * BAR_TO_EV_PER_A3 * vol / n,
            "F_sem_per_atom": fb["delta_F_sem"] / n, "F_einstein_per_atom": f_e / n, "F_com_per_atom": f_cm / n,
            "work_per_atom": -fb["delta_F"] / n, "dissipation_per_atom": fb["dissipation"] / n,
            "W_forward": fb["W_forward"], "W_backward": fb["W_backward"], "n_cycles": fb["n_cycles"],
            "volume_per_atom": vol / n, "temperature": temperature, "k": list(map(float, np.atleast_1d(k))),
            "n_atoms": n, "convention": "exact finite N: F_CM with +kT ln N (Freitas Eq. 24 / Khanna 2021)"}


# ------------------------------------------------------------------------------------ Uhlenbeck–Ford
def uf_liquid(state: State, potential: Any, temperature: float, n_eq: int, n_switch: int, n_cycles: int = 3,
              p: float = 50.0, x: float = 1.0, dt: float = 2.0, tau: float = 100.0, seed: int = 0,
              pressure_bar: float = 0.0, workdir: Optional[Path] = None, where: str = "Uhlenbeck–Ford",
              hkl: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """F (and G) per atom of the liquid ``state`` at its box by switching U → U_UF (p, σ chosen so
    that x = bρ is the tabulated ``x``) and back; F = F_ig + N k_BT f(x; p) − ΔF(U → UF) (module
    docstrings). Both Hamiltonians are translation invariant, so the fixed COM needs no correction."""
    n = state.n_atoms
    vol = float(state.volume)
    sigma = ref.uf_sigma_for(x, n / vol)
    uf = UhlenbeckFord(p, sigma, temperature)
    cp = CoupledPotential(potential, uf, switch="polynomial")
    sim, integ = _sim(state, cp, temperature, dt, tau, seed)
    mon = structure_monitor(hkl, "liquid", where) if hkl is not None else None
    fb = switching_cycles(sim, integ, n_eq, n_switch, n_cycles, journal=Journal(workdir), monitor=mon)
    kt = KB_EV_PER_K * temperature
    counts = torch.bincount(state.types, minlength=len(state.type_map)).tolist()
    masses = [float(state.masses[state.types == t][0]) if c else 1.0 for t, c in enumerate(counts)]
    f_ig = ref.ideal_gas_free_energy(counts, masses, temperature, vol)
    f_ex = n * kt * ref.uf_excess_free_energy(p, x)
    f = f_ig + f_ex - fb["delta_F"]
    return {"F_per_atom": f / n, "G_per_atom": f / n + pressure_bar * BAR_TO_EV_PER_A3 * vol / n,
            "F_sem_per_atom": fb["delta_F_sem"] / n, "F_ideal_gas_per_atom": f_ig / n, "F_uf_excess_per_atom": f_ex / n,
            "work_per_atom": -fb["delta_F"] / n, "dissipation_per_atom": fb["dissipation"] / n,
            "W_forward": fb["W_forward"], "W_backward": fb["W_backward"], "n_cycles": fb["n_cycles"],
            "volume_per_atom": vol / n, "temperature": temperature, "uf": {"p": p, "x": x, "sigma": sigma},
            "n_atoms": n, "convention": "exact finite N: ideal gas with ln N_s! (no Stirling)"}


# -------------------------------------------------------------------------------- reversible scaling
def reversible_scaling(state: State, potential: Any, t0: float, t1: float, n_eq: int, n_sweep: int,
                       g0_per_atom: float, pressure_bar: Optional[float] = 0.0, n_cycles: int = 1,
                       dt: float = 2.0, tau: float = 100.0, tau_p: float = 1000.0, compressibility: float = 1e-5,
                       barostat_mode: str = "isotropic", seed: int = 0, n_grid: int = 101,
                       workdir: Optional[Path] = None, phase: Optional[str] = None, hkl: Optional[torch.Tensor] = None,
                       where: str = "reversible scaling") -> dict[str, Any]:
    """G(T)/N on a grid of ``n_grid`` temperatures from ``t0`` to ``t1`` (K) along the isobar
    ``pressure_bar`` (None: NVT at the state's box, then F(T)) from G(T₀)/N = ``g0_per_atom`` (eV),
    by ``n_cycles`` forward (λ: 1 → T₀/T₁) and backward sweeps of ``n_sweep`` steps (module
    docstring). Returns T, G (mean over cycles), its SEM, the dissipation e(T) (eV/atom) and
    ⟨H⟩(T) = ⟨U + P₀V⟩/N and ⟨V⟩/N along the forward sweeps."""
    n = state.n_atoms
    p_ev = 0.0 if pressure_bar is None else pressure_bar * BAR_TO_EV_PER_A3
    cp = CoupledPotential(None, potential, lam=1.0, switch="linear")
    sim, integ = _sim(state, cp, t0, dt, tau, seed, pressure_bar=pressure_bar, tau_p=tau_p,
                      compressibility=compressibility, barostat_mode=barostat_mode)
    lam_end = t0 / t1
    lam = np.linspace(1.0, lam_end, n_sweep + 1)
    journal = Journal(workdir)
    journal.resume(sim)
    mon = structure_monitor(hkl, phase, where, rs_t0=t0) if (hkl is not None and phase) else None
    every = max(n_sweep // 20, 1)
    grid_t = np.linspace(t0, t1, n_grid)
    grid_l = t0 / grid_t
    curves, diss, h_f, v_f = [], [], [], []
    for c in range(n_cycles):
        key = f"cycle{c}"
        if not journal.done(key):
            integ._set_lambda(1.0)
            sim.run(n_eq)
            f = run_leg(sim, integ, lam, pressure_ev=p_ev, monitor=mon, monitor_every=every)
            sim.run(n_eq)
            b = run_leg(sim, integ, lam[::-1].copy(), pressure_ev=p_ev, monitor=mon, monitor_every=every)
            # cumulative ∫₁^λ on both legs: forward directly, backward = W_b(λ) − W_b(λ=1)
            i_f = np.concatenate([[0.0], f.work])
            wb = np.concatenate([[0.0], b.work])  # from λ_end to λ along lam[::-1]
            i_b = (wb - wb[-1])[::-1]  # at lam values
            # ⟨U + P₀V⟩ and ⟨V⟩ along the forward sweep: running means over windows of 2 % of the sweep
            # (single steps fluctuate by ~ 1/√N)
            hf = _running_mean((f.du + p_ev * f.volume) / n, max(n_sweep // 50, 1))
            vf = _running_mean(f.volume / n, max(n_sweep // 50, 1))
            rec = {"I_f": _interp(grid_l, lam, i_f).tolist(), "I_b": _interp(grid_l, lam, i_b).tolist(),
                   "H": _interp(grid_l, lam[1:], hf).tolist(), "V": _interp(grid_l, lam[1:], vf).tolist()}
            journal.record(key, rec, sim)
        rec = journal.data[key]
        i_f, i_b = np.asarray(rec["I_f"]), np.asarray(rec["I_b"])
        kt = KB_EV_PER_K * grid_t
        g = g0_per_atom / grid_l + 1.5 * kt * np.log(grid_l) + (i_f + i_b) / (2 * n * grid_l)
        curves.append(g)
        diss.append((i_f - i_b) / (2 * n * grid_l))
        h_f.append(rec["H"])
        v_f.append(rec["V"])
    gc = np.asarray(curves)
    sem = gc.std(0, ddof=1) / math.sqrt(len(gc)) if len(gc) > 1 else np.zeros(n_grid)
    return {"T": grid_t.tolist(), "G_per_atom": gc.mean(0).tolist(), "G_sem_per_atom": sem.tolist(),
            "G_cycles": gc.tolist(), "dissipation_per_atom": np.mean(diss, 0).tolist(),
            "max_dissipation_per_atom": float(np.max(np.abs(np.mean(diss, 0)))),
            "H_per_atom": np.mean(h_f, 0).tolist(), "V_per_atom": np.mean(v_f, 0).tolist(),
            "t0": t0, "t1": t1, "pressure_bar": pressure_bar, "n_cycles": n_cycles, "n_atoms": n}


def pressure_sweep(state: State, potential: Any, temperature: float, p0: float, p1: float, n_eq: int, n_sweep: int,
                   g0_per_atom: float, n_grid: int = 51, dt: float = 2.0, tau: float = 100.0, tau_p: float = 1000.0,
                   compressibility: float = 1e-5, barostat_mode: str = "isotropic", seed: int = 0) -> dict[str, Any]:
    """G(P)/N = G(P₀)/N + ∫_{P₀}^{P} ⟨V⟩/N dP′ (eV) at fixed T on a grid from ``p0`` to ``p1`` (bar),
    the target pressure ramped linearly forward and back; returns P, G, the hysteresis."""
    n = state.n_atoms
    sim, integ = _sim(state, potential, temperature, dt, tau, seed, pressure_bar=p0, tau_p=tau_p,
                      compressibility=compressibility, barostat_mode=barostat_mode)
    baro = sim.integrator.inner.barostat
    sim.run(n_eq)

    def leg(ps: np.ndarray) -> np.ndarray:
        vols = []
        for p in ps[1:]:
            baro.pressure = float(p)
            sim.run(1)
            vols.append(float(sim.state.volume))
        v = np.asarray(vols) / n
        return np.concatenate([[0.0], np.cumsum(np.diff(ps) * BAR_TO_EV_PER_A3 * v)])

    ps = np.linspace(p0, p1, n_sweep + 1)
    i_f = leg(ps)
    sim.run(n_eq)
    wb = leg(ps[::-1].copy())
    i_b = (wb - wb[-1])[::-1]
    grid = np.linspace(p0, p1, n_grid)
    fi, bi = _interp(grid, ps, i_f), _interp(grid, ps, i_b)
    return {"P": grid.tolist(), "G_per_atom": (g0_per_atom + (fi + bi) / 2).tolist(),
            "hysteresis_per_atom": ((fi - bi) / 2).tolist(), "temperature": temperature}


__all__ = ["equilibrate_npt", "spring_constants", "switching_cycles", "einstein_to_einstein", "frenkel_ladd",
           "uf_liquid", "reversible_scaling", "pressure_sweep", "bragg_vector", "bragg_order", "structure_monitor",
           "StructureError", "Journal", "scale_to_cell"]
