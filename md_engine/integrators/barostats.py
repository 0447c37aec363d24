"""Stochastic cell rescaling (Bernetti & Bussi, JCP 153, 114107 (2020)), for fully periodic systems:
isotropic (:class:`IsotropicSCR`, ε = ln V) and anisotropic (:class:`AnisotropicSCR`, the three
Cartesian strains ε_α = ln(L_α/L_α⁰)), sharing one Euler–Maruyama step (:meth:`_SCR._strain_step`):

    Δε_k = (β_T/(d τ))(P_k − P₀) dt + √(2 k_B T β_T dt/(d V τ)) R_k,   d = 1 (isotropic) or 3,

with P_k the pressure (isotropic, P = (2K + tr W)/(3V)) or the diagonal pressure-tensor components
(anisotropic, P_αα = (2K_αα + W_αα)/V) at the start of the step, W the virial (eV). The rescaling is
applied after the last position update of the step, before the new forces (so forces are never
stale); positions and cell scale by e^{Δε/3} (isotropic) or diag(e^{Δε_α}) (anisotropic), velocities
by the inverse. The derivation (why there is no explicit k_BT/V term, the anisotropic measure, the
energy bookkeeping) is in ``docs/theory.md``.

Units: ``pressure`` bar, ``tau`` fs, ``compressibility`` β_T 1/bar (it sets the relaxation rate, not
the volume distribution). The random numbers of step t are ``rng.generator(seed, "barostat", 0, t)``
(the same on every rank). A barostat is combined with a thermostat by
:class:`md_engine.integrators.npt.NPT`, which passes it the time step and k_B T (:meth:`_SCR.setup`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from mlpot.errors import SimulationError
from mlpot.units import BAR_TO_EV_PER_A3, EV_PER_A3_TO_BAR

from md_engine import rng
from md_engine.comm import SERIAL, Comm
from md_engine.observables import kinetic_diagonal, kinetic_energy, pressure, pressure_diagonal
from md_engine.state import State

BAROSTAT_MODES = ("isotropic", "anisotropic")


class _SCR:
    """What both modes share: parameters, the Euler–Maruyama strain step, the energy bookkeeping."""

    mode = ""
    n_strains = 1

    def __init__(self, pressure: float, tau: float = 1000.0, compressibility: float = 4.5e-5,
                 seed: Optional[int] = None) -> None:
        if tau <= 0 or compressibility <= 0:
            raise ValueError("StochasticCellRescaling: tau > 0 fs and compressibility > 0 1/bar")
        self.pressure = float(pressure)
        self.tau = float(tau)
        self.compressibility = float(compressibility)
        self.seed = seed
        self.heat = 0.0  # energy (eV) the barostat took out of the system
        self.dt = 0.0
        self.kt = 0.0
        self.comm: Comm = SERIAL
        self._p = np.zeros(self.n_strains)  # P_k at the start of the step (eV/Å³)
        self._w = np.zeros(self.n_strains)  # the matching virial terms (eV)
        self._deps = np.zeros(self.n_strains)  # Δε_k of the last rescaling

    def setup(self, state: State, comm: Optional[Comm], dt: float, kt: float, seed: int = 0) -> None:
        """Bind to a run: time step ``dt`` (fs), k_B T ``kt`` (eV), the seed if none was given."""
        if not bool(state.pbc.all()):
            raise SimulationError("NPT (stochastic cell rescaling) needs a fully periodic cell (pbc = T T T)")
        self.comm = comm or SERIAL
        self.dt, self.kt = float(dt), float(kt)
        if self.seed is None:
            self.seed = int(seed)

    def normals(self, step: int) -> np.ndarray:
        """The standard normals R_k of ``step`` (n_strains,)."""
        return rng.generator(int(self.seed or 0), "barostat", 0, step).standard_normal(self.n_strains)

    def _strain_step(self, state: State) -> np.ndarray:
        """Δε_k (n_strains,) by the Euler–Maruyama step of the module docstring."""
        d = self.n_strains
        v = float(state.volume)
        beta = self.compressibility * EV_PER_A3_TO_BAR  # Å³/eV
        p0 = self.pressure * BAR_TO_EV_PER_A3
        drift = beta / (d * self.tau) * self.dt
        noise = math.sqrt(2 * self.kt * beta * self.dt / (d * v * self.tau))
        return drift * (self._p - p0) + noise * self.normals(state.step)

    def measure(self, state: State) -> None:
        raise NotImplementedError

    def rescale(self, state: State) -> None:
        raise NotImplementedError

    def after_forces(self, state: State) -> None:
        """Complete the potential-energy bookkeeping of the last rescaling with the new virial:
        ΔU ≈ −Σ_k (W_k,before + W_k,after)/2 · Δε_k (trapezoid; dU/dε_k = −W_k)."""
        self.heat += 0.5 * float(np.dot(self._virial_terms(state), self._deps))
        self._deps = np.zeros(self.n_strains)

    def _virial_terms(self, state: State) -> np.ndarray:
        raise NotImplementedError

    def conserved_extra(self, state: State) -> float:
        return self.pressure * BAR_TO_EV_PER_A3 * float(state.volume) + self.heat

    def state_dict(self) -> dict[str, Any]:
        return {"heat": self.heat, "pressure": self.pressure, "tau": self.tau, "compressibility": self.compressibility,
                "mode": self.mode}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        mode = d.get("mode", "isotropic")
        if mode != self.mode:
            raise SimulationError(f"checkpoint written with barostat mode {mode!r}, restarting with {self.mode!r} "
                                  "(barostat_mode must match the checkpoint)")
        self.heat = float(d.get("heat", 0.0))


class IsotropicSCR(_SCR):
    """Isotropic stochastic cell rescaling: ε = ln V, positions and cell × e^{Δε/3}, velocities ×
    e^{−Δε/3}. Bookkeeping: heat −= ΔK + P₀ΔV − (tr W_before + tr W_after)/6 · Δε."""

    mode = "isotropic"
    n_strains = 1

    def measure(self, state: State) -> None:
        """Record P (eV/Å³) and tr W/3 at the start of the step."""
        self._p = np.array([float(pressure(state, self.comm))])
        self._w = np.array([float(torch.trace(state.virial)) / 3])

    def _virial_terms(self, state: State) -> np.ndarray:
        return np.array([float(torch.trace(state.virial)) / 3])

    def rescale(self, state: State) -> None:
        deps = self._strain_step(state)
        v = float(state.volume)
        mu = math.exp(float(deps[0]) / 3)
        k0 = float(kinetic_energy(state, self.comm))
        n = state.n_local
        state.positions[:n] *= mu
        state.velocities[:n] /= mu
        state.cell.mul_(mu)
        k1 = k0 / (mu * mu)
        v1 = v * math.exp(float(deps[0]))
        p0 = self.pressure * BAR_TO_EV_PER_A3
        self.heat -= (k1 - k0) + p0 * (v1 - v) - 0.5 * float(np.dot(self._w, deps))
        self._deps = deps


class AnisotropicSCR(_SCR):
    """Anisotropic stochastic cell rescaling: the three Cartesian box lengths fluctuate independently,
    each driven by its diagonal pressure-tensor component. The affine map F = diag(μ), μ_α = e^{Δε_α}:
    r ← r·diag(μ), cell ← cell·diag(μ), v ← v·diag(μ)⁻¹ (fractional coordinates unchanged, valid for
    any cell; shear strains are not sampled). For solids and anisotropic materials (a liquid's box
    shape random-walks). Bookkeeping: heat −= ΔK + P₀ΔV − Σ_α (W_αα,before + W_αα,after)/2 · Δε_α."""

    mode = "anisotropic"
    n_strains = 3

    def measure(self, state: State) -> None:
        """Record P_αα (eV/Å³) and W_αα at the start of the step."""
        self._p = pressure_diagonal(state, self.comm).detach().cpu().double().numpy()
        self._w = torch.diagonal(state.virial).detach().cpu().double().numpy()

    def _virial_terms(self, state: State) -> np.ndarray:
        return torch.diagonal(state.virial).detach().cpu().double().numpy()

    def rescale(self, state: State) -> None:
        deps = self._strain_step(state)
        v = float(state.volume)
        mu = np.exp(deps)
        k0 = kinetic_diagonal(state, self.comm).detach().cpu().double().numpy()
        mu_t = torch.tensor(mu, dtype=state.dtype, device=state.device)
        n = state.n_local
        state.positions[:n] *= mu_t  # r @ diag(mu)
        state.velocities[:n] /= mu_t
        state.cell.mul_(mu_t)  # cell @ diag(mu): column α of every lattice vector scaled by mu_α
        dk = float(np.sum(k0 / (mu * mu) - k0))
        v1 = v * math.exp(float(np.sum(deps)))
        p0 = self.pressure * BAR_TO_EV_PER_A3
        self.heat -= dk + p0 * (v1 - v) - 0.5 * float(np.dot(self._w, deps))
        self._deps = deps


def StochasticCellRescaling(pressure: float, tau: float = 1000.0, compressibility: float = 4.5e-5,
                            seed: Optional[int] = None, mode: str = "isotropic") -> _SCR:
    """The stochastic cell rescaling barostat of ``mode`` (``"isotropic"`` or ``"anisotropic"``)."""
    if mode not in BAROSTAT_MODES:
        raise ValueError(f"StochasticCellRescaling: mode must be one of {BAROSTAT_MODES}, got {mode!r}")
    cls = IsotropicSCR if mode == "isotropic" else AnisotropicSCR
    return cls(pressure, tau=tau, compressibility=compressibility, seed=seed)


Barostat = _SCR

__all__ = ["IsotropicSCR", "AnisotropicSCR", "StochasticCellRescaling", "Barostat", "BAROSTAT_MODES"]
