"""12-6 Lennard-Jones (``potential: {lj: {epsilon: ..., sigma: ..., cutoff: ...}}``)."""

from __future__ import annotations

from typing import AbstractSet, Literal, Optional, Union

import torch
from pydantic import Field

from mlpot.errors import ModelError
from mlpot.neighbors import NeighborList

from md_engine.config import PotentialConfig
from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS, Params, pair_vectors
from md_engine.potentials.pairs import PaddedPairs, padded_pairs, reduce_pairs

Table = Union[float, list[list[float]]]


class LJConfig(PotentialConfig):
    """``potential: {lj: {...}}``: epsilon (eV), sigma (Å) scalars or per-type-pair tables, cutoff (Å)."""

    type: Literal["lj"] = "lj"
    epsilon: Table = Field(description="eV; a number or an (n_types, n_types) symmetric table")
    sigma: Table = Field(description="Å; a number or an (n_types, n_types) symmetric table")
    cutoff: float = Field(gt=0, description="Å")
    shift: bool = Field(default=True, description="subtract φ(cutoff): continuous energy")
    smooth: bool = Field(default=False, description="ASE's smooth switch between ro and cutoff instead (continuous forces)")
    ro: Optional[float] = Field(default=None, gt=0, description="Å; start of the smooth switch (default 0.66 × cutoff)")
    tail: bool = Field(default=False, description="add the long-range tail correction to energy and pressure "
                                                   "(LAMMPS pair_modify tail yes; serial runs)")


