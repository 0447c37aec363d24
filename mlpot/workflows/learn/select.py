"""Candidate selection of concurrent learning: pure functions of the recorded deviations and frames.

* :func:`classify`: DP-GEN's trust levels on the maximum force deviation ε_F,max of a frame
  (:func:`mlpot.metrics.model_deviation`, eV/Å): accurate ε < lo, candidate lo ≤ ε < hi, failed
  ε ≥ hi (too far from the data to be worth a label: unphysical or about to be).
* :func:`pick_candidates`: at most ``n`` candidates spread over the trajectories (round robin over
  the trajectories, a seeded random order inside each), skipping near-duplicates.
* :func:`radial_fingerprint` / :func:`fingerprint_distance`: the cheap structural fingerprint of the
  duplicate check: a Gaussian-smeared pair-distance histogram per atom pair of elements, per atom
  (a frame and its copy have distance 0; distinct thermal snapshots of a crystal ~1e-1).
* :func:`outlier_members`: the ensemble members trained far worse than the others (retrained).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

ACCURATE, CANDIDATE, FAILED = 0, 1, 2
CLASS_NAMES = ("accurate", "candidate", "failed")


def classify(max_devi_f: Any, lo: float, hi: float) -> np.ndarray:
    """Per frame 0 accurate (ε < lo), 1 candidate (lo ≤ ε < hi), 2 failed (ε ≥ hi, or not finite).
    ``max_devi_f``: (F,) eV/Å."""
    e = np.asarray(max_devi_f, dtype=np.float64).reshape(-1)
    out = np.full(e.shape, FAILED, dtype=np.int64)
    finite = np.isfinite(e)
    out[finite & (e < lo)] = ACCURATE
    out[finite & (e >= lo) & (e < hi)] = CANDIDATE
    return out


def counts(classes: Any) -> dict[str, int]:
    """``{"accurate": n, "candidate": n, "failed": n}`` of a class array."""
    c = np.asarray(classes).reshape(-1)
    return {name: int(np.sum(c == k)) for k, name in enumerate(CLASS_NAMES)}


def radial_fingerprint(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], symbols: Sequence[str],
                       rcut: float = 6.0, width: float = 0.1, n_bins: int = 60) -> np.ndarray:
    """The fingerprint of one frame: for each (element a ≤ element b) a histogram of the a–b pair
    distances up to ``rcut`` (Å) smeared by Gaussians of ``width`` (Å), divided by the number of
    atoms; concatenated, (n_pairs_of_elements · n_bins,). positions (N, 3) Å, cell (3, 3) Å."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(symbols=list(symbols), positions=positions, cell=cell, pbc=list(pbc))
    i, j, d = neighbor_list("ijd", atoms, rcut)
    elems = sorted(set(symbols))
    sym = np.array(list(symbols))
    grid = np.linspace(0.0, rcut, n_bins)
    blocks = []
    for ia, a in enumerate(elems):
        for b in elems[ia:]:
            m = ((sym[i] == a) & (sym[j] == b)) | ((sym[i] == b) & (sym[j] == a))
            dd = d[m]
            h = np.exp(-0.5 * ((grid[None, :] - dd[:, None]) / width) ** 2).sum(0) if dd.size else np.zeros(n_bins)
            blocks.append(h / len(symbols))
    return np.concatenate(blocks)


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|a − b| / ((|a| + |b|) / 2): 0 for the same structure, relative otherwise (inf if shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    scale = 0.5 * (np.linalg.norm(a) + np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


def pick_candidates(candidates: Sequence[Sequence[int]], n: int, seed: int = 0,
                    fingerprints: Optional[Sequence[Sequence[Optional[np.ndarray]]]] = None,
                    tolerance: float = 0.0,
                    fingerprint_fn: Optional[Callable[[int, int], np.ndarray]] = None) -> list[tuple[int, int]]:
    """At most ``n`` (trajectory, frame) pairs out of ``candidates[t]`` (the candidate frame indices of
    trajectory t), spread over the trajectories: each trajectory's candidates in a random order
    (``seed``), then one from each trajectory in turn. With ``fingerprints[t][frame]`` (or
    ``fingerprint_fn(t, frame)``, called only for the frames considered) and ``tolerance`` > 0 a frame
    within ``tolerance`` (:func:`fingerprint_distance`) of one already picked is skipped (a
    near-duplicate). Deterministic for a given seed."""
    if fingerprints is not None and fingerprint_fn is None:
        def fingerprint_fn(t: int, f: int) -> Optional[np.ndarray]:
            return fingerprints[t][f]
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.asarray(c, dtype=np.int64))) for c in candidates]
    picked: list[tuple[int, int]] = []
    kept: list[np.ndarray] = []
    while len(picked) < n and any(queues):
        for t, q in enumerate(queues):
            if len(picked) >= n:
                break
            while q:
                f = int(q.pop(0))
                fp = None if (fingerprint_fn is None or tolerance <= 0) else fingerprint_fn(t, f)
                if fp is not None and tolerance > 0 and any(fingerprint_distance(fp, k) < tolerance for k in kept):
                    continue  # a near-duplicate of a picked frame: try this trajectory's next one
                picked.append((t, f))
                if fp is not None:
                    kept.append(fp)
                break
    return picked


def histogram(values: Any, lo: float, hi: float, n_bins: int = 30) -> dict[str, list[float]]:
    """A histogram of ε_F,max (eV/Å) on log-spaced bins spanning [lo/10, 10·hi] (values outside go to
    the end bins): ``{"edges": [...], "counts": [...]}``."""
    e = np.asarray(values, dtype=np.float64).reshape(-1)
    e = e[np.isfinite(e)]
    edges = np.geomspace(lo / 10.0, hi * 10.0, n_bins + 1)
    c, _ = np.histogram(np.clip(e, edges[0], edges[-1] * (1 - 1e-12)), bins=edges)
    return {"edges": edges.tolist(), "counts": c.astype(int).tolist()}


def outlier_members(rmse: Sequence[float], factor: float) -> list[int]:
    """The members whose error on the training data is far above the others': indices k with
    ``rmse[k] > factor × median(rmse of the other members)`` or a non-finite ``rmse[k]``.
    ``rmse``: (members,) force RMSE on the training data, eV/Å; ``factor`` ≥ 1.

    Why: one badly trained member (an unlucky initialisation that never recovers) inflates the
    ensemble's force deviation on every frame, so no frame is ever accurate and the loop labels
    frames the other members already get right."""
    e = np.asarray(rmse, dtype=np.float64).reshape(-1)
    out = []
    for k in range(e.size):
        others = np.delete(e, k)
        others = others[np.isfinite(others)]
        if not np.isfinite(e[k]):
            out.append(k)
        elif others.size and e[k] > factor * float(np.median(others)):
            out.append(k)
    return out


__all__ = ["classify", "counts", "pick_candidates", "radial_fingerprint", "fingerprint_distance", "histogram",
           "outlier_members", "ACCURATE", "CANDIDATE", "FAILED", "CLASS_NAMES"]
