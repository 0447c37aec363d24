"""Any ASE calculator as an md_engine potential (``potential: {type: ase, calculator: emt}``), CPU,
e.g. EMT, for reference data and for checking a trained model's phase diagram against the
potential it was trained on. ``emt`` is ASE's own ``ase.calculators.emt.EMT`` (the labeller of
``mlpot learn`` examples); ``asap_emt`` is asap3's fast EMT, a DIFFERENT parametrisation of the cutoff
(for 108 rattled Cu atoms: 7 meV/atom and 0.03 eV/Å from ASE's, measured with asap3 3.13.11), so
the one is never swapped for the other silently. For ASE's EMT at MD speed use the ``emt`` potential
(:mod:`md_engine.potentials.emt`: the same numbers, vectorised in torch).

Each call copies positions to an ``ase.Atoms`` and asks the calculator for energy, forces and stress
(virial W = −stress·V, eV). Serial only (``n_local`` must be all atoms); the pair list is not used
(the calculator builds its own), so ``cutoff`` is only the Verlet radius for the safety checks.
"""

from __future__ import annotations

from typing import Any, AbstractSet, Literal, Optional

import numpy as np
import torch
from pydantic import Field

from mlpot.errors import ConfigError, SimulationError
from mlpot.neighbors import NeighborList

from md_engine.config import PotentialConfig
from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS


class ASEConfig(PotentialConfig):
    """``potential: {type: ase, calculator: emt, type_map: [Cu]}``."""

    type: Literal["ase"] = "ase"
    calculator: Literal["emt", "asap_emt"] = Field(default="emt", description="emt: ASE's EMT; asap_emt: asap3's "
                                                                            "EMT (another cutoff; must be installed)")
    type_map: list[str] = Field(description="element of each type index")
    cutoff: float = Field(default=4.0, gt=0, description="Å; only the radius of the engine's safety checks")


def emt_calculator(kind: str = "emt") -> Any:
    """``emt``: ASE's EMT; ``asap_emt``: asap3's (both: Jacobsen, Stoltze & Nørskov, Surf. Sci. 366, 394
    (1996), with different cutoff details, module docstring)."""
    if kind == "asap_emt":
        try:
            from asap3 import EMT  # type: ignore[import-not-found]
        except Exception as exc:
            raise ConfigError(f"potential.calculator: asap_emt needs asap3 (pip install asap3): {exc}") from None
        return EMT()
    if kind != "emt":
        raise ConfigError(f"potential.calculator: unknown ASE calculator {kind!r}; expected emt or asap_emt")
    from ase.calculators.emt import EMT

    return EMT()


@POTENTIALS.register("ase", config=ASEConfig)
class ASEPotential:
    """Wraps an ASE ``calculator`` (module docstring); ``type_map`` maps type indices to elements."""

    def __init__(self, calculator: Any, type_map: list[str], cutoff: float = 4.0) -> None:
        self.calc = calculator
        self.type_map = list(type_map)
        self.cutoff = float(cutoff)
        self._atoms: Any = None
        self._types: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, config: ASEConfig, device: Optional[torch.device] = None) -> "ASEPotential":
        return cls(emt_calculator(config.calculator), config.type_map, config.cutoff)

    def compute(self, positions: torch.Tensor, atom_types: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                nl: NeighborList, n_local: Optional[int] = None,
                outputs: AbstractSet[str] = FORCE_OUTPUTS) -> dict[str, torch.Tensor]:
        from ase import Atoms

        if n_local is not None and n_local != positions.shape[0]:
            raise SimulationError("the ASE potential runs serially (no ghost atoms)")
        pos = positions.detach().cpu().double().numpy()
        at = self._atoms
        types = atom_types.detach().cpu()
        if at is None or self._types is None or not torch.equal(self._types, types):  # new system: rebuild once
            symbols = [self.type_map[t] for t in types.tolist()]
            at = self._atoms = Atoms(symbols, positions=pos, cell=cell.detach().cpu().numpy(),
                                     pbc=pbc.cpu().numpy())
            at.calc = self.calc
            self._types = types.clone()
        else:
            at.set_cell(cell.detach().cpu().numpy(), scale_atoms=False)
            at.set_positions(pos)
        like = dict(dtype=positions.dtype, device=positions.device)
        out = {"energy": torch.tensor(float(at.get_potential_energy()), **like)}
        if "forces" in outputs:
            out["forces"] = torch.as_tensor(at.get_forces(), **like)
        if "virial" in outputs:
            s = at.get_stress(voigt=False)
            out["virial"] = torch.as_tensor(-np.asarray(s) * at.get_volume(), **like)
        return out


__all__ = ["ASEPotential", "ASEConfig", "emt_calculator"]
