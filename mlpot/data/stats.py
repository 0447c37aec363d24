"""Training-data statistics: descriptor (environment matrix) mean/std and per-type energy bias.

:func:`compute_stats` sets them on a model from training systems; the rest are pure functions on
numpy / torch arrays.

Descriptor statistics follow DeePMD-kit (``deepmd/pt/utils/env_mat_stat.py`` ``EnvMatStatSe`` and
``deepmd/utils/env_mat_stat.py`` ``StatItem``): for each *center* type c, pool every neighbor slot of
every atom of type c — all ``nnei = sum(sel)`` slots, *including the empty ones*, whose
un-normalised row is 0 — and

* radial column s: ``avg_r = Σs / n``, ``std_r = sqrt(Σs²/n − avg_r²)`` with n = n_atoms_c · nnei;
* the three angular columns pooled together: ``std_a = sqrt(Σa²/m − (Σa/m)²)``, m = 3 n; their mean
  is *not* stored: davg = (avg_r, 0, 0, 0), dstd = (std_r, std_a, std_a, std_a);
* std below 1e-2 is replaced by 1e-2 ("protection"); a type with no atoms gets avg 0, std 0.1.
* ``set_davg_zero`` keeps avg = 0 (std as above).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

STD_PROTECTION = 1e-2
STD_DEFAULT = 1e-1


def env_stat_sums(
    rows: torch.Tensor, center_types: torch.Tensor, n_centers_per_type: torch.Tensor, nnei: int, ntypes: int
) -> np.ndarray:
    """Accumulators for the environment statistics of one batch of edges.

    rows: (E, k) un-normalised environment rows (k = 4 for se_e2_a, 1 for se_e2_r) of the edges with
    r < rcut; center_types: (E,) type of each edge's center; n_centers_per_type: (ntypes,) number of
    atoms of each type in the batch (every atom is a center with nnei slots).
    Returns float64 (ntypes, 2, 3) = [[n_r, Σs, Σs²], [n_a, Σa, Σa²]] (angular row zero if k = 1).
    Empty slots contribute to the counts only (their row is 0).
    """
    rows = rows.detach().to(torch.float64)
    ct = center_types.to(rows.device)
    out = torch.zeros(ntypes, 2, 3, dtype=torch.float64, device=rows.device)
    n_atoms = n_centers_per_type.to(device=rows.device, dtype=torch.float64)
    out[:, 0, 0] = n_atoms * nnei
    out[:, 0, 1].index_add_(0, ct, rows[:, 0])
    out[:, 0, 2].index_add_(0, ct, rows[:, 0] ** 2)
    if rows.shape[1] > 1:
        ang = rows[:, 1:]
        out[:, 1, 0] = n_atoms * nnei * ang.shape[1]
        out[:, 1, 1].index_add_(0, ct, ang.sum(dim=1))
        out[:, 1, 2].index_add_(0, ct, (ang**2).sum(dim=1))
    return out.cpu().numpy()


def _avg_std(n: float, s: float, s2: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, STD_DEFAULT
    avg = s / n
    var = s2 / n - avg * avg
    std = float(np.sqrt(max(var, 0.0)))
    if abs(std) < STD_PROTECTION:
        std = STD_PROTECTION
    return float(avg), std


def env_mean_std(sums: np.ndarray, radial_only: bool, set_davg_zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """davg, dstd per center type from accumulated :func:`env_stat_sums`: (ntypes, 4) or (ntypes, 1)."""
    ntypes = sums.shape[0]
    k = 1 if radial_only else 4
    avg = np.zeros((ntypes, k))
    std = np.ones((ntypes, k))
    for t in range(ntypes):
        a_r, s_r = _avg_std(*sums[t, 0])
        avg[t, 0] = 0.0 if set_davg_zero else a_r
        std[t, 0] = s_r
        if not radial_only:
            _, s_a = _avg_std(*sums[t, 1])
            std[t, 1:] = s_a
    return avg, std


def energy_bias_lstsq(type_counts: np.ndarray, energies: np.ndarray, rcond: Optional[float] = None) -> np.ndarray:
    """Per-type energy (eV) minimising Σ_f (E_f − Σ_t N_ft b_t)²; minimum-norm solution when the
    compositions do not determine it (e.g. a type that never occurs gets 0).

    type_counts: (F, ntypes) atoms of each type per frame; energies: (F,) eV. Returns (ntypes,).
    """
    x = np.asarray(type_counts, dtype=np.float64)
    y = np.asarray(energies, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"type_counts {x.shape} and energies {y.shape} do not match")
    bias, *_ = np.linalg.lstsq(x, y, rcond=rcond)
    return bias


@torch.no_grad()
def compute_stats(model: Any, systems: Sequence[Any], max_frames: int = 20, seed: int = 0, energy_bias: bool = True) -> None:
    """Set ``model``'s descriptor mean/std (from up to ``max_frames`` frames per system, through the
    descriptor's :meth:`stat_rows` of an :class:`~mlpot.descriptors.environment.Environment`) and,
    with ``energy_bias``, its per-type energy bias (least squares of the frame energies on the type
    counts, all frames). ``systems``: :class:`~mlpot.data.frames.LabeledFrames`, any type_map (remapped)."""
    from mlpot.descriptors.environment import Environment
    from mlpot.errors import ModelError
    from mlpot.neighbors import pair_vectors, neighbor_list

    if not systems:
        raise ModelError("compute_stats: no training systems given")
    dev, dt = model.device, model.dtype
    desc = model.descriptor
    env_stats = hasattr(desc, "stat_rows")  # a descriptor without normalisation statistics: bias only
    ntypes, type_map = model.ntypes, list(model.type_map)
    sums = np.zeros((ntypes, 2, 3))
    d_min = float("inf")
    counts_rows, energies = [], []
    for system in systems:
        sys_ = system.with_type_map(type_map) if list(system.type_map) != type_map else system
        types_np = np.asarray(sys_.atom_types, dtype=np.int64)
        sel_idx = subsample_indices(sys_.n_frames, max_frames, seed)
        nf = len(sel_idx)
        if energy_bias and sys_.energies is not None:
            counts_rows.append(np.tile(np.bincount(types_np, minlength=ntypes), (sys_.n_frames, 1)))
            energies.append(np.asarray(sys_.energies, dtype=np.float64))
        if not env_stats:
            continue
        pos = torch.as_tensor(sys_.positions[sel_idx], dtype=dt, device=dev).reshape(-1, 3)
        cells = torch.as_tensor(sys_.cells[sel_idx], dtype=dt, device=dev)
        pbc = torch.as_tensor(np.broadcast_to(sys_.pbc, (nf, 3)).copy(), device=dev)
        types = torch.as_tensor(types_np, device=dev).repeat(nf)
        fidx = torch.arange(nf, device=dev).repeat_interleave(sys_.n_atoms)
        nl = neighbor_list(pos, cells, pbc, model.rcut, fidx)
        rij = pair_vectors(pos, cells, fidx, nl)
        keep = torch.nonzero(torch.linalg.vector_norm(rij, dim=-1) < model.rcut).reshape(-1)
        env = Environment(rij[keep], nl.centers[keep], types[nl.neighbors[keep]], types, ntypes, fidx, 0, type_map)
        if keep.numel():
            d_min = min(d_min, float(torch.linalg.vector_norm(rij[keep], dim=-1).min()))
        rows = desc.stat_rows(env)
        n_per_type = torch.bincount(types, minlength=ntypes)
        sums += env_stat_sums(rows, env.edge_center_types, n_per_type, desc.nnei, ntypes)
    if env_stats and d_min < float("inf") and hasattr(model, "min_nbor_dist"):
        model.min_nbor_dist = d_min  # shortest pair of these frames (Å): the compression table range
    if env_stats:
        avg, std = env_mean_std(sums, desc.radial_only, desc.set_davg_zero)
        desc.set_stats(torch.as_tensor(avg), torch.as_tensor(std))
    if energy_bias:
        if not energies:
            raise ModelError("compute_stats: no system has energies; cannot fit the per-type energy bias")
        bias = energy_bias_lstsq(np.concatenate(counts_rows), np.concatenate(energies))
        model.fitting.energy_bias.copy_(torch.as_tensor(bias, dtype=model.fitting.dtype))


def min_pair_distance(systems: Sequence[Any], rcut: float, device: Any = "cpu") -> Optional[float]:
    """The shortest pair distance (Å) within ``rcut`` over all frames of ``systems`` (LabeledFrames),
    None when no pair is within rcut."""
    from mlpot.data.neighbor_stat import neighbor_stat

    d = float(neighbor_stat(list(systems), rcut, device=str(device)).min_dist) if systems else float("inf")
    return d if d < float("inf") else None


def subsample_indices(n_frames: int, max_frames: int, seed: int = 0) -> np.ndarray:
    """Up to ``max_frames`` distinct frame indices of ``range(n_frames)``, sorted, reproducible."""
    if n_frames <= max_frames:
        return np.arange(n_frames)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_frames, size=max_frames, replace=False))
