"""Thermostats (NVT): Langevin (BAOAB), CSVR (Bussi–Donadio–Parrinello) and Nosé–Hoover chains.

Units: dt and tau in fs, temperature K; internally eV, Å, fs, amu.

* :class:`Langevin` — BAOAB splitting (Leimkuhler & Matthews, Appl. Math. Res. Express 2013); the
  noise of an atom is keyed by (seed, step, global id) (:func:`md_engine.rng.atom_normals`): O(local
  atoms) per rank and independent of the decomposition.
* :class:`CSVR` — Bussi, Donadio & Parrinello (JCP 126, 014101 (2007)): exact resampling of K over
  dt/2 on both sides of a velocity-Verlet step, from two random numbers (one normal R₁ and
  Σ_{i≥2} R_i² as one χ²(N_f − 1) variate) that every rank draws alike from the keyed RNG;
  conserved "effective energy" = U + K − Σ ΔK_thermostat.
* :class:`NoseHooverChain` — Martyna, Tuckerman & Klein (Mol. Phys. 87, 1117 (1996)) chain with
  Suzuki–Yoshida factorisation; conserved H = U + K + Σ Q_k v_ξk²/2 + N_f kT ξ_1 + kT Σ_{k≥2} ξ_k.

Each takes a barostat through :class:`md_engine.integrators.npt.NPT` (composition).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import torch

from mlpot.units import FORCE_TO_ACC

from md_engine import rng
from md_engine.comm import Comm
from md_engine.integrators.base import INTEGRATORS, ComputeFn, Thermostat, drift, kick
from md_engine.observables import degrees_of_freedom, kinetic_energy, remove_com_velocity
from md_engine.state import State

if TYPE_CHECKING:
    from md_engine.config import MDConfig


class Langevin(Thermostat):
    """Langevin dynamics, BAOAB splitting; friction γ = 1/tau (1/fs).

    O step: v ← c₁ v + √((1 − c₁²) k_B T/m) R, c₁ = e^{−γ dt}. With ``fixed_com`` (default) the
    centre-of-mass velocity is projected out after the O step, so the total momentum stays zero and
    the kinetic energy samples the canonical distribution of 3N − 3 degrees of freedom.

    The noise R of an atom is a counter-based function of (seed, step, global id) (Philox,
    :func:`md_engine.rng.atom_normals`): each rank computes it for its owned atoms only, and a run on
    P ranks follows the same trajectory as on 1 rank (up to floating-point summation order); a
    checkpoint written on P ranks continues identically on Q.
    """

    def __init__(self, dt: float, temperature: float, tau: float = 100.0, seed: int = 0, fixed_com: bool = True) -> None:
        super().__init__(dt, temperature, tau, seed)
        self.fixed_com = fixed_com

    def setup(self, state: State, comm: Optional[Comm] = None) -> None:
        super().setup(state, comm)
        self.dof = degrees_of_freedom(state, self.comm, fixed_com=self.fixed_com)

    def _o_step(self, state: State) -> None:
        n = state.n_local
        c1 = math.exp(-self.dt / self.tau)
        k0 = kinetic_energy(state, self.comm)
        sigma = torch.sqrt((1 - c1 * c1) * self.kt * FORCE_TO_ACC / state.masses[:n])
        noise = rng.atom_normals(self.seed, "langevin", state.step, state.ids[:n], dtype=state.dtype)
        state.velocities[:n] = c1 * state.velocities[:n] + sigma[:, None] * noise
        if self.fixed_com:
            remove_com_velocity(state, self.comm)
        self.heat = self.heat - (kinetic_energy(state, self.comm) - k0).to(torch.float64)

    def step(self, state: State, compute: ComputeFn) -> None:
        kick(state, 0.5 * self.dt)
        drift(state, 0.5 * self.dt)
        self._o_step(state)
        drift(state, 0.5 * self.dt)
        compute(state)
        kick(state, 0.5 * self.dt)


class CSVR(Thermostat):
    """Canonical sampling through velocity rescaling (Bussi–Donadio–Parrinello), time constant tau (fs).

    Around a velocity-Verlet step, the kinetic energy is resampled over dt/2 by the exact solution of
    dK = (K̄ − K) dt/τ + 2√(K K̄/N_f) dW/√τ (K̄ = N_f k_B T/2):
    K' = c K + (1−c) K̄/N_f (R₁² + S) + 2 R₁ √(c(1−c) K K̄/N_f), c = e^{−dt/(2τ)}, with R₁ standard
    normal and S = Σ_{i=2}^{N_f} R_i² drawn directly as a χ²(N_f − 1) variate (Bussi et al.,
    appendix). The two numbers of half step h ∈ {0, 1} of step t come from
    ``rng.generator(seed, "csvr", 0, t, h)``: the same on every rank, no communication. The
    rescaling factor stays on the device (no host synchronisation).
    """

    def __init__(self, dt: float, temperature: float, tau: float = 100.0, seed: int = 0) -> None:
        super().__init__(dt, temperature, tau, seed)

    def _draw(self, step: int, half: int) -> tuple[float, float]:
        """(R₁, S) for half step ``half`` of ``step``."""
        g = rng.generator(self.seed, "csvr", 0, step, half)
        r1 = float(g.standard_normal())
        s = float(g.chisquare(self.dof - 1)) if self.dof > 1 else 0.0
        return r1, s

    def _resample(self, state: State, t: float, half: int) -> None:
        nf = self.dof
        if nf <= 0:
            return
        r1, s = self._draw(state.step, half)
        kbar = 0.5 * nf * self.kt
        c = math.exp(-t / self.tau)
        # α² = K'/K = c + a/K + b/√K (host constants a, b; K stays on the device)
        a = (1 - c) * kbar / nf * (r1 * r1 + s)
        b = 2 * r1 * math.sqrt(c * (1 - c) * kbar / nf)
        k = kinetic_energy(state, self.comm).to(torch.float64)
        x = torch.rsqrt(torch.clamp(k, min=1e-300))  # K = 0: all velocities zero, any finite α does
        alpha2 = torch.clamp((a * x + b) * x + c, min=0.0)
        alpha = torch.sqrt(alpha2)
        if r1 < 0 and kbar > 0 and c < 1:  # sign(R₁ + √(c N_f K/((1−c) K̄))): negative iff K < K* = ((1−c) K̄ R₁²)/(c N_f)
            alpha = torch.where(k < (1 - c) * kbar * r1 * r1 / (c * nf), -alpha, alpha)
        state.velocities[: state.n_local] *= alpha.to(state.dtype)
        self.heat = self.heat - (alpha2 - 1.0) * k

    def step(self, state: State, compute: ComputeFn) -> None:
        self._resample(state, 0.5 * self.dt, 0)
        kick(state, 0.5 * self.dt)
        drift(state, self.dt)
        compute(state)
        kick(state, 0.5 * self.dt)
        self._resample(state, 0.5 * self.dt, 1)


_SUZUKI_YOSHIDA = {
    1: [1.0],
    3: [1 / (2 - 2 ** (1 / 3)), 1 - 2 / (2 - 2 ** (1 / 3)), 1 / (2 - 2 ** (1 / 3))],
    5: [1 / (4 - 4 ** (1 / 3))] * 2 + [1 - 4 / (4 - 4 ** (1 / 3))] + [1 / (4 - 4 ** (1 / 3))] * 2,
}


class NoseHooverChain(Thermostat):
    """Nosé–Hoover chain of ``chain`` thermostats (MTK 1996), masses Q₁ = N_f k_B T τ², Q_k = k_B T τ².

    The chain is propagated over dt/2 before and after a velocity-Verlet step with ``n_respa``
    sub-steps and a Suzuki–Yoshida factorisation of order ``n_sy`` (1, 3 or 5). Deterministic; the
    chain state (ξ, v_ξ) is small and kept on the host in float64.
    """

    def __init__(self, dt: float, temperature: float, tau: float = 100.0, chain: int = 3, n_respa: int = 1,
                 n_sy: int = 3, seed: int = 0) -> None:
        super().__init__(dt, temperature, tau, seed)
        if chain < 1 or n_sy not in _SUZUKI_YOSHIDA or n_respa < 1:
            raise ValueError("NoseHooverChain: chain ≥ 1, n_respa ≥ 1, n_sy in {1, 3, 5}")
        self.chain = chain
        self.n_respa = n_respa
        self.n_sy = n_sy
        self.xi = [0.0] * chain
        self.v_xi = [0.0] * chain

    def _masses(self) -> list[float]:
        q = [self.kt * self.tau**2] * self.chain
        q[0] *= self.dof
        return q

    def _half_chain(self, state: State) -> None:
        """Propagate the chain and scale velocities over dt/2."""
        q = self._masses()
        nf, kt, m = self.dof, self.kt, self.chain
        k2 = 2.0 * float(kinetic_energy(state, self.comm))  # 2K
        scale = 1.0
        v, xi = self.v_xi, self.xi

        def g(k: int, k2_now: float) -> float:
            return (k2_now - nf * kt) / q[0] if k == 0 else (q[k - 1] * v[k - 1] ** 2 - kt) / q[k]

        for _ in range(self.n_respa):
            for w in _SUZUKI_YOSHIDA[self.n_sy]:
                h = w * 0.5 * self.dt / self.n_respa
                v[m - 1] += 0.5 * h * g(m - 1, k2)
                for k in range(m - 2, -1, -1):
                    s = math.exp(-0.25 * h * v[k + 1])
                    v[k] = s * (s * v[k] + 0.5 * h * g(k, k2))
                f = math.exp(-h * v[0])
                scale *= f
                k2 *= f * f
                for k in range(m):
                    xi[k] += h * v[k]
                for k in range(m - 1):
                    s = math.exp(-0.25 * h * v[k + 1])
                    v[k] = s * (s * v[k] + 0.5 * h * g(k, k2))
                v[m - 1] += 0.5 * h * g(m - 1, k2)
        state.velocities[: state.n_local] *= scale

    def conserved_extra(self, state: State) -> float:
        q = self._masses()
        e = sum(0.5 * qk * vk * vk for qk, vk in zip(q, self.v_xi))
        return e + self.dof * self.kt * self.xi[0] + self.kt * sum(self.xi[1:])

    def step(self, state: State, compute: ComputeFn) -> None:
        self._half_chain(state)
        kick(state, 0.5 * self.dt)
        drift(state, self.dt)
        compute(state)
        kick(state, 0.5 * self.dt)
        self._half_chain(state)

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["xi"] = torch.tensor(self.xi, dtype=torch.float64)
        d["v_xi"] = torch.tensor(self.v_xi, dtype=torch.float64)
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        if "xi" in d:
            self.xi = [float(x) for x in d["xi"]]
            self.v_xi = [float(x) for x in d["v_xi"]]


@INTEGRATORS.register("nvt-langevin", requires=("temperature",))
def _build_langevin(cfg: "MDConfig") -> Langevin:
    return Langevin(cfg.dt, cfg.temperature, tau=cfg.tau_t, seed=cfg.seed)


@INTEGRATORS.register("nvt-csvr", requires=("temperature",))
def _build_csvr(cfg: "MDConfig") -> CSVR:
    return CSVR(cfg.dt, cfg.temperature, tau=cfg.tau_t, seed=cfg.seed)


@INTEGRATORS.register("nvt-nh", requires=("temperature",))
def _build_nhc(cfg: "MDConfig") -> "NoseHooverChain":
    return NoseHooverChain(cfg.dt, cfg.temperature, tau=cfg.tau_t, chain=cfg.nh_chain)


#: thermostats by the name the NPT input uses (``npt_thermostat``)
THERMOSTATS: dict[str, Any] = {"csvr": _build_csvr, "langevin": _build_langevin, "nh": _build_nhc}

__all__ = ["Langevin", "CSVR", "NoseHooverChain", "THERMOSTATS"]
