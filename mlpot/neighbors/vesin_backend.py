"""Optional backend of :func:`mlpot.neighbors.neighbor_list`: vesin's compiled cell list (CPU).

vesin (https://github.com/Luthaf/vesin, ``pip install vesin``) searches one frame with full,
mixed or no periodicity, any triclinic cell (including cells thinner than the cutoff, where an atom
sees its own images) and positions outside the cell; its (i, j, S) set is the one of
:func:`mlpot.neighbors.neighbor_list_brute_force` (tests/test_neighbors.py checks it case by case).
It is used where it is faster (:func:`use_vesin`): one frame, float64, on the CPU, at least
:data:`VESIN_MIN_ATOMS` atoms (benchmarks/neighbors.py, raw figures in
benchmarks/results/neighbors.json: on 2 CPU threads vesin is 2.2-2.7x faster than the torch cell
list from 192 to 98,304 atoms, conversion to NeighborList included).
Batches of frames, float32 (whose distance test must be done in float32) and other devices go to
the torch cell-list kernel (:mod:`mlpot.neighbors.cell_list`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlpot.neighbors import NeighborList

#: smallest system (atoms) sent to vesin by :func:`mlpot.neighbors.neighbor_list`
VESIN_MIN_ATOMS = 0

_VESIN: Any = None  # the imported module, False when not importable


def vesin_available() -> bool:
    """Whether ``vesin`` can be imported (imported once, on first use)."""
    global _VESIN
    if _VESIN is None:
        try:
            import vesin

            _VESIN = vesin
        except ImportError:
            _VESIN = False
    return _VESIN is not False


def use_vesin(positions: torch.Tensor, n_frames: int) -> bool:
    """The dispatch rule of :func:`mlpot.neighbors.neighbor_list` (no device synchronisation)."""
    return (
        n_frames == 1
        and positions.device.type == "cpu"
        and positions.dtype == torch.float64
        and positions.shape[0] >= VESIN_MIN_ATOMS
        and vesin_available()
    )


def vesin_neighbor_list(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float) -> NeighborList:
    """All pairs closer than ``cutoff`` (Å) of one frame, full list, by vesin (CPU, float64).

    positions (n_atoms, 3) Å; cell (3, 3) Å (rows = lattice vectors; a non-periodic direction may
    have a zero vector); pbc (3,) bool. Same format and pair set as
    :func:`mlpot.neighbors.neighbor_list`; vesin runs on ``torch.get_num_threads()`` threads. The
    caller checks the cell (:func:`mlpot.neighbors.cell_list.neighbor_list` raises for a singular
    periodic cell before it gets here). Raises ImportError without vesin.
    """
    if not vesin_available():
        raise ImportError("vesin is not installed (pip install vesin)")
    pos = np.ascontiguousarray(positions.detach().cpu().numpy(), dtype=np.float64)
    box = np.ascontiguousarray(cell.detach().cpu().numpy(), dtype=np.float64).reshape(3, 3)
    periodic = [bool(p) for p in pbc.detach().cpu().reshape(3).tolist()]
    calc = _VESIN.NeighborList(cutoff=float(cutoff), full_list=True, n_threads=torch.get_num_threads())
    i, j, s = calc.compute(pos, box, periodic, quantities="ijS", copy=True)
    # vesin's indices are uint64 (< 2**63: the same bits as int64); shifts int32
    return NeighborList(
        torch.from_numpy(i.view(np.int64)),
        torch.from_numpy(j.view(np.int64)),
        torch.from_numpy(s.astype(np.int64)),
    )


__all__ = ["VESIN_MIN_ATOMS", "vesin_available", "use_vesin", "vesin_neighbor_list"]
