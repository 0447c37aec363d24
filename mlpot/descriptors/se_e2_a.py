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

from typing import Any, Optional, Sequence, Union

import torch

from mlpot.descriptors.env import edge_env_rows, normalize_rows, padding_rows
from mlpot.errors import ConfigError, ModelError
from mlpot.nn import EmbeddingNet, check_activation, precision_name, resolve_precision


def normalize_sel(sel: Any, ntypes: int, where: str = "model.descriptor.sel") -> list[int]:
    """``sel`` as one int per type. A list must have one entry per type; a single int is accepted
    only for a one-type model (DeePMD's se_e2_a/se_e2_r are type-split: sel is per type).
    "auto" must be resolved (by neighbor statistics) before the model is built."""
    if isinstance(sel, str):
        raise ConfigError(f"{where}: {sel!r} must be resolved to a list of ints (one per type) before building the model")
    if isinstance(sel, (int,)) and not isinstance(sel, bool):
        if ntypes != 1:
            raise ConfigError(
                f"{where}: got a single int ({sel}) for {ntypes} types; se_e2_a/se_e2_r need one sel per type, e.g. [46, 92]"
            )
        sel = [sel]
    try:
        out = [int(s) for s in sel]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a list of {ntypes} non-negative ints, got {sel!r}") from None
    if len(out) != ntypes or any(s < 0 for s in out):
        raise ConfigError(f"{where}: expected {ntypes} non-negative ints (one per type in type_map), got {sel!r}")
    if sum(out) == 0:
        raise ConfigError(f"{where}: sum(sel) must be positive, got {sel!r}")
    return out


