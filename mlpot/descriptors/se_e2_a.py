"""DeepPot-SE two-body embedding descriptor with full relative coordinates (``se_e2_a``).

Physics and conventions are those of DeePMD-kit's PyTorch backend (v3),
``deepmd/pt/model/descriptor/se_a.py`` (``DescrptBlockSeA.forward``), which this module reproduces
numerically for any neighbor list that does not overflow ``sel``. For an atom i of type c:

* every neighbor j of type t within rcut gives a normalised row ``R̃_ij = (R_ij − avg[c])/std[c]``
  (:mod:`mlpot.descriptors.env`) and an embedding ``G_ij = N_t(s̃_ij)`` (``type_one_side``) or
  ``N_{c,t}(s̃_ij)``, with s̃ the first column of R̃;
* DeePMD pads the neighbors of type t to ``sel[t]`` slots; an empty slot has ``R = 0`` and thus
  ``R̃ = r̃_pad[c] = −avg[c]/std[c]`` and embedding ``G_t(r̃_pad[c, 0])``;
* ``A_i = (1/nnei) Σ_{all nnei = Σ sel slots} R̃ᵀ G``  (4 × M1),
  ``D_i = A_iᵀ A_i[:, :M2]`` flattened to M1·M2 (row-major in M1), M2 = ``axis_neuron``.

Implementation: *edge-based*. Per-edge outer products ``R̃_ij ⊗ G_ij`` are scatter-added into the
center atom, and the empty slots are added analytically as ``(sel_t − n_t(i)) · r̃_pad ⊗ G_t(pad)``,
where n_t(i) counts the type-t neighbors of i within rcut. This equals DeePMD's padded sum exactly,
costs memory ∝ edges (not atoms × sel), and stays continuous when a neighbor crosses rcut
(its row tends to 0, i.e. to an empty slot). More than ``sel[t]`` neighbors raises
:class:`~mlpot.errors.ModelError` (DeePMD would silently keep the closest ones).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import PositiveInt, model_validator

from mlpot.descriptors.base import DESCRIPTORS, SeConfigBase, SeDescriptorBase
from mlpot.descriptors.environment import Environment
from mlpot.descriptors.env import normalize_rows, padding_rows


class SeE2AConfig(SeConfigBase):
    """``model.descriptor`` of ``se_e2_a`` (alias ``se_a``); defaults of DeePMD-kit 3.2's ``argcheck``."""

    type: Literal["se_e2_a"] = "se_e2_a"
    axis_neuron: PositiveInt = 4

    @model_validator(mode="after")
    def _axis(self) -> "SeE2AConfig":
        if self.axis_neuron > self.neuron[-1]:
            raise ValueError(
                f"descriptor.axis_neuron: expected 1..neuron[-1]={self.neuron[-1]}, found {self.axis_neuron}"
            )
        return self


@DESCRIPTORS.register("se_e2_a", aliases=("se_a",), config=SeE2AConfig)
class DescriptorSeA(SeDescriptorBase):
    """``se_e2_a``: see the module docstring. Output (n_atoms, neuron[-1] · axis_neuron)."""

    type_name = "se_e2_a"
    radial_only = False

    def __init__(self, config: SeE2AConfig, ntypes: int) -> None:
        super().__init__(config, ntypes)
        self.axis_neuron = int(config.axis_neuron)
        self.embeddings = self._make_embeddings()

    @property
    def dim_out(self) -> int:
        return self.neuron[-1] * self.axis_neuron

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg["axis_neuron"] = self.axis_neuron
        return cfg

    def forward(self, env: Environment) -> torch.Tensor:
        """Descriptor of every center of ``env`` (edges within rcut; raises ModelError when a
        neighbor count exceeds ``sel``). Returns (n_centers, neuron[-1]·axis_neuron), model precision.
        """
        counts = env.check_sel(self.sel, self.rcut)
        rij, centers, atom_types = env.rij, env.center, env.center_types
        n_atoms = atom_types.shape[0]
        m1 = self.neuron[-1]
        # tabulated embedding fused with the contraction (mlpot.descriptors.tabulate): from rij in one
        # kernel where numba runs, else from the rows
        acc = self.fused_compressed_sum(env, with_rows=True) if self.compressed else None  # (N, 4, M1)
        if acc is None:
            rows = normalize_rows(self.env_rows(rij), atom_types[centers], self.davg, self.dstd)  # (E, 4)
            acc = self.compressed_sum(env, rows, with_rows=True) if self.compressed else self._net_sum(env, rows, n_atoms, m1)
        # empty slots, analytically: (sel_t − n_t(i)) · r̃_pad[c_i] ⊗ G_{(c_i,)t}(s̃_pad[c_i])
        pad_rows = padding_rows(self.davg, self.dstd)  # (ntypes_c, 4)
        g_pad = self.padding_embeddings()  # (ntypes_c, ntypes_t, M1)
        pad_table_t = pad_rows[:, None, :, None] * g_pad[:, :, None, :]  # (ntypes_c, ntypes_t, 4, M1)
        n_empty = (self.sel.to(counts.device)[None, :] - counts).to(self.dtype)  # (N, ntypes_t)
        acc = acc + torch.einsum("nt,ntkm->nkm", n_empty, pad_table_t[atom_types])
        acc = acc / self.nnei
        d = torch.matmul(acc.transpose(1, 2), acc[:, :, : self.axis_neuron])  # (N, M1, M2)
        return d.reshape(n_atoms, m1 * self.axis_neuron)

    def _net_sum(self, env: Environment, rows: torch.Tensor, n_atoms: int, m1: int) -> torch.Tensor:
        """Σ_j R̃_ij ⊗ G_ij over the real neighbors with the embedding nets: (N, 4, M1)."""
        centers, neighbor_types = env.center, env.neighbor_type
        center_types = env.center_types[centers]
        # scatter-add R̃ ⊗ G per edge into its center, one row component at a time
        # so that no (E, 4, M1) temporary is formed
        acc_k = [torch.zeros(n_atoms, m1, dtype=self.dtype, device=rows.device) for _ in range(4)]
        groups = env.type_groups()
        for c in ([None] if self.type_one_side else range(self.ntypes)):
            for t in range(self.ntypes):
                if c is None:
                    idx = groups[t]
                else:
                    idx = torch.nonzero((neighbor_types == t) & (center_types == c)).reshape(-1)
                if idx.numel() == 0:
                    continue
                r_t = rows[idx]  # (E_t, 4)
                g_t = self.embedding(-1 if c is None else c, t)(r_t[:, :1])  # (E_t, M1)
                c_t = centers[idx]
                for k in range(4):
                    acc_k[k] = acc_k[k].index_add(0, c_t, r_t[:, k : k + 1] * g_t)
        return torch.stack(acc_k, dim=1)
