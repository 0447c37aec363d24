"""MD potentials behind one interface, :class:`Potential`, with named outputs, and their registry
:data:`POTENTIALS` (see :mod:`md_engine.potentials.base`).

One module per potential: :mod:`~md_engine.potentials.lj` (Lennard-Jones, ``lj``),
:mod:`~md_engine.potentials.model` (a frozen mlpot model, ``model``), :mod:`~md_engine.potentials.emt`
(ASE's EMT in torch, ``emt``), ... Every module of this package is
imported with it, so a new potential is ONE new file here (its config class + its class, registered
with ``@POTENTIALS.register(name, config=Cfg)``) and the MD input can name it at once.
"""

from __future__ import annotations

import importlib
import pkgutil

from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS, Params, Potential, pair_vectors

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

from md_engine.potentials.lj import LennardJones, LJConfig  # noqa: E402
from md_engine.potentials.model import MlpotModelConfig, MlpotPotential  # noqa: E402

__all__ = ["Potential", "POTENTIALS", "FORCE_OUTPUTS", "Params", "pair_vectors", "LennardJones", "LJConfig",
           "MlpotPotential", "MlpotModelConfig"]