class SeDescriptorBase(torch.nn.Module):
    """Shared parts of se_e2_a / se_e2_r: hyperparameters, statistics buffers, neighbor counting.

    Buffers: ``davg``, ``dstd`` (ntypes, k) per *center* type (DeePMD stores them tiled over the nnei
    slots; they are slot-independent), ``sel`` (ntypes,) int64.
    """

    type_name = ""
    radial_only = False

    def __init__(
        self,
        ntypes: int,
        rcut: float,
        rcut_smth: float,
        sel: Union[int, Sequence[int]],
        neuron: Sequence[int] = (25, 50, 100),
        resnet_dt: bool = False,
        activation_function: str = "tanh",
        precision: str = "float64",
        set_davg_zero: bool = False,
        type_one_side: bool = True,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.ntypes = int(ntypes)
        self.rcut = float(rcut)
        self.rcut_smth = float(rcut_smth)
        if not (self.rcut > 0 and 0 <= self.rcut_smth < self.rcut):
            raise ConfigError(
                f"model.descriptor: need 0 <= rcut_smth < rcut, got rcut_smth={rcut_smth}, rcut={rcut}"
            )
        self.sel_list = normalize_sel(sel, self.ntypes)
        self.nnei = sum(self.sel_list)
        self.neuron = [int(n) for n in neuron]
        if not self.neuron or any(n <= 0 for n in self.neuron):
            raise ConfigError(f"model.descriptor.neuron: expected a non-empty list of positive ints, got {neuron!r}")
        self.resnet_dt = bool(resnet_dt)
        self.activation_function = check_activation(activation_function, "model.descriptor.activation_function")
        self.dtype = resolve_precision(precision, "model.descriptor.precision")
        self.set_davg_zero = bool(set_davg_zero)
        self.type_one_side = bool(type_one_side)
        self.seed = seed
        k = 1 if self.radial_only else 4
        self.register_buffer("davg", torch.zeros(self.ntypes, k, dtype=self.dtype))
        self.register_buffer("dstd", torch.ones(self.ntypes, k, dtype=self.dtype))
        self.register_buffer("sel", torch.tensor(self.sel_list, dtype=torch.long))

    # -- config --------------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {
            "type": self.type_name,
            "rcut": self.rcut,
            "rcut_smth": self.rcut_smth,
            "sel": list(self.sel_list),
            "neuron": list(self.neuron),
            "resnet_dt": self.resnet_dt,
            "activation_function": self.activation_function,
            "precision": precision_name(self.dtype),
            "set_davg_zero": self.set_davg_zero,
            "type_one_side": self.type_one_side,
            "seed": self.seed,
        }

    def _generator(self) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        g = torch.Generator()
        g.manual_seed(int(self.seed))
        return g

    def _make_embeddings(self) -> torch.nn.ModuleDict:
        """Embedding nets: key "t" (neighbor type) if type_one_side, else "c_t" (center c, neighbor t).

        DeePMD-kit's NetworkCollection stores the (c, t) net at flat index c + t·ntypes.
        """
        g = self._generator()
        nets = {}
        if self.type_one_side:
            for t in range(self.ntypes):
                nets[str(t)] = EmbeddingNet(1, self.neuron, self.activation_function, self.resnet_dt, self.dtype, g)
        else:
            for c in range(self.ntypes):
                for t in range(self.ntypes):
                    nets[f"{c}_{t}"] = EmbeddingNet(1, self.neuron, self.activation_function, self.resnet_dt, self.dtype, g)
        return torch.nn.ModuleDict(nets)

    def embedding(self, center_type: int, neighbor_type: int) -> EmbeddingNet:
        key = str(neighbor_type) if self.type_one_side else f"{center_type}_{neighbor_type}"
        return self.embeddings[key]

    # -- statistics ------------------------------------------------------------------------------
    def env_rows(self, rij: torch.Tensor) -> torch.Tensor:
        """Un-normalised environment rows of edges (E, 3) → (E, k), model precision."""
        return edge_env_rows(rij.to(self.dtype), self.rcut_smth, self.rcut, self.radial_only)

    def set_stats(self, davg: torch.Tensor, dstd: torch.Tensor) -> None:
        """Store the environment mean/std, (ntypes, k) each (per center type).

        For se_e2_a, rotational covariance needs the angular columns to have zero mean and one
        shared std (DeePMD's statistics always satisfy this; see :mod:`mlpot.data.stats`). A
        DeePMD-kit ``davg``/``dstd`` of shape (ntypes, nnei, 4) is tiled over the slots: pass its
        first slot, ``davg[:, 0, :]``.
        """
        davg = torch.as_tensor(davg, dtype=self.dtype, device=self.davg.device).reshape(self.davg.shape)
        dstd = torch.as_tensor(dstd, dtype=self.dtype, device=self.dstd.device).reshape(self.dstd.shape)
        if not torch.all(dstd > 0):
            raise ModelError("descriptor statistics: every std must be positive")
        with torch.no_grad():
            self.davg.copy_(davg)
            self.dstd.copy_(dstd)

    # -- neighbor bookkeeping ----------------------------------------------------------------------
    def neighbor_counts(
        self,
        centers: torch.Tensor,
        neighbor_types: torch.Tensor,
        n_atoms: int,
        frame_index: Optional[torch.Tensor] = None,
        type_map: Optional[Sequence[str]] = None,
    ) -> torch.Tensor:
        """Neighbors of each type within rcut per atom, (n_atoms, ntypes) int64; raises
        :class:`ModelError` when a count exceeds ``sel`` (naming frame, atom, type, count, sel)."""
        flat = centers * self.ntypes + neighbor_types
        counts = torch.bincount(flat, minlength=n_atoms * self.ntypes).reshape(n_atoms, self.ntypes)
        over = counts > self.sel.to(counts.device)[None, :]
        if bool(over.any()):
            atom, t = (int(v) for v in torch.nonzero(over)[0])
            n = int(counts[atom, t])
            frame, local = 0, atom
            if frame_index is not None:
                frame = int(frame_index[atom])
                local = atom - int(torch.searchsorted(frame_index, torch.tensor(frame, device=frame_index.device)))
            tname = f"'{type_map[t]}' (type {t})" if type_map is not None else f"type {t}"
            raise ModelError(
                f"neighbor overflow: frame {frame}, atom {local} has {n} neighbors of {tname} within "
                f"rcut={self.rcut} Å but model.descriptor.sel[{t}] = {self.sel_list[t]}; "
                f"raise sel[{t}] to at least {n} (mlpot neighbor-stat gives the maximum)"
            )
        return counts


