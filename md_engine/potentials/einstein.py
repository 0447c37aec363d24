"""Einstein crystal: independent harmonic springs tying every atom to its lattice site
(``potential: {type: einstein, k: [...], reference: sites.extxyz}``), the reference state of
Frenkel–Ladd free-energy calculations (:mod:`md_engine.free_energy`).

U_E = Σ_i (k_{t(i)}/2) |r_i − r_i⁰|², with the displacement r_i − r_i⁰ taken by the minimum image
of the periodic cell (exact while every atom stays within half a box length of its site, which a
solid always does; equivalent to LAMMPS ``fix ti/spring`` on unwrapped positions). Units: k eV/Å²,
positions Å, energy eV.
"""

from __future__ import annotations

from typing import AbstractSet, Literal, Optional, Sequence, Union

import torch
from pydantic import Field, ValidationInfo, field_validator

from mlpot.errors import ModelError
from mlpot.neighbors import NeighborList

from md_engine.config import PotentialConfig, input_path
from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS


class EinsteinConfig(PotentialConfig):
    """``potential: {type: einstein, k: K or [k per type], reference: FILE}``: spring constants (eV/Å²)
    and the lattice sites (a structure file, atom order = the MD structure's; relative to the input)."""

    type: Literal["einstein"] = "einstein"
    k: Union[float, list[float]] = Field(description="eV/Å²; one number or one per type (type_map order)")
    reference: str = Field(description="structure file with the lattice sites (same atom order)")

    @field_validator("reference")
    @classmethod
    def _ref(cls, v: str, info: ValidationInfo) -> str:
        return input_path(v, info)


def minimum_image(d: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                  inv_cell: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Displacements ``d`` (N, 3) Å reduced to their minimum image along the periodic directions
    (``inv_cell``: the inverse of ``cell`` if already known)."""
    if not bool(pbc.any()):
        return d
    frac = d @ (torch.linalg.inv(cell) if inv_cell is None else inv_cell)
    frac = torch.where(pbc.reshape(1, 3), frac - torch.round(frac), frac)
    return frac @ cell


@POTENTIALS.register("einstein", config=EinsteinConfig)
class EinsteinCrystal:
    """Springs of constant ``k`` (eV/Å², scalar or one per type) to the sites ``reference`` (N, 3) Å.

    Outputs: ``energy`` (eV), ``forces`` −k_i Δr_i (eV/Å) and ``virial`` Σ_i Δr_i ⊗ F_i (eV; the
    springs are tethered to fixed points, so the virial only has a meaning at fixed volume: do not
    use the Einstein crystal under a barostat). Serial only (the sites are indexed by atom row).
    """

    cutoff: float = 0.0

    def __init__(self, k: Union[float, Sequence[float], torch.Tensor], reference: torch.Tensor) -> None:
        self.k = torch.as_tensor(k, dtype=torch.float64).reshape(-1)
        if not bool(torch.isfinite(self.k).all()) or bool((self.k <= 0).any()):
            raise ModelError(f"EinsteinCrystal: spring constants must be finite and > 0 eV/Å², got {self.k.tolist()}")
        self.reference = torch.as_tensor(reference, dtype=torch.float64)
        self._cell: Optional[torch.Tensor] = None
        self._inv: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, config: EinsteinConfig, device: Optional[torch.device] = None) -> "EinsteinCrystal":
        from md_engine.structure import read_structure

        at = read_structure(config.reference)
        return cls(config.k, torch.as_tensor(at.get_positions(), dtype=torch.float64))

    def spring_constants(self, atom_types: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """k_i (N,) eV/Å² per atom."""
        k = self.k.to(dtype=like.dtype, device=like.device)
        return k.expand(atom_types.shape) if k.numel() == 1 else k[atom_types]

    def displacements(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
        """r_i − r_i⁰ (N, 3) Å by the minimum image."""
        n = self.reference.shape[0]
        if positions.shape[0] != n:
            raise ModelError(f"EinsteinCrystal: {positions.shape[0]} positions but {n} lattice sites "
                             "(the Einstein crystal runs serially, without ghost atoms)")
        if self.reference.dtype != positions.dtype or self.reference.device != positions.device:
            self.reference = self.reference.to(dtype=positions.dtype, device=positions.device)
        cell = cell.to(positions.dtype)
        if self._cell is None or not torch.equal(self._cell, cell):  # NVT: inverted once
            self._cell, self._inv = cell.clone(), torch.linalg.inv(cell)
        return minimum_image(positions - self.reference, cell, pbc, self._inv)

    def compute(self, positions: torch.Tensor, atom_types: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                nl: NeighborList, n_local: Optional[int] = None,
                outputs: AbstractSet[str] = FORCE_OUTPUTS) -> dict[str, torch.Tensor]:
        d = self.displacements(positions, cell, pbc)
        k = self.spring_constants(atom_types, positions)
        f = -k[:, None] * d
        out = {"energy": 0.5 * (k * torch.einsum("ik,ik->i", d, d)).sum()}
        if "forces" in outputs:
            out["forces"] = f
        if "virial" in outputs:
            out["virial"] = d.T @ f
        return out


__all__ = ["EinsteinCrystal", "EinsteinConfig", "minimum_image"]
