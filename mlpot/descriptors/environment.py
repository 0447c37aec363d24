"""The atomic environment a descriptor sees: the edges within rcut of a set of center atoms.

:class:`Environment` is the one input of ``descriptor.forward(env)`` (contract C2). It holds

* the edges within rcut: ``rij`` (E, 3) Å (r_j − r_i + s·cell, differentiable), ``center`` (E,)
  local center index in ``[0, n_centers)``, ``neighbor_type`` (E,);
* ``center_types`` (n_c,), ``n_centers``, ``ntypes``;

and builds on demand (cached):

* :meth:`counts` (n_c, ntypes): neighbors of each type per center, with :meth:`check_sel` raising
  the sel-overflow :class:`~mlpot.errors.ModelError` (naming frame, atom, type, count and sel);
* :meth:`type_groups`: the edge indices of each neighbor type;
* :meth:`padded` ``(sel, type_split)``: DeePMD-kit's padded per-atom view: (n_c, nsel) edge indices
  (−1 = empty slot) and a mask. ``type_split=True`` (se_e2_a/se_e2_r; ``sel`` one count per type):
  slot block t holds the type-t neighbors, sorted by distance; ``type_split=False`` (one block of
  ``sel`` slots for all neighbors, sorted by distance, as se_atten needs). Neighbors beyond the
  block size are dropped (the farthest), as DeePMD-kit does; :meth:`check_sel` refuses them instead.

Everything is vectorised (sorts, bincounts, scatters): no Python loop over atoms or edges.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from mlpot.errors import ModelError


class Environment:
    """Edges within rcut of ``n_centers`` center atoms (see the module docstring).

    ``frame_index`` (N,) over all atoms and ``center_offset`` (the global index of local center 0)
    are used only to name the frame and atom in error messages; ``type_map`` names the types."""

    def __init__(
        self,
        rij: torch.Tensor,
        center: torch.Tensor,
        neighbor_type: torch.Tensor,
        center_types: torch.Tensor,
        ntypes: int,
        frame_index: Optional[torch.Tensor] = None,
        center_offset: int = 0,
        type_map: Optional[Sequence[str]] = None,
    ) -> None:
        self.rij = rij
        self.center = center
        self.neighbor_type = neighbor_type
        self.center_types = center_types
        self.n_centers = int(center_types.shape[0])
        self.ntypes = int(ntypes)
        self.frame_index = frame_index
        self.center_offset = int(center_offset)
        self.type_map = None if type_map is None else list(type_map)
        self._counts: Optional[torch.Tensor] = None
        self._groups: Optional[list[torch.Tensor]] = None
        self._padded: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        #: (n_c,) the type DeePMD-kit gives an empty neighbor slot of each center (the type of the
        #: first atom of the center's frame); set by :meth:`mlpot.model.EnergyModel.energy_from_edges`,
        #: used by the type-embedding descriptors (:mod:`mlpot.descriptors.se_atten`); None: type 0
        self.pad_type: Optional[torch.Tensor] = None

    @property
    def n_edges(self) -> int:
        return int(self.center.shape[0])

    @property
    def edge_center_types(self) -> torch.Tensor:
        """(E,) type of each edge's center."""
        return self.center_types[self.center]

    def distances(self) -> torch.Tensor:
        """(E,) |r_ij| Å, detached (for sorting)."""
        return torch.linalg.vector_norm(self.rij.detach(), dim=-1)

    # -- counts ----------------------------------------------------------------------------------
    def counts(self) -> torch.Tensor:
        """(n_c, ntypes) int64: neighbors of each type within rcut per center."""
        if self._counts is None:
            flat = self.center * self.ntypes + self.neighbor_type
            self._counts = torch.bincount(flat, minlength=self.n_centers * self.ntypes).reshape(
                self.n_centers, self.ntypes
            )
        return self._counts

    def check_sel(self, sel: torch.Tensor, rcut: float, where: str = "model.descriptor.sel") -> torch.Tensor:
        """:meth:`counts`, after checking that no count exceeds ``sel`` (ntypes,) int64; a
        :class:`ModelError` naming frame, atom, type, count and sel otherwise."""
        counts = self.counts()
        over = counts > sel.to(counts.device)[None, :]
        if bool(over.any()):  # the error path only: name the atom with the LARGEST count, not the first
            masked = torch.where(over, counts, torch.full_like(counts, -1))
            per_type = masked.max(dim=0).values  # (ntypes,) the largest overflowing count per type, −1 if none
            t = int(torch.argmax(per_type))
            atom = int(torch.argmax(masked[:, t]))
            n = int(counts[atom, t])
            atom += self.center_offset
            frame, local = 0, atom
            fi = self.frame_index
            if fi is not None:
                frame = int(fi[atom])
                local = atom - int(torch.searchsorted(fi, torch.tensor(frame, device=fi.device)))
            tname = f"'{self.type_map[t]}' (type {t})" if self.type_map is not None else f"type {t}"
            s = int(sel[t])
            raise ModelError(
                f"neighbor overflow: frame {frame}, atom {local} has {n} neighbors of {tname} within "
                f"rcut={rcut} Å (the largest count) but {where}[{t}] = {s}; "
                f"raise sel[{t}] to at least {n} (mlpot neighbor-stat gives the maximum)"
            )
        return counts

    # -- groups ----------------------------------------------------------------------------------
    def type_groups(self) -> list[torch.Tensor]:
        """Per neighbor type t, the indices (E_t,) of its edges (ascending)."""
        if self._groups is None:
            self._groups = [torch.nonzero(self.neighbor_type == t).reshape(-1) for t in range(self.ntypes)]
        return self._groups

    # -- padded view -----------------------------------------------------------------------------
    def padded(self, sel: Union[int, Sequence[int]], type_split: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """DeePMD-kit's padded neighbor view (module docstring): ``(index (n_c, nsel) int64, mask
        (n_c, nsel) bool)``; ``index`` holds edge indices into ``rij``, −1 in empty slots.

        ``type_split=True``: ``sel`` one count per type, nsel = Σ sel, slots ``[Σ sel[:t], Σ sel[:t+1])``
        hold the type-t neighbors nearest first. ``type_split=False``: ``sel`` an int (or a list,
        summed), one block nearest first."""
        sel_list = [int(sel)] if isinstance(sel, int) else [int(s) for s in sel]
        if not type_split:
            sel_list = [sum(sel_list)]
        elif len(sel_list) != self.ntypes:
            raise ModelError(f"padded view: expected one sel per type ({self.ntypes}), got {sel_list}")
        key = (tuple(sel_list), bool(type_split))
        if key in self._padded:
            return self._padded[key]
        dev = self.center.device
        nsel = sum(sel_list)
        nblock = len(sel_list)
        block = self.neighbor_type if type_split else torch.zeros_like(self.neighbor_type)
        group = self.center * nblock + block  # (E,) (center, block) id
        order = torch.argsort(self.distances(), stable=True)
        order = order[torch.argsort(group[order], stable=True)]  # by (center, block), then distance
        g_sorted = group[order]
        sizes = torch.bincount(group, minlength=self.n_centers * nblock)
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.arange(order.shape[0], device=dev) - starts[g_sorted]
        sel_t = torch.tensor(sel_list, dtype=torch.long, device=dev)
        offset = torch.cumsum(sel_t, 0) - sel_t
        b_sorted = g_sorted % nblock
        keep = rank < sel_t[b_sorted]
        index = torch.full((self.n_centers, nsel), -1, dtype=torch.long, device=dev)
        rows = (g_sorted // nblock)[keep]
        cols = (offset[b_sorted] + rank)[keep]
        index[rows, cols] = order[keep]
        out = (index, index >= 0)
        self._padded[key] = out
        return out


__all__ = ["Environment"]
