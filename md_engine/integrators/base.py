"""The integrator interface, the velocity-Verlet building blocks and the registry of ensembles.

An :class:`Integrator` has ``dt`` (fs), ``dof`` (degrees of freedom, set by :meth:`Integrator.setup`),
``setup(state, comm)``, ``step(state, compute)`` — ``compute(state)`` evaluates the potential at the
current positions/cell and stores ``state.energy``, ``state.forces``, ``state.virial`` (neighbor list,
domain exchange and error checks live behind it) —, ``conserved_extra(state)`` (eV, added to U + K for
the conserved quantity) and ``state_dict()`` / ``load_state_dict()`` (thermostat variables, for exact
restarts). Random numbers come from the keyed scheme of :mod:`md_engine.rng`, keyed by the seed, the
stream and ``state.step``: there is no generator state to save, and a restart on any number of ranks
continues the same streams.

``INTEGRATORS`` maps each ``ensemble`` name of the MD input to a builder ``(cfg: MDConfig) ->
Integrator`` (registered next to the integrator it builds); ``meta["requires"]`` names the input keys
the ensemble needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from mlpot.registry import Registry
from mlpot.units import FORCE_TO_ACC, KB_EV_PER_K

from md_engine.comm import SERIAL, Comm
from md_engine.observables import degrees_of_freedom
from md_engine.state import State

if TYPE_CHECKING:
    from md_engine.config import MDConfig

ComputeFn = Callable[[State], None]

#: ensemble name (MD input ``ensemble``) → builder ``(cfg) -> Integrator``
INTEGRATORS: Registry[Callable[["MDConfig"], "Integrator"]] = Registry("ensemble")


def kick(state: State, dt: float) -> None:
    """v += dt · F/m (Å/fs), owned atoms."""
    n = state.n_local
    state.velocities[:n] += (dt * FORCE_TO_ACC) * state.forces[:n] / state.masses[:n, None]


def drift(state: State, dt: float) -> None:
    """x += dt · v (Å), owned atoms."""
    n = state.n_local
    state.positions[:n] += dt * state.velocities[:n]


class Integrator:
    """Base class: time step, seed, communicator, degrees of freedom (see the module docstring)."""

    def __init__(self, dt: float, seed: int = 0) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be > 0 fs, got {dt}")
        self.dt = float(dt)
        self.seed = int(seed)
        self.comm: Comm = SERIAL
        self.dof = 0

    def setup(self, state: State, comm: Optional[Comm] = None) -> None:
        """Bind to the communicator and count the degrees of freedom (3N − 3)."""
        self.comm = comm or SERIAL
        self.dof = degrees_of_freedom(state, self.comm)

    def step(self, state: State, compute: ComputeFn) -> None:
        """Advance ``state`` by one time step ``dt``; ``compute(state)`` evaluates the forces at the
        current positions/cell into ``state`` (call it exactly once per step). ``state.step`` is the
        index of the step being taken (it keys the random numbers)."""
        raise NotImplementedError

    def conserved_extra(self, state: State) -> float:
        """Energy (eV) added to U + K for the conserved quantity (thermostat heat, chain energy, P₀V)."""
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        """The integrator's variables for a checkpoint (tensors, numbers, strings)."""
        return {"dt": self.dt, "seed": self.seed}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore the variables of :meth:`state_dict` (after :meth:`setup`)."""


class Thermostat(Integrator):
    """An integrator at temperature ``temperature`` (K) with time constant ``tau`` (fs); ``heat``:
    energy (eV, a 0-d float64 tensor on the state's device) taken out of the system."""

    def __init__(self, dt: float, temperature: float, tau: float, seed: int = 0) -> None:
        super().__init__(dt, seed)
        if temperature < 0 or tau <= 0:
            raise ValueError(f"need temperature ≥ 0 K and tau > 0 fs, got {temperature}, {tau}")
        self.temperature = float(temperature)
        self.tau = float(tau)
        self.heat = torch.zeros((), dtype=torch.float64)

    def setup(self, state: State, comm: Optional[Comm] = None) -> None:
        super().setup(state, comm)
        self.heat = self.heat.to(state.device)

    @property
    def kt(self) -> float:
        """k_B T (eV)."""
        return KB_EV_PER_K * self.temperature

    def conserved_extra(self, state: State) -> float:
        return float(self.heat)

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["heat"] = float(self.heat)
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        self.heat = torch.full_like(self.heat, float(d.get("heat", 0.0)))


__all__ = ["Integrator", "Thermostat", "ComputeFn", "INTEGRATORS", "kick", "drift"]
