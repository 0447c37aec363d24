"""NPT = a thermostat composed with a barostat (no back-references between the two).

:class:`NPT` wraps the force call of the thermostat's step: the barostat measures the pressure at the
start of the step, rescales the box after the thermostat's last position update (just before the new
forces) and completes its energy bookkeeping with the new virial. Any :class:`Thermostat` (CSVR,
Langevin, Nosé–Hoover chain) combines with any barostat of :mod:`md_engine.integrators.barostats`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from md_engine.comm import Comm
from md_engine.integrators.barostats import StochasticCellRescaling, _SCR
from md_engine.integrators.base import INTEGRATORS, ComputeFn, Integrator, Thermostat
from md_engine.integrators.thermostats import THERMOSTATS
from md_engine.state import State

if TYPE_CHECKING:
    from md_engine.config import MDConfig


class NPT(Integrator):
    """``thermostat`` (its dt, temperature and degrees of freedom) with ``barostat`` (which draws from
    the thermostat's seed unless it was given its own)."""

    def __init__(self, thermostat: Thermostat, barostat: _SCR) -> None:
        super().__init__(thermostat.dt, thermostat.seed)
        self.thermostat = thermostat
        self.barostat = barostat

    @property
    def kt(self) -> float:
        return self.thermostat.kt

    def setup(self, state: State, comm: Optional[Comm] = None) -> None:
        self.thermostat.setup(state, comm)
        self.comm, self.dof = self.thermostat.comm, self.thermostat.dof
        self.barostat.setup(state, self.comm, dt=self.thermostat.dt, kt=self.thermostat.kt, seed=self.thermostat.seed)

    def step(self, state: State, compute: ComputeFn) -> None:
        baro = self.barostat

        def rescale_and_compute(s: State) -> None:
            baro.rescale(s)
            compute(s)
            baro.after_forces(s)

        baro.measure(state)
        self.thermostat.step(state, rescale_and_compute)

    def conserved_extra(self, state: State) -> float:
        return self.thermostat.conserved_extra(state) + self.barostat.conserved_extra(state)

    def state_dict(self) -> dict[str, Any]:
        return {"thermostat": self.thermostat.state_dict(), "barostat": self.barostat.state_dict()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.thermostat.load_state_dict(d["thermostat"])
        self.barostat.load_state_dict(d["barostat"])


@INTEGRATORS.register("npt-scr", requires=("temperature", "pressure"))
def _build_npt(cfg: "MDConfig") -> NPT:
    baro = StochasticCellRescaling(cfg.pressure, tau=cfg.tau_p, compressibility=cfg.compressibility, seed=cfg.seed,
                                   mode=cfg.barostat_mode)
    return NPT(THERMOSTATS[cfg.npt_thermostat](cfg), baro)


__all__ = ["NPT"]
