"""Potentials behind one small interface, :class:`Potential`, with named outputs.

``compute(positions (N,3) Å, atom_types (N,) int64, cell (3,3) Å, pbc (3,) bool, nl: NeighborList,
n_local=None, outputs=frozenset({"energy", "forces", "virial"})) -> dict[str, Tensor]``: ``energy``
0-d eV (the local-centre contribution), ``forces`` (N,3) eV/Å (on every row, ghosts included),
``virial`` (3,3) eV, each when requested, plus any extra named outputs the potential defines (e.g.
``"dU_dlambda"``, a 0-d local contribution: the simulation sums scalar outputs over ranks and keeps
them in ``state.outputs``, and every scalar output is a thermo observable by its name). Attribute
``cutoff`` (Å).

The pair list is full (both (i,j) and (j,i)) and may contain pairs beyond ``cutoff`` (Verlet skin):
they contribute nothing. Virial (DeePMD convention, = −stress·V): W = −Σ_pairs r_ij ⊗ ∂E/∂r_ij.

``n_local`` (optional keyword of ``compute``): only the energies of atoms ``[:n_local]`` count (the
rest are ghost copies owned by other ranks); forces then include the contributions on ghosts, to be
sent back to their owners by the domain layer. ``None`` means all atoms.
"""

from __future__ import annotations

from pathlib import Path
from typing import AbstractSet, Any, Optional, Protocol, Sequence, Union

import torch

from mlpot.errors import ModelError, SimulationError
from mlpot.neighbors import NeighborList, pair_vectors

Params = Union[float, Sequence[Sequence[float]], torch.Tensor]

#: what the simulation asks every potential for
FORCE_OUTPUTS: frozenset[str] = frozenset({"energy", "forces", "virial"})


class Potential(Protocol):
    """What the engine needs from a potential (module docstring)."""

    cutoff: float

    def compute(
        self,
        positions: torch.Tensor,
        atom_types: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        nl: NeighborList,
        n_local: Optional[int] = None,
        outputs: AbstractSet[str] = FORCE_OUTPUTS,
    ) -> dict[str, torch.Tensor]: ...


class LennardJones:
    """12-6 Lennard-Jones, φ(r) = 4ε[(σ/r)¹² − (σ/r)⁶] for r < cutoff, vectorised over the pair list.

    ``epsilon`` (eV) and ``sigma`` (Å) are scalars or (n_types, n_types) symmetric tables.
    ``shift=True`` subtracts φ(cutoff) so that the energy is continuous (forces are not; ASE's
    ``LennardJones(smooth=False)``). ``smooth=True`` instead multiplies φ by the C¹ switch of ASE's
    ``LennardJones(smooth=True)`` between ``ro`` (default 0.66·cutoff) and ``cutoff``, so energy and
    forces go to zero continuously (good energy conservation).
    """

    def __init__(
        self,
        epsilon: Params = 1.0,
        sigma: Params = 1.0,
        cutoff: float = 3.0,
        shift: bool = True,
        smooth: bool = False,
        ro: Optional[float] = None,
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
        full pair list."""
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


class MlpotPotential:
    """A trained mlpot model as an MD potential (``mlpot.model.evaluate`` with the engine's pair list).

    ``model``: an ``EnergyModel`` or the path of a frozen model file (``mlpot.export.load_model``).
    The Verlet pair list may hold skin pairs beyond ``model.rcut``; the model ignores them. A
    :class:`ModelError` during evaluation (e.g. more neighbours than ``sel``) is re-raised as
    :class:`SimulationError`. Positions and cell are cast to the model's precision; results are
    returned in the dtype of the positions. With ``n_local`` < N (ghost atoms, :mod:`md_engine.domain`)
    only pairs with local centers are used: the energy is Σ of the local atomic energies, the forces
    (on local and ghost atoms) and the virial (−Σ r_ij ⊗ ∂E/∂r_ij over those pairs) are its exact
    derivatives — an atom's energy depends only on its own neighbors within rcut.
    """

    def __init__(self, model: Any, device: Optional[str | torch.device] = None) -> None:
        if isinstance(model, (str, Path)):
            from mlpot.export import load_model

            model = load_model(str(model), device=device)
        elif device is not None:
            model = model.to(device)
        self.model = model
        self.model.eval()
        self.cutoff = float(model.rcut)
        self.type_map: list[str] = list(model.type_map)
        try:
            self.dtype = next(p for p in model.parameters()).dtype
        except StopIteration:
            self.dtype = torch.float64

    def _within_cutoff(self, positions: torch.Tensor, cell: torch.Tensor, nl: NeighborList) -> NeighborList:
        """The pairs of the Verlet list (rcut + skin) with |r_ij| < rcut. The model would skip the skin
        pairs itself, but its chunked evaluation sizes chunks by pair count: with the ~1.6x skin pairs
        (1 Å skin at 6 Å) left in, chunks hold fewer real pairs and every chunk re-filters them."""
        keep = torch.nonzero(torch.linalg.vector_norm(pair_vectors(positions, cell, None, nl), dim=-1) < self.cutoff).reshape(-1)
        if keep.shape[0] == nl.centers.shape[0]:
            return nl
        return NeighborList(nl.centers[keep], nl.neighbors[keep], nl.shifts[keep])

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
        """``energy`` (eV), ``forces`` (N, 3) eV/Å, ``virial`` (3, 3) eV (those requested)."""
        from mlpot.model import evaluate

        out_dtype = positions.dtype
        ghosts = n_local is not None and n_local != positions.shape[0]
        nl = self._within_cutoff(positions, cell, nl)
        try:
            # with ghosts only the local atoms are centers (descriptor + fitting on them only);
            # pairs centered on ghosts, if any, are ignored by the model
            res = evaluate(
                self.model, positions.to(self.dtype), atom_types, cell.to(self.dtype).unsqueeze(0),
                pbc.reshape(1, 3), frame_index=None, nl=nl,
                outputs=("energy",) + tuple(k for k in ("forces", "virial") if k in outputs),
                n_centers=n_local if ghosts else None,
            )
        except ModelError as exc:
            raise SimulationError(f"model evaluation failed: {exc}") from exc
        out = {"energy": res["energy"].reshape(()).detach().to(out_dtype)}
        if "forces" in outputs:
            out["forces"] = res["forces"].detach().to(out_dtype)
        if "virial" in outputs:
            out["virial"] = res["virial"].reshape(3, 3).detach().to(out_dtype)
        return out
