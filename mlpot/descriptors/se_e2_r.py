"""DeepPot-SE two-body embedding descriptor with radial information only (``se_e2_r``).

Conventions of DeePMD-kit's PyTorch backend (v3), ``deepmd/pt/model/descriptor/se_r.py``
(``DescrptSeR.forward``): with s̃ the normalised ``sw(r)/r`` of each neighbor slot (empty slots:
``s̃_pad[c] = −avg[c]/std[c]``) and one embedding net per *neighbor* type,

    D_i = (1/5) · (1/nnei) · Σ_{all nnei = Σ sel slots} G_t(s̃)        (neuron[-1] features)

(DeePMD writes it as Σ_t mean over the sel[t] slots of type t times sel[t]/nnei, then a fixed
rescale 1/5). Edge-based like :mod:`mlpot.descriptors.se_e2_a`: per-edge embeddings are
scatter-added and the empty slots added analytically.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import field_validator

from mlpot.descriptors.base import DESCRIPTORS, SeConfigBase, SeDescriptorBase
from mlpot.descriptors.env import normalize_rows
from mlpot.descriptors.environment import Environment

#: DeePMD-kit's fixed output rescale of se_e2_r
RESCALE = 1.0 / 5.0


class SeE2RConfig(SeConfigBase):
    """``model.descriptor`` of ``se_e2_r`` (alias ``se_r``). DeePMD-kit's PyTorch backend always has
    one embedding net per neighbor type, so ``type_one_side`` is true (its only accepted value)."""

    type: Literal["se_e2_r"] = "se_e2_r"
    type_one_side: bool = True

    @field_validator("type_one_side")
    @classmethod
    def _one_side(cls, v: bool) -> bool:
        if not v:
            raise ValueError("expected true (se_e2_r supports only type_one_side = true)")
        return v


@DESCRIPTORS.register("se_e2_r", aliases=("se_r",), config=SeE2RConfig)
class DescriptorSeR(SeDescriptorBase):
    """``se_e2_r``; output (n_atoms, neuron[-1])."""

    type_name = "se_e2_r"
    radial_only = True

    def __init__(self, config: SeE2RConfig, ntypes: int) -> None:
        super().__init__(config, ntypes)
        self.embeddings = self._make_embeddings()

    @property
    def dim_out(self) -> int:
        return self.neuron[-1]

    def forward(self, env: Environment) -> torch.Tensor:
        """As :meth:`DescriptorSeA.forward`; returns (n_centers, neuron[-1])."""
        counts = env.check_sel(self.sel, self.rcut)
        rij, centers, atom_types = env.rij, env.center, env.center_types
        n_atoms = atom_types.shape[0]
        m1 = self.neuron[-1]
        fused = self.fused_compressed_sum(env, with_rows=False) if self.compressed else None
        if fused is not None:  # tabulated embedding from rij in one kernel (numba)
            acc = fused[:, 0, :]
        elif self.compressed:  # tabulated embedding (mlpot.descriptors.tabulate)
            s = normalize_rows(self.env_rows(rij), atom_types[centers], self.davg, self.dstd)  # (E, 1)
            acc = self.compressed_sum(env, s, with_rows=False)[:, 0, :]
        else:
            s = normalize_rows(self.env_rows(rij), atom_types[centers], self.davg, self.dstd)  # (E, 1)
            acc = torch.zeros(n_atoms, m1, dtype=self.dtype, device=s.device)
            for t, idx in enumerate(env.type_groups()):
                if idx.numel() == 0:
                    continue
                acc = acc.index_add(0, centers[idx], self.embedding(-1, t)(s[idx]))
        g_pad = self.padding_embeddings()  # (c, t, M1)
        n_empty = (self.sel.to(counts.device)[None, :] - counts).to(self.dtype)  # (N, t)
        acc = acc + torch.einsum("nt,ntm->nm", n_empty, g_pad[atom_types])
        return acc * (RESCALE / self.nnei)
