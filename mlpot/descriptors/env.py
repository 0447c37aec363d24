"""Smooth switch and per-edge environment-matrix rows of the DeepPot-SE descriptors.

Conventions follow DeePMD-kit (PyTorch backend, v3): ``deepmd/pt/utils/preprocess.py``
(``compute_smooth_weight``) and ``deepmd/pt/model/descriptor/env_mat.py`` (``_make_env_mat``,
``prod_env_mat``). Formulas (Zhang et al., NeurIPS 2018; Wang et al., CPC 228, 178 (2018)):

* switch ``sw(r) = 1`` for ``r <= rcut_smth``, ``0`` for ``r >= rcut`` and
  ``u³(−6u² + 15u − 10) + 1`` in between, ``u = (r − rcut_smth)/(rcut − rcut_smth)``; ``sw`` is
  C² at both ends (first and second derivatives vanish);
* environment row of an edge ``r_ij = (x, y, z)``: ``(s, s·x/r, s·y/r, s·z/r)`` with ``s = sw(r)/r``
  (``se_e2_a``), or ``(s,)`` only (``se_e2_r``);
* normalisation per center type: ``R̃ = (R − avg[c]) / std[c]``. An *empty* neighbor slot has
  ``R = 0`` before normalisation, hence ``R̃_pad = −avg[c]/std[c]`` after it.

Everything here works on edges (pairs), never on padded neighbor matrices.
"""

from __future__ import annotations

import torch


def smooth_switch(r: torch.Tensor, rcut_smth: float, rcut: float) -> torch.Tensor:
    """DeePMD's quintic switch ``sw(r)`` (dimensionless), same shape as ``r`` (Å).

    Exactly 1 for ``r <= rcut_smth`` and exactly 0 for ``r >= rcut``; smooth and twice
    differentiable everywhere (the clamp makes the gradient vanish outside the window, where the
    polynomial's own derivatives vanish too).
    """
    if not rcut > rcut_smth:
        raise ValueError(f"rcut ({rcut}) must be larger than rcut_smth ({rcut_smth})")
    u = ((r - rcut_smth) / (rcut - rcut_smth)).clamp(0.0, 1.0)
    return u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0


def edge_env_rows(rij: torch.Tensor, rcut_smth: float, rcut: float, radial_only: bool = False) -> torch.Tensor:
    """Environment-matrix rows of a set of edges, before normalisation.

    rij: (E, 3) Å, pair vectors r_j − r_i, all with 0 < |r_ij| (callers drop |r_ij| >= rcut).
    Returns (E, 4) = (s, s·x/r, s·y/r, s·z/r) with s = sw(r)/r in 1/Å, or (E, 1) = (s,) if
    ``radial_only``.
    """
    r = torch.linalg.vector_norm(rij, dim=-1, keepdim=True)  # (E, 1)
    sw = smooth_switch(r, rcut_smth, rcut)
    s = sw / r
    if radial_only:
        return s
    return torch.cat([s, s * rij / r], dim=-1)


def normalize_rows(rows: torch.Tensor, center_types: torch.Tensor, avg: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(R − avg[c]) / std[c]`` per edge; rows (E, k), center_types (E,), avg/std (ntypes, k)."""
    return (rows - avg[center_types]) / std[center_types]


def padding_rows(avg: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised row of an empty neighbor slot per center type: ``(0 − avg) / std``, (ntypes, k)."""
    return -avg / std
