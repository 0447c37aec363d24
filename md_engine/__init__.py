"""md_engine: molecular dynamics for mlpot potentials, state and loop on the device (GPU or CPU),
MPI spatial decomposition across ranks. Units: eV, Å, fs, amu, K, bar.

Python entry point: ``Simulation(state, potential, integrator, reporters).run(nsteps)``, or
``build_simulation(load_config("input.yaml")).run(n)`` (:mod:`md_engine.config`,
:mod:`md_engine.build`); command line: ``mlpot md input.yaml`` (:mod:`mlpot.cli.md`: md_engine defines
no command line of its own).

Layout (one concept per module): ``state`` (State), ``comm`` (communicators), ``observables``
(reductions, thermo observables by name), ``space`` (wrapping, lost atoms), ``structure`` (files →
State), ``rng`` (keyed random numbers), ``potentials/`` (named outputs, the potential registry), ``domain`` (serial and ghost
decompositions), ``integrators/`` (NVE, thermostats, barostats, NPT, the ensemble registry),
``simulation`` (the loop, one force path), ``io`` (reporters), ``checkpoint``, ``config``, ``build``.

Names are imported lazily (so that ``mlpot --help`` does not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "md_engine.state": ["State"],
    "md_engine.comm": ["MPIComm", "world_comm"],
    "md_engine.observables": ["kinetic_energy", "kinetic_tensor", "temperature", "pressure", "pressure_tensor",
                              "degrees_of_freedom", "maxwell_boltzmann", "remove_com_velocity", "OBSERVABLES"],
    "md_engine.potentials": ["Potential", "POTENTIALS", "LennardJones", "MlpotPotential"],
    "mlpot.neighbors": ["VerletList"],
    "md_engine.integrators": ["Integrator", "VelocityVerlet", "Langevin", "NoseHooverChain", "CSVR",
                              "StochasticCellRescaling", "NPT", "INTEGRATORS"],
    "md_engine.io": ["Reporter", "ThermoReporter", "ExtxyzReporter", "H5MDReporter", "CheckpointReporter",
                     "read_thermo", "read_h5md"],
    "md_engine.checkpoint": ["save_checkpoint", "load_checkpoint"],
    "md_engine.simulation": ["Simulation"],
    "md_engine.build": ["build_simulation", "build_potential"],
    "md_engine.config": ["load_config", "parse_config"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'md_engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
