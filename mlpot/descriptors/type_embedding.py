"""Learned element (type) embedding of the attention descriptors (se_atten / DPA-1, se_atten_v2).

DeePMD-kit 3.x (``deepmd/pt/model/network/network.py`` ``TypeEmbedNetConsistent`` with
``neuron=[tebd_dim]``, ``activation_function="Linear"``, ``padding=True``): a one-layer linear net
applied to the one-hot code of each type, i.e. a lookup table

    A_t = W[t] (+ b)           (+ e_t if tebd_dim == ntypes, + [e_t, e_t] if tebd_dim == 2·ntypes)

(the residual skip of DeePMD's embedding layers applies when the width stays or doubles), followed by
one extra zero row for "no atom" (index ``ntypes``). ``W`` (ntypes, tebd_dim); the bias exists only
with ``use_tebd_bias``. Dimensionless.
"""

from __future__ import annotations

import math
from typing import Optional

import torch


class TypeEmbedding(torch.nn.Module):
    """``forward() -> (ntypes + 1, tebd_dim)``: the embedding of every type, then a zero row.

    Parameters: ``matrix`` (ntypes, tebd_dim), ``bias`` (tebd_dim,) or None."""

    def __init__(
        self,
        ntypes: int,
        tebd_dim: int,
        use_bias: bool = False,
        dtype: torch.dtype = torch.float64,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        self.ntypes, self.tebd_dim = int(ntypes), int(tebd_dim)
        w = torch.randn(self.ntypes, self.tebd_dim, generator=generator, dtype=torch.float64)
        self.matrix = torch.nn.Parameter((w / math.sqrt(self.ntypes + self.tebd_dim)).to(dtype))
        if use_bias:
            b = torch.randn(self.tebd_dim, generator=generator, dtype=torch.float64)
            self.bias: Optional[torch.nn.Parameter] = torch.nn.Parameter(b.to(dtype))
        else:
            self.register_parameter("bias", None)
        #: DeePMD's residual skip: identity (equal widths) or [I, I] (doubled width)
        self.skip = self.tebd_dim in (self.ntypes, 2 * self.ntypes)

    def forward(self) -> torch.Tensor:
        table = self.matrix if self.bias is None else self.matrix + self.bias
        if self.skip:
            eye = torch.eye(self.ntypes, dtype=table.dtype, device=table.device)
            table = table + (eye if self.tebd_dim == self.ntypes else torch.cat([eye, eye], dim=-1))
        pad = torch.zeros(1, self.tebd_dim, dtype=table.dtype, device=table.device)
        return torch.cat([table, pad], dim=0)


__all__ = ["TypeEmbedding"]
