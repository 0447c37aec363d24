"""Geometry of the box: wrapping into the cell, lattice projections, lost-atom detection.

Cell rows are lattice vectors (Å); along a non-periodic direction the cell vector may be zero or
degenerate, and :func:`mlpot.neighbors.complete_cell` completes it for fractional coordinates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mlpot.neighbors import complete_cell, wrap_positions  # wrap_positions: one copy, in mlpot.neighbors.verlet

if TYPE_CHECKING:
    from md_engine.state import State


def lattice_projection(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Fractional coordinates in the completed cell times the completed vector lengths (N, 3), Å."""
    full = complete_cell(cell.unsqueeze(0), pbc.reshape(1, 3))[0]
    frac = positions @ torch.linalg.inv(full)
    return frac * full.norm(dim=1)


def reference_bounds(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """(2, 3): per direction the low/high extent (Å along the completed lattice vector) of the atoms
    and of the box (when the cell vector is non-zero); used only for non-periodic directions."""
    proj = lattice_projection(positions, cell, pbc.to(torch.bool))
    lo = proj.min(0).values if positions.shape[0] else torch.zeros(3, dtype=positions.dtype, device=positions.device)
    hi = proj.max(0).values if positions.shape[0] else lo.clone()
    lengths = cell.norm(dim=1)
    lo = torch.minimum(lo, torch.zeros_like(lo))
    hi = torch.maximum(hi, lengths)
    return torch.stack([lo, hi])


def lost_atom_excess(state: "State") -> torch.Tensor:
    """0-d tensor: how far (Å) the farthest owned atom is beyond the reference extent ``state.bounds``
    along a non-periodic direction (≤ 0 when all atoms are inside; 0 with full PBC)."""
    if bool(state.pbc.all()):
        return torch.zeros((), dtype=state.dtype, device=state.device)
    proj = lattice_projection(state.positions[: state.n_local], state.cell, state.pbc)
    excess = torch.maximum(state.bounds[0] - proj, proj - state.bounds[1])  # (N, 3)
    excess = excess[:, ~state.pbc]
    return excess.max() if excess.numel() else torch.zeros((), dtype=state.dtype, device=state.device)


__all__ = ["wrap_positions", "lattice_projection", "reference_bounds", "lost_atom_excess"]
