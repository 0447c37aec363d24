"""Integrators and ensembles (see :mod:`md_engine.integrators.base` for the interface).

* :mod:`~md_engine.integrators.nve` — :class:`VelocityVerlet` (NVE);
* :mod:`~md_engine.integrators.thermostats` — :class:`Langevin`, :class:`CSVR`, :class:`NoseHooverChain`;
* :mod:`~md_engine.integrators.barostats` — isotropic/anisotropic stochastic cell rescaling;
* :mod:`~md_engine.integrators.npt` — :class:`NPT`, a thermostat composed with a barostat.

``INTEGRATORS`` maps the MD input's ``ensemble`` names to builders ``(cfg: MDConfig) -> Integrator``.
Every module of this package is imported with it, so a new integrator is ONE new file here that
defines it and registers its builder (``@INTEGRATORS.register("name", requires=("temperature",))``);
the MD input's ``ensemble: name`` then selects it with no other edit.
"""

import importlib
import pkgutil

from md_engine.integrators.base import INTEGRATORS, ComputeFn, Integrator, Thermostat, drift, kick
from md_engine.integrators.nve import VelocityVerlet
from md_engine.integrators.thermostats import CSVR, Langevin, NoseHooverChain
from md_engine.integrators.barostats import AnisotropicSCR, IsotropicSCR, StochasticCellRescaling
from md_engine.integrators.npt import NPT

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["INTEGRATORS", "ComputeFn", "Integrator", "Thermostat", "drift", "kick", "VelocityVerlet", "CSVR",
           "Langevin", "NoseHooverChain", "AnisotropicSCR", "IsotropicSCR", "StochasticCellRescaling", "NPT"]
