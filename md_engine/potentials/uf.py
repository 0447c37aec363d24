"""Uhlenbeck–Ford model (``potential: {type: uf, p: 50, sigma: 1.5, temperature: 1000}``), the
reference liquid of :mod:`md_engine.free_energy` (Paula Leite, Freitas, Azevedo & de Koning,
JCP 145, 194101 (2016); LAMMPS ``pair_style ufm``).

u(r) = −ε ln[1 − exp(−r²/σ²)] for r < r_c (default 5σ, no shift and no tail: at 5σ u/ε = 1.4e-11),
ε = p k_B T. The pair potential is purely repulsive and bounded in its integral, and its excess
free energy at a scaled density x = bρ, b = ½(πσ²)^{3/2}, is tabulated
(:func:`md_engine.free_energy.references.uf_excess_free_energy`). Units: σ Å, T K, energies eV.
"""

from __future__ import annotations

from typing import AbstractSet, Literal, Optional

import torch
from pydantic import Field

from mlpot.neighbors import NeighborList
from mlpot.units import KB_EV_PER_K

from md_engine.config import PotentialConfig
from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS, pair_vectors
from md_engine.potentials.pairs import padded_pairs, reduce_pairs


class UFConfig(PotentialConfig):
    """``potential: {type: uf, p, sigma (Å), temperature (K), cutoff (Å, default 5 σ)}``."""

    type: Literal["uf"] = "uf"
    p: float = Field(gt=0, description="ε/(k_B T), dimensionless (1, 25, 50, 75, 100 are tabulated)")
    sigma: float = Field(gt=0, description="Å")
    temperature: float = Field(gt=0, description="K (sets ε = p k_B T)")
    cutoff: Optional[float] = Field(default=None, gt=0, description="Å (default 5 σ)")


@POTENTIALS.register("uf", config=UFConfig)
class UhlenbeckFord:
    """u(r) = −p k_B T ln[1 − exp(−r²/σ²)], r < cutoff; vectorised over the full pair list."""

    def __init__(self, p: float, sigma: float, temperature: float, cutoff: Optional[float] = None) -> None:
        self.p, self.sigma, self.temperature = float(p), float(sigma), float(temperature)
        self.epsilon = self.p * KB_EV_PER_K * self.temperature
        self.cutoff = float(cutoff) if cutoff is not None else 5.0 * self.sigma

    @classmethod
    def from_config(cls, config: UFConfig, device: Optional[torch.device] = None) -> "UhlenbeckFord":
        return cls(config.p, config.sigma, config.temperature, config.cutoff)

    def compute(self, positions: torch.Tensor, atom_types: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                nl: NeighborList, n_local: Optional[int] = None,
                outputs: AbstractSet[str] = FORCE_OUTPUTS) -> dict[str, torch.Tensor]:
        table = padded_pairs(nl, positions, cell) if n_local is None else None
        if table is not None:  # serial: the dense per-centre table (md_engine.potentials.pairs)
            d3, r2t = table.geometry(positions, cell)
            inside_t = (r2t < self.cutoff**2).to(r2t.dtype)
            em1 = torch.expm1(-r2t / self.sigma**2)  # → −1 beyond the cutoff and in the padded slots
            phi_t = (-self.epsilon) * torch.log(-em1) * inside_t
            # (1/r) du/dr = −(2ε/σ²)/expm1(x) = (2ε/σ²) e^{−x}/expm1(−x)
            dphi_t = (2 * self.epsilon / self.sigma**2) * (1 + em1) / em1 * inside_t
            return reduce_pairs(table, phi_t, dphi_t, d3, outputs)
        d = pair_vectors(positions, cell, None, nl)
        r2 = torch.einsum("pk,pk->p", d, d)
        inside = r2 < self.cutoff**2
        x = torch.where(inside, r2 / self.sigma**2, torch.ones_like(r2))
        # u = −ε log(−expm1(−x)); (1/r) du/dr = 2 du/dr² = −(2ε/σ²) / expm1(x)
        phi = torch.where(inside, -self.epsilon * torch.log(-torch.expm1(-x)), torch.zeros_like(r2))
        dphi = torch.where(inside, -(2 * self.epsilon / self.sigma**2) / torch.expm1(x), torch.zeros_like(r2))
        weight = torch.full_like(phi, 0.5)
        if n_local is not None:
            weight = torch.where(nl.centers < n_local, weight, torch.zeros_like(weight))
        out = {"energy": (weight * phi).sum()}
        g = (weight * dphi)[:, None] * d
        if "forces" in outputs:
            forces = torch.zeros_like(positions)
            forces.index_add_(0, nl.centers, g)
            forces.index_add_(0, nl.neighbors, -g)
            out["forces"] = forces
        if "virial" in outputs:
            out["virial"] = -(d.T @ g)
        return out


__all__ = ["UhlenbeckFord", "UFConfig"]
