"""Toy labellers for the tests and for trying the loop's failure paths (as ASE ships
``ase.calculators.test``); importable in a task process, no torch.

* :class:`FlakyEMT`: ASE's EMT that raises (as a DFT code whose SCF does not converge) on the frames
  whose MD step (``atoms.info["step"]``, recorded by the exploration) is a multiple of ``every``;
* :class:`EnergyOnly`: declares and computes only the energy (a labeller without forces);
* :class:`ForcesClaimed`: declares forces but cannot compute them (PropertyNotImplementedError).
"""

from __future__ import annotations

from typing import Any

from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.calculators.emt import EMT


class SCFNotConverged(RuntimeError):
    """What a DFT code's calculator raises when its SCF does not converge (the toy version)."""


class FlakyEMT(EMT):
    """EMT raising :class:`SCFNotConverged` on frames with ``info["step"] % every == 0``."""

    def __init__(self, every: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.every = int(every)

    def calculate(self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = all_changes) -> None:
        step = (atoms if atoms is not None else self.atoms).info.get("step")
        if step is not None and int(step) % self.every == 0:
            raise SCFNotConverged(f"SCF not converged in 60 steps (toy labeller, MD step {step})")
        super().calculate(atoms, properties, system_changes)


class EnergyOnly(Calculator):
    """A labeller that gives an energy and no forces."""

    implemented_properties = ["energy"]

    def calculate(self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0}


class ForcesClaimed(Calculator):
    """Declares forces in ``implemented_properties`` but cannot compute them."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        if "forces" in properties:
            raise PropertyNotImplementedError("forces")
        self.results = {"energy": 0.0}


__all__ = ["FlakyEMT", "EnergyOnly", "ForcesClaimed", "SCFNotConverged"]
