"""md_engine: molecular dynamics for mlpot potentials, state and loop on the device (GPU or CPU),
MPI spatial decomposition across ranks (later). Units: eV, Å, fs, amu, K, bar.

Python entry point: ``Simulation(state, potential, integrator, reporters).run(nsteps)``; command line:
``mlpot md input.yaml`` (:mod:`md_engine.config`, :mod:`md_engine.md_cli`).

Names are imported lazily (so that ``mlpot --help`` does not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "md_engine.state": ["State", "Comm", "SerialComm", "kinetic_energy", "temperature", "maxwell_boltzmann",
                        "remove_com_velocity"],
    "md_engine.potentials": ["Potential", "LennardJones", "MlpotPotential"],
    "mlpot.neighbors": ["VerletList", "wrap_positions"],
    "md_engine.integrators": ["Integrator", "VelocityVerlet", "Langevin", "NoseHooverChain", "CSVR",
                              "StochasticCellRescaling", "pressure"],
    "md_engine.io": ["Reporter", "ThermoReporter", "ExtxyzReporter", "H5MDReporter", "CheckpointReporter",
                     "save_checkpoint", "load_checkpoint", "read_thermo", "read_h5md"],
    "md_engine.simulation": ["Simulation"],
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
