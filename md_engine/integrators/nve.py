"""NVE: velocity Verlet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from md_engine.integrators.base import INTEGRATORS, ComputeFn, Integrator, drift, kick
from md_engine.state import State

if TYPE_CHECKING:
    from md_engine.config import MDConfig


class VelocityVerlet(Integrator):
    """NVE: kick(dt/2) · drift(dt) · forces · kick(dt/2)."""

    def step(self, state: State, compute: ComputeFn) -> None:
        kick(state, 0.5 * self.dt)
        drift(state, self.dt)
        compute(state)
        kick(state, 0.5 * self.dt)


@INTEGRATORS.register("nve", requires=())
def _build_nve(cfg: "MDConfig") -> VelocityVerlet:
    return VelocityVerlet(cfg.dt, seed=cfg.seed)


__all__ = ["VelocityVerlet"]