@POTENTIALS.register("lj", config=LJConfig)
class LennardJones:
    """12-6 Lennard-Jones, φ(r) = 4ε[(σ/r)¹² − (σ/r)⁶] for r < cutoff, vectorised over the pair list.

    ``epsilon`` (eV) and ``sigma`` (Å) are scalars or (n_types, n_types) symmetric tables.
    ``shift=True`` subtracts φ(cutoff) so that the energy is continuous (forces are not; ASE's
    ``LennardJones(smooth=False)``). ``smooth=True`` instead multiplies φ by the C¹ switch of ASE's
    ``LennardJones(smooth=True)`` between ``ro`` (default 0.66·cutoff) and ``cutoff``, so energy and
    forces go to zero continuously (good energy conservation).

    ``tail=True`` adds the mean-field correction for the interactions beyond ``cutoff`` of the
    *unshifted, unswitched* potential (g(r) = 1 there; as LAMMPS ``pair_modify tail yes``):
    E_tail = (2π/V) Σ_ab N_a N_b e_ab, e_ab = ∫_rc^∞ r² φ_ab dr = 4ε σ³[s⁹/9 − s³/3],
    P_tail = −(2π/(3V²)) Σ_ab N_a N_b ∫_rc^∞ r³ φ′_ab dr = (2π/(3V²)) Σ_ab N_a N_b 4ε σ³[(4/3)s⁹ − 2s³],
    s = σ/r_c; for one species E_tail/N = (8/3)πρεσ³[s⁹/3 − s³] and P_tail = (16/3)πρ²εσ³[(2/3)s⁹ − s³]
    (Allen & Tildesley, *Computer Simulation of Liquids*, §2.8). It enters the virial as V·P_tail·𝟙
    (forces unchanged). It needs the whole system on one rank (n_local = all atoms).
    """

    def __init__(
        self,
        epsilon: Params = 1.0,
        sigma: Params = 1.0,
        cutoff: float = 3.0,
        shift: bool = True,
        smooth: bool = False,
        ro: Optional[float] = None,
        tail: bool = False,
    ) -> None:
        self.epsilon = torch.as_tensor(epsilon, dtype=torch.float64)
        self.sigma = torch.as_tensor(sigma, dtype=torch.float64)
        for name, t in (("epsilon", self.epsilon), ("sigma", self.sigma)):
            if t.ndim not in (0, 2) or (t.ndim == 2 and (t.shape[0] != t.shape[1] or not torch.allclose(t, t.T))):
                raise ModelError(f"LennardJones.{name}: expected a scalar or a symmetric (n_types, n_types) table")
        self.cutoff = float(cutoff)
        self.shift = bool(shift)
        self.smooth = bool(smooth)
        self.ro = float(ro) if ro is not None else 0.66 * self.cutoff
        self.tail = bool(tail)

    @classmethod
    def from_config(cls, config: LJConfig, device: Optional[torch.device] = None) -> "LennardJones":
        """From the validated ``potential`` section (the parameters live on the CPU; moved per call)."""
        return cls(config.epsilon, config.sigma, config.cutoff, shift=config.shift, smooth=config.smooth, ro=config.ro,
                   tail=config.tail)

    def _params(self, ti: torch.Tensor, tj: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for t in (self.epsilon, self.sigma):
            t = t.to(dtype=like.dtype, device=like.device)
            out.append(t[ti, tj] if t.ndim == 2 else t.expand(ti.shape))
        return out[0], out[1]

    def pair_energy_and_derivative(
        self, r2: torch.Tensor, eps: torch.Tensor, sig: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """φ(r) and (1/r) dφ/dr for squared distances r2 (Å²); both zero at r ≥ cutoff."""
        rc2 = self.cutoff**2
        inside = r2 < rc2
        r2s = torch.where(inside, r2, torch.full_like(r2, rc2))
        c6 = (sig**2 / r2s) ** 3
        c12 = c6 * c6
        phi = 4 * eps * (c12 - c6)
        dphi = -24 * eps * (2 * c12 - c6) / r2s  # (1/r) dφ/dr
        if self.smooth:
            ro2 = self.ro**2
            x = (rc2 - r2s) ** 2 * (rc2 + 2 * r2s - 3 * ro2) / (rc2 - ro2) ** 3
            dx = 6 * (rc2 - r2s) * (ro2 - r2s) / (rc2 - ro2) ** 3  # d switch / d r²
            fc = torch.where(r2s < ro2, torch.ones_like(r2s), x)
            dfc = torch.where(r2s < ro2, torch.zeros_like(r2s), dx)
            dphi = fc * dphi + 2 * dfc * phi
            phi = phi * fc
        elif self.shift:
            sr6 = (sig**2 / rc2) ** 3
            phi = phi - 4 * eps * (sr6 * sr6 - sr6)
        zero = torch.zeros_like(phi)
        return torch.where(inside, phi, zero), torch.where(inside, dphi, zero)

    def compute(
        self,
        positions: torch.Tensor,
        atom_types: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        nl: NeighborList,
        n_local: Optional[int] = None,
        outputs: AbstractSet[str] = FORCE_OUTPUTS,
    ) -> dict[str, torch.Tensor]:
        """``energy`` (eV), ``forces`` (N, 3) eV/Å and ``virial`` (3, 3) eV (those requested) from a
        full pair list. Serially (``n_local`` None) on the dense per-centre table of
        :mod:`md_engine.potentials.pairs` (the same sums, several times faster on a CPU)."""
        table = padded_pairs(nl, positions, cell) if n_local is None else None
        if table is not None:
            out = self._compute_table(table, positions, atom_types, cell, outputs)
        else:
            out = self._compute_flat(positions, atom_types, cell, nl, n_local, outputs)
        if self.tail:
            e_t, w_t = self.tail_correction(atom_types, cell, positions, n_local)
            out["energy"] = out["energy"] + e_t
            if "virial" in outputs:
                out["virial"] = out["virial"] + w_t * torch.eye(3, dtype=positions.dtype, device=positions.device)
        return out

    def _compute_table(self, table: PaddedPairs, positions: torch.Tensor, atom_types: torch.Tensor,
                       cell: torch.Tensor, outputs: AbstractSet[str]) -> dict[str, torch.Tensor]:
        d, r2 = table.geometry(positions, cell)
        if self.epsilon.ndim == 0 and self.sigma.ndim == 0:
            eps, sig2 = float(self.epsilon), float(self.sigma) ** 2
        else:
            eps = table.pair_params("lj_epsilon", self.epsilon if self.epsilon.ndim == 2 else
                                    self.epsilon.expand(self._ntypes(), self._ntypes()), atom_types)
            sig = table.pair_params("lj_sigma", self.sigma if self.sigma.ndim == 2 else
                                    self.sigma.expand(self._ntypes(), self._ntypes()), atom_types)
            sig2 = sig * sig
        if self.smooth:
            like = dict(dtype=r2.dtype, device=r2.device)
            phi, dphi = self.pair_energy_and_derivative(r2, torch.as_tensor(eps, **like), torch.as_tensor(sig2, **like).sqrt())
            return reduce_pairs(table, phi, dphi, d, outputs)
        rc2 = self.cutoff**2
        inside = (r2 < rc2).to(r2.dtype)
        c6 = sig2 / r2
        c6 = c6 * c6 * c6
        c12 = c6 * c6
        e4 = 4 * eps
        phi = e4 * (c12 - c6)
        if self.shift:
            sr6 = (sig2 / rc2) ** 3
            phi = phi - e4 * (sr6 * sr6 - sr6)
        phi = phi * inside
        dphi = (-6 * e4) * (2 * c12 - c6) / r2 * inside  # (1/r) dφ/dr
        return reduce_pairs(table, phi, dphi, d, outputs)

    def _ntypes(self) -> int:
        return int(self.epsilon.shape[0] if self.epsilon.ndim == 2 else self.sigma.shape[0])

    def _compute_flat(self, positions: torch.Tensor, atom_types: torch.Tensor, cell: torch.Tensor, nl: NeighborList,
                      n_local: Optional[int], outputs: AbstractSet[str]) -> dict[str, torch.Tensor]:
        d = pair_vectors(positions, cell, None, nl)
        r2 = torch.einsum("pk,pk->p", d, d)
        if self.epsilon.ndim == 0 and self.sigma.ndim == 0:  # one species pair: 0-d, broadcast
            eps = self.epsilon.to(dtype=positions.dtype, device=positions.device)
            sig = self.sigma.to(dtype=positions.dtype, device=positions.device)
        else:
            eps, sig = self._params(atom_types[nl.centers], atom_types[nl.neighbors], positions)
        phi, dphi = self.pair_energy_and_derivative(r2, eps, sig)
        # each pair (i, j) of the full list carries half of φ, attributed to its centre i
        weight = torch.full_like(phi, 0.5)
        if n_local is not None:
            weight = torch.where(nl.centers < n_local, weight, torch.zeros_like(weight))
        out = {"energy": (weight * phi).sum()}
        g = (weight * dphi)[:, None] * d  # ∂E/∂r_ij (P, 3)
        if "forces" in outputs:
            forces = torch.zeros_like(positions)
            forces.index_add_(0, nl.centers, g)
            forces.index_add_(0, nl.neighbors, -g)
            out["forces"] = forces
        if "virial" in outputs:
            out["virial"] = -(d.T @ g)
        return out

    def tail_correction(self, atom_types: torch.Tensor, cell: torch.Tensor, like: torch.Tensor,
                        n_local: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_tail eV, V·P_tail eV) of the class docstring for the whole system in ``cell``."""
        if n_local is not None and n_local != atom_types.shape[0]:
            raise ModelError("LennardJones(tail=True) needs the whole system on one rank (no ghost atoms)")
        vol = torch.abs(torch.linalg.det(cell.to(like.dtype)))
        eps = self.epsilon.to(dtype=like.dtype, device=like.device)
        sig = self.sigma.to(dtype=like.dtype, device=like.device)
        if eps.ndim == 0 and sig.ndim == 0:
            counts = torch.tensor([float(atom_types.shape[0])], dtype=like.dtype, device=like.device)
            eps, sig = eps.reshape(1, 1), sig.reshape(1, 1)
        else:
            nt = eps.shape[0] if eps.ndim == 2 else sig.shape[0]
            counts = torch.bincount(atom_types, minlength=nt).to(like.dtype)
            eps = eps if eps.ndim == 2 else eps.expand(nt, nt)
            sig = sig if sig.ndim == 2 else sig.expand(nt, nt)
        s3 = (sig / self.cutoff) ** 3
        nn = counts[:, None] * counts[None, :]
        e_ab = 4 * eps * sig**3 * (s3**3 / 9 - s3 / 3)
        w_ab = 4 * eps * sig**3 * ((4.0 / 3.0) * s3**3 - 2 * s3)
        e_tail = 2 * torch.pi / vol * (nn * e_ab).sum()
        vp_tail = 2 * torch.pi / (3 * vol) * (nn * w_ab).sum()
        return e_tail, vp_tail


__all__ = ["LennardJones", "LJConfig"]