class DescriptorSeA(SeDescriptorBase):
    """``se_e2_a``: see the module docstring. Output (n_atoms, neuron[-1] · axis_neuron)."""

    type_name = "se_e2_a"
    radial_only = False

    def __init__(self, ntypes: int, rcut: float, rcut_smth: float, sel, neuron=(25, 50, 100), axis_neuron: int = 16, **kwargs) -> None:
        super().__init__(ntypes, rcut, rcut_smth, sel, neuron, **kwargs)
        self.axis_neuron = int(axis_neuron)
        if not 0 < self.axis_neuron <= self.neuron[-1]:
            raise ConfigError(
                f"model.descriptor.axis_neuron: expected 1..neuron[-1]={self.neuron[-1]}, got {axis_neuron}"
            )
        self.embeddings = self._make_embeddings()

    @property
    def dim_out(self) -> int:
        return self.neuron[-1] * self.axis_neuron

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg["axis_neuron"] = self.axis_neuron
        return cfg

    def forward(
        self,
        rij: torch.Tensor,
        centers: torch.Tensor,
        neighbor_types: torch.Tensor,
        atom_types: torch.Tensor,
        counts: torch.Tensor,
    ) -> torch.Tensor:
        """Descriptor of every atom.

        rij (E, 3) Å: edges with |r_ij| < rcut only; centers (E,) int64 atom index of i;
        neighbor_types (E,) type of j; atom_types (N,); counts (N, ntypes) from
        :meth:`neighbor_counts`. Returns (N, neuron[-1]·axis_neuron) in the model precision.
        """
        n_atoms = atom_types.shape[0]
        m1 = self.neuron[-1]
        rows = normalize_rows(self.env_rows(rij), atom_types[centers], self.davg, self.dstd)  # (E, 4)
        center_types = atom_types[centers]
        # real neighbors: scatter-add R̃ ⊗ G per edge into its center, one row component at a time
        # so that no (E, 4, M1) temporary is formed
        acc_k = [torch.zeros(n_atoms, m1, dtype=self.dtype, device=rows.device) for _ in range(4)]
        for c in ([None] if self.type_one_side else range(self.ntypes)):
            for t in range(self.ntypes):
                sel_mask = neighbor_types == t
                if c is not None:
                    sel_mask = sel_mask & (center_types == c)
                idx = torch.nonzero(sel_mask).reshape(-1)
                if idx.numel() == 0:
                    continue
                r_t = rows[idx]  # (E_t, 4)
                g_t = self.embedding(-1 if c is None else c, t)(r_t[:, :1])  # (E_t, M1)
                c_t = centers[idx]
                for k in range(4):
                    acc_k[k] = acc_k[k].index_add(0, c_t, r_t[:, k : k + 1] * g_t)
        acc = torch.stack(acc_k, dim=1)  # (N, 4, M1)
        # empty slots, analytically: (sel_t − n_t(i)) · r̃_pad[c_i] ⊗ G_{(c_i,)t}(s̃_pad[c_i])
        pad_rows = padding_rows(self.davg, self.dstd)  # (ntypes_c, 4)
        pad_table = []
        for t in range(self.ntypes):
            if self.type_one_side:
                g_pad = self.embedding(-1, t)(pad_rows[:, :1])  # (ntypes_c, M1)
            else:
                g_pad = torch.cat([self.embedding(c, t)(pad_rows[c : c + 1, :1]) for c in range(self.ntypes)], dim=0)
            pad_table.append(pad_rows[:, :, None] * g_pad[:, None, :])  # (ntypes_c, 4, M1)
        pad_table_t = torch.stack(pad_table, dim=1)  # (ntypes_c, ntypes_t, 4, M1)
        n_empty = (self.sel.to(counts.device)[None, :] - counts).to(self.dtype)  # (N, ntypes_t)
        acc = acc + torch.einsum("nt,ntkm->nkm", n_empty, pad_table_t[atom_types])
        acc = acc / self.nnei
        d = torch.matmul(acc.transpose(1, 2), acc[:, :, : self.axis_neuron])  # (N, M1, M2)
        return d.reshape(n_atoms, m1 * self.axis_neuron)
