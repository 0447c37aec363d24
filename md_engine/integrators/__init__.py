"""Integrators and ensembles (see :mod:`md_engine.integrators.base` for the interface).

* :mod:`~md_engine.integrators.nve` — :class:`VelocityVerlet` (NVE);
* :mod:`~md_engine.integrators.thermostats` — :class:`Langevin`, :class:`CSVR`, :class:`NoseHooverChain`;
* :mod:`~md_engine.integrators.barostats` — isotropic/anisotropic stochastic cell rescaling;
* :mod:`~md_engine.integrators.npt` — :class:`NPT`, a thermostat composed with a barostat.

``INTEGRATORS`` maps the MD input's ``ensemble`` names to builders; a new integrator is a module that
registers its builder, plus its import line here.
"""

from md_engine.integrators.base import INTEGRATORS, ComputeFn, Integrator, Thermostat, drift, kick
from md_engine.integrators.nve import VelocityVerlet
from md_engine.integrators.thermostats import CSVR, Langevin, NoseHooverChain
from md_engine.integrators.barostats import AnisotropicSCR, IsotropicSCR, StochasticCellRescaling
from md_engine.integrators.npt import NPT

__all__ = ["INTEGRATORS", "ComputeFn", "Integrator", "Thermostat", "drift", "kick", "VelocityVerlet", "CSVR",
           "Langevin", "NoseHooverChain", "AnisotropicSCR", "IsotropicSCR", "StochasticCellRescaling", "NPT"]
