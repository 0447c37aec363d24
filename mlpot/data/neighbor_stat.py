"""Neighbor statistics (``mlpot neighbor-stat``): the shortest pair distance and the largest neighbor
count per neighbor type within ``rcut`` over all frames of the given systems — what DeePMD-kit calls
``sel`` (choose ``sel`` at least this large).

Computed with :func:`mlpot.neighbors.neighbor_list` on batches of frames; the counts per (atom, neighbor
type) come from one ``torch.bincount`` over ``center * n_types + type[neighbor]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np


@dataclass
class NeighborStat:
    """Result of :func:`neighbor_stat`.

    min_dist: shortest pair distance (Å; ``inf`` when no pair is within rcut);
    max_nbor: (n_types,) largest number of neighbors of each type around any atom;
    table: (n_types, n_types) largest number of neighbors of type j (column) around an atom of type i (row);
    type_map, rcut (Å), n_frames (frames examined); max_total: largest number of neighbors of all types
    together around any atom (the ``sel`` of descriptors that do not split neighbors by type, se_atten).
    """

    type_map: list[str]
    rcut: float
    min_dist: float
    max_nbor: np.ndarray
    table: np.ndarray
    n_frames: int
    max_total: int = 0

    def format(self) -> str:
        w = max([6] + [len(t) for t in self.type_map])
        head = f"{'center':>{w}} " + " ".join(f"{t:>{w}}" for t in self.type_map)
        rows = [f"{c:>{w}} " + " ".join(f"{int(n):>{w}d}" for n in row) for c, row in zip(self.type_map, self.table)]
        lines = [
            f"neighbor statistics within rcut = {self.rcut:g} Å over {self.n_frames} frames",
            "max neighbors of each type (columns) around an atom of each type (rows):",
            head,
            *rows,
            f"min nbor dist: {self.min_dist:.6f}",
            f"max nbor size: [{' '.join(str(int(n)) for n in self.max_nbor)}]",
            f"max nbor size of all types together: {int(self.max_total)} (the sel of se_atten/se_atten_v2)",
        ]
        return "\n".join(lines)


def neighbor_stat(
    systems: Sequence, rcut: float, device: Optional[str] = None, max_atoms_per_batch: int = 4096,
    max_frames: Optional[int] = None, progress: Optional[Callable[[int], None]] = None,
) -> NeighborStat:
    """Neighbor statistics of ``systems`` (:class:`~mlpot.data.dataset.Dataset` s sharing one type_map:
    LabeledFrames, or HDF5 views read batch by batch) within ``rcut`` Å.

    Frames are processed in batches of at most ``max_atoms_per_batch`` atoms; ``max_frames`` (optional)
    limits each system to its first frames; ``progress`` is called with the number of frames of each
    batch once it is done (a progress bar's update).
    """
    import torch

    from mlpot.data.batch import to_batch
    from mlpot.data.frames import LabeledFrames
    from mlpot.device import resolve_device
    from mlpot.errors import DataError
    from mlpot.neighbors import pair_vectors, neighbor_list

    if rcut <= 0:
        raise DataError(f"rcut: expected a positive cutoff in Å, found {rcut}")
    if not systems:
        raise DataError("systems: expected at least one system, found none")
    type_map = list(systems[0].type_map)
    for s in systems[1:]:
        if list(s.type_map) != type_map:
            raise DataError(f"{s.source}: field 'type_map': expected {type_map} (as the first system), found {s.type_map}")
    dev = resolve_device(device)
    nt = len(type_map)
    table = torch.zeros(nt, nt, dtype=torch.long, device=dev)
    min_dist = torch.tensor(float("inf"), dtype=torch.float64, device=dev)
    max_total = 0
    n_seen = 0
    for s in systems:
        nf = s.n_frames if max_frames is None else min(s.n_frames, max_frames)
        n = s.n_atoms
        per_batch = max(1, max_atoms_per_batch // n)
        for start in range(0, nf, per_batch):
            stop = min(nf, start + per_batch)
            # a Dataset reads only these frames (an HDF5 store lazily); labels are not needed
            part = s if isinstance(s, LabeledFrames) else s.read(slice(start, stop))
            b = to_batch(part, slice(start, stop) if part is s else None, device=dev, dtype=torch.float64, labels=False)
            nl = neighbor_list(b.positions, b.cells, b.pbc, rcut, b.frame_index)
            d = pair_vectors(b.positions, b.cells, b.frame_index, nl).norm(dim=-1)
            keep = d < rcut  # a list with a skin may hold longer pairs
            ci, nj = nl.centers[keep], nl.neighbors[keep]
            if d[keep].numel():
                min_dist = torch.minimum(min_dist, d[keep].min())
            all_types = b.atom_types
            counts = torch.bincount(ci * nt + all_types[nj], minlength=b.n_frames * n * nt).reshape(b.n_frames * n, nt)
            table = table.scatter_reduce(0, all_types[:, None].expand(-1, nt), counts, "amax")
            if counts.numel():
                max_total = max(max_total, int(counts.sum(dim=1).max()))
            n_seen += b.n_frames
            if progress is not None:
                progress(b.n_frames)
    table_np = table.cpu().numpy()
    return NeighborStat(type_map, float(rcut), float(min_dist), table_np.max(axis=0), table_np, n_seen, max_total)
