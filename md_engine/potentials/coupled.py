"""λ-coupled potential U(λ) = (1 − f(λ)) U_A + f(λ) U_B, the Hamiltonian of thermodynamic
integration and nonequilibrium switching (:mod:`md_engine.free_energy`)
(``potential: {type: coupled, a: {lj: {...}}, b: {type: einstein, ...}, lam: 0.5}``).

Outputs, besides energy/forces/virial of U(λ): ``dU_dlambda`` = f′(λ)(U_B − U_A) (eV), and the two
end-point energies ``U_A``, ``U_B`` (eV), all scalar outputs (summed over ranks, thermo observables by
name). ``a`` or ``b`` may be None (a zero potential): ``a=None, b=U`` is the reversible-scaling
Hamiltonian λU; ``a=U, b=None`` with λ = 1 is the ideal gas.

``switch``: f(λ) = λ (``"linear"``) or the polynomial f(λ) = λ⁵(70λ⁴ − 315λ³ + 540λ² − 420λ + 126)
(``"polynomial"``; de Koning & Antonelli, PRE 53, 465 (1996); LAMMPS ``fix ti/spring`` function 2)
whose slope vanishes at both ends. ``lam`` is a mutable attribute: a switching run sets it every step.
"""

from __future__ import annotations

from typing import Any, AbstractSet, Literal, Optional

import torch
from pydantic import Field

from mlpot.neighbors import NeighborList

from md_engine.config import PotentialConfig
from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS, Potential

SWITCHES = ("linear", "polynomial")


def switch_value(lam: float, kind: str = "linear") -> float:
    """f(λ) of the module docstring."""
    if kind == "linear":
        return float(lam)
    x = float(lam)
    return x**5 * (70 * x**4 - 315 * x**3 + 540 * x**2 - 420 * x + 126)


def switch_slope(lam: float, kind: str = "linear") -> float:
    """f′(λ): 1, or 630 λ⁴(1 − λ)⁴."""
    if kind == "linear":
        return 1.0
    x = float(lam)
    return 630.0 * x**4 * (1 - x) ** 4


class CoupledConfig(PotentialConfig):
    """``potential: {type: coupled, a: POTENTIAL or null, b: POTENTIAL or null, lam, switch}``."""

    type: Literal["coupled"] = "coupled"
    a: Optional[dict[str, Any]] = Field(default=None, description="potential section of U_A (null: zero)")
    b: Optional[dict[str, Any]] = Field(default=None, description="potential section of U_B (null: zero)")
    lam: float = Field(default=0.0, ge=0, description="λ (f(0) = 0: U_A; f(1) = 1: U_B)")
    switch: Literal["linear", "polynomial"] = Field(default="linear", description="f(λ)")


def _build(section: Optional[dict[str, Any]], device: Optional[torch.device]) -> Optional[Potential]:
    if section is None:
        return None
    from md_engine.config import potential_data

    entry, data, _ = potential_data(section)
    return entry.obj.from_config(entry.config.model_validate(data), device)


@POTENTIALS.register("coupled", config=CoupledConfig)
class CoupledPotential:
    """(1 − f(λ)) ``a`` + f(λ) ``b`` (module docstring); ``a``/``b`` potentials or None (zero)."""

    def __init__(self, a: Optional[Potential], b: Optional[Potential], lam: float = 0.0,
                 switch: str = "linear") -> None:
        if switch not in SWITCHES:
            raise ValueError(f"CoupledPotential: switch must be one of {SWITCHES}, got {switch!r}")
        self.a, self.b = a, b
        self.lam = float(lam)
        self.switch = switch
        self.cutoff = max([p.cutoff for p in (a, b) if p is not None] + [0.0])
        tm = [getattr(p, "type_map", None) for p in (a, b) if p is not None and getattr(p, "type_map", None)]
        if tm:
            self.type_map = list(tm[0])

    @classmethod
    def from_config(cls, config: CoupledConfig, device: Optional[torch.device] = None) -> "CoupledPotential":
        return cls(_build(config.a, device), _build(config.b, device), config.lam, config.switch)

    @property
    def weight(self) -> float:
        """f(λ)."""
        return switch_value(self.lam, self.switch)

    def compute(self, positions: torch.Tensor, atom_types: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                nl: NeighborList, n_local: Optional[int] = None,
                outputs: AbstractSet[str] = FORCE_OUTPUTS) -> dict[str, torch.Tensor]:
        w = self.weight
        zero = torch.zeros((), dtype=positions.dtype, device=positions.device)
        res = {}
        for name, pot in (("A", self.a), ("B", self.b)):
            res[name] = pot.compute(positions, atom_types, cell, pbc, nl, n_local=n_local, outputs=outputs) if pot else {}
        out: dict[str, torch.Tensor] = {}
        for key in ("energy", "forces", "virial"):
            if key != "energy" and key not in outputs:
                continue
            ta, tb = res["A"].get(key), res["B"].get(key)
            shape_zero = torch.zeros_like(positions) if key == "forces" else (
                torch.zeros(3, 3, dtype=positions.dtype, device=positions.device) if key == "virial" else zero)
            ta = shape_zero if ta is None else ta
            tb = shape_zero if tb is None else tb
            out[key] = (1 - w) * ta + w * tb
        ua = res["A"].get("energy", zero)
        ub = res["B"].get("energy", zero)
        out["U_A"], out["U_B"] = ua, ub
        out["dU_dlambda"] = switch_slope(self.lam, self.switch) * (ub - ua)
        return out


__all__ = ["CoupledPotential", "CoupledConfig", "switch_value", "switch_slope", "SWITCHES"]
