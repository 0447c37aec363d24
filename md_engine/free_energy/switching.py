"""Nonequilibrium switching on md_engine: λ driven along a schedule while the work is recorded.

**Discrete work.** A leg of n steps drives the λ of a :class:`~md_engine.potentials.coupled.CoupledPotential`
through λ_0 … λ_n (one value per force evaluation). In step t the positions move x_t → x_{t+1} under
H(λ_t); then λ jumps to λ_{t+1} at fixed x_{t+1} and the forces are evaluated there. The work of the
jump is H(λ_{t+1}, x_{t+1}) − H(λ_t, x_{t+1}) = [f(λ_{t+1}) − f(λ_t)] ΔU(x_{t+1}), ΔU = U_B − U_A, so
W = Σ_t [f(λ_{t+1}) − f(λ_t)] ΔU(x_{t+1}) exactly (the Jarzynski/Crooks work of the discrete
protocol; its trapezoid limit is ∫ ⟨dU/dλ⟩ dλ). Under a barostat (reversible scaling) the
Hamiltonian also holds λ P₀ V and the increment uses U + P₀V.

**Forward/backward estimate** (Freitas, Asta & de Koning, Comput. Mater. Sci. 112, 333 (2016)):
with W_f the work of A → B and W_b of B → A, ΔF_{A→B} = (W_f − W_b)/2 and the dissipated energy
E_d = (W_f + W_b)/2 ≥ 0 (both → the reversible values as the switching time grows; for a linear
response E_d ∝ 1/t_s).

**Thermostat and centre of mass.** Langevin (BAOAB) with the centre-of-mass momentum projected out
of the noise (``Langevin(fixed_com=True)``) and the net force projected out of the forces
(F_i ← F_i − (m_i/M) Σ_j F_j, the constraint force of a fixed centre of mass: needed when the
springs do not scale with the masses): the dynamics samples e^{−βH} δ(R − R₀), as the COM
correction of :mod:`md_engine.free_energy.references` assumes.

Units: eV, Å, fs, K, bar; works are totals (eV) unless named ``per_atom``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from mlpot.units import BAR_TO_EV_PER_A3

from md_engine.integrators.base import ComputeFn, Integrator
from md_engine.potentials.coupled import CoupledPotential, switch_value
from md_engine.state import State


def lambda_polynomial(tau: float | np.ndarray) -> float | np.ndarray:
    """λ(τ) = τ⁵(70τ⁴ − 315τ³ + 540τ² − 420τ + 126), τ = t/t_s ∈ [0, 1] (de Koning & Antonelli,
    PRE 53, 465 (1996)); dλ/dτ = 630 τ⁴(1 − τ)⁴ vanishes at both ends."""
    t = np.asarray(tau, dtype=np.float64)
    out = t**5 * (70 * t**4 - 315 * t**3 + 540 * t**2 - 420 * t + 126)
    return float(out) if out.ndim == 0 else out


def lambda_polynomial_slope(tau: float | np.ndarray) -> float | np.ndarray:
    """dλ/dτ = 630 τ⁴(1 − τ)⁴."""
    t = np.asarray(tau, dtype=np.float64)
    out = 630 * t**4 * (1 - t) ** 4
    return float(out) if out.ndim == 0 else out


class ScheduledIntegrator(Integrator):
    """Wraps ``inner`` (Langevin, or NPT with a Langevin thermostat): before every force evaluation it
    sets ``potential.lam`` from the current schedule (and, with ``pressure_bar`` and an NPT ``inner``,
    the barostat target to λ·P₀), after it removes the net force (``fixed_com``) and records ΔU and V.

    The schedule of a leg is set by :meth:`start_leg`; between legs (``schedule`` None) λ stays fixed
    and nothing is recorded."""

    def __init__(self, inner: Integrator, potential: CoupledPotential, fixed_com: bool = True,
                 pressure_bar: Optional[float] = None) -> None:
        super().__init__(inner.dt, inner.seed)
        self.inner = inner
        self.potential = potential
        self.fixed_com = fixed_com
        self.pressure_bar = pressure_bar
        self.schedule: Optional[np.ndarray] = None
        self._k = 0
        self._du: list[torch.Tensor] = []
        self._vol: list[torch.Tensor] = []

    @property
    def kt(self) -> float:
        return self.inner.kt  # type: ignore[attr-defined]

    def setup(self, state: State, comm: Any = None) -> None:
        self.inner.setup(state, comm)
        self.comm, self.dof = self.inner.comm, self.inner.dof

    def _set_lambda(self, lam: float) -> None:
        self.potential.lam = float(lam)
        baro = getattr(self.inner, "barostat", None)
        if baro is not None and self.pressure_bar is not None:
            baro.pressure = float(lam) * self.pressure_bar

    def start_leg(self, lambdas: np.ndarray) -> None:
        """Drive λ through ``lambdas`` (n + 1 values; λ_0 is set now, λ_{t+1} before the force call of
        step t) and record ΔU and V at each of the n evaluations."""
        self.schedule = np.asarray(lambdas, dtype=np.float64)
        self._k = 0
        self._du, self._vol = [], []
        self._set_lambda(self.schedule[0])

    def end_leg(self) -> tuple[np.ndarray, np.ndarray]:
        """(ΔU (n,) eV, V (n,) Å³) recorded since :meth:`start_leg`; λ stays at its last value."""
        self.schedule = None
        du = torch.stack(self._du).double().cpu().numpy() if self._du else np.zeros(0)
        vol = torch.stack(self._vol).double().cpu().numpy() if self._vol else np.zeros(0)
        return du, vol

    def step(self, state: State, compute: ComputeFn) -> None:
        def scheduled(s: State) -> None:
            if self.schedule is not None:
                self._k += 1
                self._set_lambda(self.schedule[min(self._k, len(self.schedule) - 1)])
            compute(s)
            if self.fixed_com:
                n = s.n_local
                m = s.masses[:n]
                s.forces = s.forces - m[:, None] / m.sum() * s.forces[:n].sum(0)
            if self.schedule is not None:
                self._du.append((s.outputs["U_B"] - s.outputs["U_A"]).detach())
                self._vol.append(s.volume.detach())

        self.inner.step(state, scheduled)

    def conserved_extra(self, state: State) -> float:
        return self.inner.conserved_extra(state)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "lam": float(self.potential.lam)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.inner.load_state_dict(d["inner"])
        self._set_lambda(float(d.get("lam", self.potential.lam)))


def leg_work(lambdas: np.ndarray, du: np.ndarray, switch: str, pv: Optional[np.ndarray] = None) -> np.ndarray:
    """Cumulative discrete work (n,) eV of a leg (module docstring): W_k = Σ_{t<k+1} Δf_t (ΔU + P₀V)_{t+1}."""
    f = np.array([switch_value(x, switch) for x in lambdas])
    h = du if pv is None else du + pv
    return np.cumsum(np.diff(f) * h)


@dataclass
class LegResult:
    """One switching leg: λ values (n + 1), ΔU (n) eV, V (n) Å³ and the cumulative work (n) eV."""

    lambdas: np.ndarray
    du: np.ndarray
    volume: np.ndarray
    work: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(self.work[-1]) if self.work.size else 0.0


def run_leg(sim: Any, integ: ScheduledIntegrator, lambdas: np.ndarray, pressure_ev: Optional[float] = None,
            monitor: Optional[Callable[[Any], None]] = None, monitor_every: int = 0) -> LegResult:
    """Run one leg of ``len(lambdas) − 1`` steps on ``sim`` (whose integrator is ``integ``); with
    ``pressure_ev`` (P₀ in eV/Å³) the work integrand is ΔU + P₀V. ``monitor(sim)`` is called every
    ``monitor_every`` steps (a structural check that may raise)."""
    n = len(lambdas) - 1
    integ.start_leg(lambdas)
    if monitor is not None and monitor_every > 0:
        done = 0
        while done < n:
            k = min(monitor_every, n - done)
            sim.run(k)
            done += k
            monitor(sim)
    else:
        sim.run(n)
    du, vol = integ.end_leg()
    pv = None if pressure_ev is None else pressure_ev * vol
    work = leg_work(lambdas, du, integ.potential.switch, pv)
    return LegResult(np.asarray(lambdas), du, vol, work)


def forward_backward(w_forward: Sequence[float], w_backward: Sequence[float]) -> dict[str, float]:
    """ΔF = mean((W_f − W_b)/2), dissipation mean((W_f + W_b)/2) and the standard errors over cycles
    (eV, totals); one cycle gives error 0 (state it)."""
    wf, wb = np.asarray(w_forward, float), np.asarray(w_backward, float)
    df = (wf - wb) / 2
    ed = (wf + wb) / 2
    n = len(df)
    sem = float(df.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"delta_F": float(df.mean()), "delta_F_sem": sem, "dissipation": float(ed.mean()),
            "dissipation_sem": float(ed.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0, "n_cycles": n}


__all__ = ["lambda_polynomial", "lambda_polynomial_slope", "ScheduledIntegrator", "leg_work", "LegResult", "run_leg",
           "forward_backward"]
