"""Attention descriptors with type embedding: ``se_atten`` (DPA-1, alias ``dpa1``) and ``se_atten_v2``.

Numerically DeePMD-kit 3.2's PyTorch backend (``deepmd/pt/model/descriptor/{dpa1,se_atten,
se_atten_v2}.py``; the mathematics in ``/work/shared/design/COMPRESSION.md`` §3). For a center atom
i of type c_i with its neighbors within rcut, *not* split by type, sorted by distance and padded to
``sel`` slots S (one int):

* environment rows ``R̃_ij = (R_ij − davg[c_i])/dstd[c_i]`` as in se_e2_a (:mod:`mlpot.descriptors.env`);
  an empty slot has ``R = 0``, i.e. ``R̃ = −davg/dstd``; ``sw_ij`` the smooth switch (0 in empty slots),
  ``r̂_ij`` = the normalised angular part of R̃ (0 in empty slots);
* type embedding ``A_t`` (:class:`~mlpot.descriptors.type_embedding.TypeEmbedding`, tebd_dim);
* pair embedding G (S × ng, ng = neuron[-1]):

  - ``tebd_input_mode: concat``: ``G_ij = N(s̃_ij ⊕ A_{t_j} ⊕ A_{c_i})`` (without ``A_{c_i}`` with
    ``type_one_side``);
  - ``strip`` (always in se_atten_v2): ``G_ij = N_s(s̃_ij) ⊙ (1 + T_ij)``, ``T_ij = N_t(A_{t_j} ⊕ A_{c_i})``
    (``N_t(A_{t_j})`` with ``type_one_side``), times ``sw_ij`` with ``smooth_type_embedding``.
    ``N_s`` is a function of s̃ alone (:meth:`DescriptorSeAtten.geometric_embedding`) and T a table
    over type pairs (:meth:`DescriptorSeAtten.type_gate_table`): the parts a tabulated
    (compressed) model replaces;

* ``attn_layer`` gated self-attention layers over the slots (:class:`GatedAttentionLayer`):
  ``G ← LayerNorm(G + W_out(w V))`` with Q, K, V = W_in G (each L2-normalised with ``normalize``),
  logits ``Q Kᵀ · scale`` (scale = ``temperature`` if set, else (attn·scaling_factor)^−½), softmax over
  the neighbor k. With ``smooth_type_embedding``: logits ← (logits + 20)·sw_j·sw_k − 20 before and
  weights ← weights·sw_j·sw_k after the softmax; otherwise empty k are masked out. Rows of empty j
  are zeroed; ``attn_dotr`` multiplies the weights by r̂_j·r̂_k;
* compressed (``mlpot compress``, attn_layer 0 + strip only, :meth:`DescriptorSeAttenV2.compress`):
  N_s is a table (:mod:`mlpot.descriptors.tabulate`), T the stored ``type_embd_data``, and A below
  is summed over the real neighbors with the empty slots added analytically;
* ``A = (1/S) R̃ᵀ G`` (4 × ng), ``D = Aᵀ A[:, :axis_neuron]`` flattened (row-major in ng), then
  ``A_{c_i}`` appended with ``concat_output_tebd``. Output width ng·axis_neuron (+ tebd_dim).

The fitting of such a model is one net for all types (DeePMD's ``mixed_types``), see
:class:`mlpot.fitting.EnergyFitting`.

DeePMD-kit behaviours reproduced (checked against its own outputs, ``tests/test_se_atten.py``):

1. *Empty slots count.* The attention runs over all S slots (an empty one adds e^−20 to every
   softmax denominator in the smooth form), and an empty slot's row R̃ = −davg/dstd is summed into A:
   the padding is part of the function, so the padded per-atom layout
   (:meth:`~mlpot.descriptors.environment.Environment.padded`) is used here, not edges.
2. *The type of an empty slot* is, in DeePMD-kit, the type of the first atom of the frame (its
   neighbor list pads with atom index 0). It enters the result when the empty slot's row is not
   zero (``set_davg_zero: false``) and the slot's embedding depends on its type (concat mode, or
   strip mode without ``smooth_type_embedding``). mlpot does the same
   (``Environment.pad_type``, set by :meth:`mlpot.model.EnergyModel.energy_from_edges`); in an MPI
   domain it is the first atom of the rank's local atoms, as in DeePMD-kit's LAMMPS interface.
3. *More neighbors than sel.* DeePMD-kit keeps the ``sel`` closest and drops the rest silently;
   mlpot raises a :class:`~mlpot.errors.ModelError` naming frame, atom, count and sel, for trained
   and imported models alike (``mlpot neighbor-stat`` gives the count to use).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationInfo, field_validator, model_validator

from mlpot.config.base import section_error
from mlpot.config.deepmd_compat import apply_tables
from mlpot.config.model import Activation, DescriptorConfig, Neuron, Precision, parse_auto_sel
from mlpot.descriptors.base import DESCRIPTORS, SeDescriptorBase, check_rcut_smth
from mlpot.descriptors.env import normalize_rows, padding_rows, smooth_switch
from mlpot.descriptors.environment import Environment
from mlpot.descriptors.type_embedding import TypeEmbedding
from mlpot.errors import ConfigError, ModelError
from mlpot.nn import DPLayer, EmbeddingNet, precision_name, resolve_precision

#: the logit shift of the smooth attention (DeePMD-kit's ``attnw_shift``)
ATTNW_SHIFT = 20.0


# ------------------------------------------------------------------------------------------- config
class SeAttenV2Config(DescriptorConfig):
    """``model.descriptor`` of ``se_atten_v2`` (DeePMD-kit 3.2 ``argcheck`` defaults); also the base of
    :class:`SeAttenConfig`. ``sel``: one int (a list is summed: only the total matters)."""

    #: neutral-value table section applied in addition to ``descriptor`` (mlpot.config.deepmd_compat)
    extra_deepmd_section: ClassVar[str] = "descriptor.se_atten"

    type: Literal["se_atten_v2"] = "se_atten_v2"
    sel: Union[int, list[int], str] = Field(
        "auto", description="max neighbors within rcut, all types together (an int; a list is summed), or 'auto[:R]'"
    )
    rcut_smth: float = Field(0.5, ge=0, description="where the smooth switching starts, Å (< rcut)")
    neuron: Neuron = [10, 20, 40]
    axis_neuron: PositiveInt = 4
    activation_function: Activation = "tanh"
    resnet_dt: bool = False
    type_one_side: bool = False
    precision: Precision = "default"
    seed: Optional[int] = None
    attn: PositiveInt = 128
    attn_layer: NonNegativeInt = 2
    attn_dotr: bool = True
    set_davg_zero: bool = False
    trainable_ln: bool = True
    ln_eps: Optional[PositiveFloat] = None
    tebd_dim: PositiveInt = 8
    use_tebd_bias: bool = False
    scaling_factor: PositiveFloat = 1.0
    normalize: bool = True
    temperature: Optional[float] = None
    concat_output_tebd: bool = True

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = super().migrate(data)
        return apply_tables(cls.extra_deepmd_section, data, cls.__name__)

    @field_validator("rcut_smth")
    @classmethod
    def _rcut_smth(cls, v: float, info: ValidationInfo) -> float:
        return check_rcut_smth(v, info)

    @field_validator("sel")
    @classmethod
    def _sel(cls, v: Union[int, list[int], str]) -> Union[int, str]:
        if isinstance(v, str):
            parse_auto_sel(v)
            return v
        total = int(v) if isinstance(v, int) else int(sum(int(x) for x in v))
        if isinstance(v, list) and any(int(x) < 0 for x in v):
            raise ValueError(f"expected non-negative neighbor counts, found {v}")
        if total <= 0:
            raise ValueError(f"expected a positive neighbor count (all types together), found {v}")
        return total

    @model_validator(mode="after")
    def _axis(self) -> "SeAttenV2Config":
        if self.axis_neuron > self.neuron[-1]:
            raise ValueError(f"descriptor.axis_neuron: expected 1..neuron[-1]={self.neuron[-1]}, found {self.axis_neuron}")
        return self

    # the mode of the v2 descriptor is fixed
    @property
    def mode(self) -> str:
        return "strip"

    @property
    def smooth(self) -> bool:
        return True

    def check_type_map(self, type_map: Sequence[str]) -> None:
        """Nothing to check: one sel for all types."""


class SeAttenConfig(SeAttenV2Config):
    """``model.descriptor`` of ``se_atten`` / ``dpa1`` (DeePMD-kit 3.2 ``argcheck`` defaults)."""

    type: Literal["se_atten"] = "se_atten"
    set_davg_zero: bool = True
    tebd_input_mode: Literal["concat", "strip"] = "concat"
    smooth_type_embedding: bool = False
    stripped_type_embedding: Optional[bool] = Field(
        None, description="deprecated DeePMD-kit key: true = tebd_input_mode 'strip', false = 'concat'"
    )

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = super().migrate(data)
        if "smooth_type_embdding" in data:  # DeePMD-kit's alias (a historical typo)
            if "smooth_type_embedding" in data:
                raise section_error(cls.__name__, [(
                    ("smooth_type_embdding",),
                    "expected `smooth_type_embedding` or its DeePMD-kit alias `smooth_type_embdding`, found both",
                    data["smooth_type_embdding"],
                )])
            data["smooth_type_embedding"] = data.pop("smooth_type_embdding")
        return data

    @property
    def mode(self) -> str:
        if self.stripped_type_embedding is not None:  # DeePMD-kit: the deprecated key wins
            return "strip" if self.stripped_type_embedding else "concat"
        return self.tebd_input_mode

    @property
    def smooth(self) -> bool:
        return bool(self.smooth_type_embedding)


# ------------------------------------------------------------------------------------------ modules
class LayerNorm(torch.nn.Module):
    """``(x − mean)/sqrt(var + eps) · matrix + bias`` over the last axis (biased variance).
    Parameters ``matrix`` (n,) (init 1), ``bias`` (n,) (init 0); frozen when not ``trainable``."""

    def __init__(self, n: int, eps: float, trainable: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.eps = float(eps)
        self.matrix = torch.nn.Parameter(torch.ones(n, dtype=dtype), requires_grad=trainable)
        self.bias = torch.nn.Parameter(torch.zeros(n, dtype=dtype), requires_grad=trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.matrix + self.bias


class GatedAttentionLayer(torch.nn.Module):
    """One gated self-attention layer over the neighbor slots + residual + post-LayerNorm.

    forward(g (n, S, ng), mask (n, S) bool, rhat (n, S, 3), sw (n, S)) → (n, S, ng).
    Parameters: ``in_proj`` (ng → 3·attn), ``out_proj`` (attn → ng), ``layer_norm`` (ng)."""

    def __init__(
        self, ng: int, attn: int, dotr: bool, normalize: bool, scaling: float, smooth: bool,
        ln_eps: float, trainable_ln: bool, dtype: torch.dtype, generator: Optional[torch.Generator],
    ) -> None:
        super().__init__()
        self.attn, self.dotr, self.normalize, self.scaling, self.smooth = int(attn), bool(dotr), bool(normalize), float(scaling), bool(smooth)
        self.in_proj = DPLayer(ng, 3 * attn, "linear", False, False, dtype, generator)
        self.out_proj = DPLayer(attn, ng, "linear", False, False, dtype, generator)
        self.layer_norm = LayerNorm(ng, ln_eps, trainable_ln, dtype)

    def forward(self, g: torch.Tensor, mask: torch.Tensor, rhat: torch.Tensor, sw: torch.Tensor) -> torch.Tensor:
        q, k, v = self.in_proj(g).chunk(3, dim=-1)
        if self.normalize:
            q, k, v = F.normalize(q, dim=-1), F.normalize(k, dim=-1), F.normalize(v, dim=-1)
        w = torch.matmul(q * self.scaling, k.transpose(1, 2))  # (n, S, S): row j (query), column k
        if self.smooth:
            w = (w + ATTNW_SHIFT) * sw[:, :, None] * sw[:, None, :] - ATTNW_SHIFT
        else:  # DeePMD masks with −inf; the most negative float gives the same weights without NaN rows
            w = w.masked_fill(~mask[:, None, :], torch.finfo(w.dtype).min)
        w = torch.softmax(w, dim=-1)
        w = w.masked_fill(~mask[:, :, None], 0.0)
        if self.smooth:
            w = w * sw[:, :, None] * sw[:, None, :]
        if self.dotr:
            w = w * torch.matmul(rhat, rhat.transpose(1, 2))
        return self.layer_norm(g + self.out_proj(torch.matmul(w, v)))


@DESCRIPTORS.register("se_atten_v2", config=SeAttenV2Config)
class DescriptorSeAttenV2(SeDescriptorBase):
    """``se_atten_v2`` (and, through :class:`DescriptorSeAtten`, ``se_atten``): see the module
    docstring. forward(env) → (n_centers, neuron[-1]·axis_neuron [+ tebd_dim]), model precision."""

    type_name = "se_atten_v2"
    radial_only = False
    #: one fitting net for all types; one sel for all neighbor types
    mixed_types = True

    def __init__(self, config: SeAttenV2Config, ntypes: int) -> None:
        torch.nn.Module.__init__(self)
        self.config = config
        self.ntypes = int(ntypes)
        if isinstance(config.sel, str):
            raise ConfigError(f"model.descriptor.sel: {config.sel!r} must be resolved to an int before building the model")
        self.rcut, self.rcut_smth = float(config.rcut), float(config.rcut_smth)
        self.nnei = int(config.sel)
        self.sel_list = [self.nnei]
        self.neuron = [int(n) for n in config.neuron]
        self.axis_neuron = int(config.axis_neuron)
        self.resnet_dt = bool(config.resnet_dt)
        self.activation_function = config.activation_function
        self.dtype = resolve_precision(config.precision, "model.descriptor.precision")
        self.set_davg_zero = bool(config.set_davg_zero)
        self.type_one_side = bool(config.type_one_side)
        self.seed = config.seed
        self.mode = config.mode
        self.smooth = config.smooth
        self.tebd_dim = int(config.tebd_dim)
        self.attn, self.attn_layer, self.attn_dotr = int(config.attn), int(config.attn_layer), bool(config.attn_dotr)
        self.normalize, self.scaling_factor, self.temperature = bool(config.normalize), float(config.scaling_factor), config.temperature
        self.trainable_ln = bool(config.trainable_ln)
        self.ln_eps = 1e-5 if config.ln_eps is None else float(config.ln_eps)
        self.concat_output_tebd = bool(config.concat_output_tebd)
        self.use_tebd_bias = bool(config.use_tebd_bias)
        self.register_buffer("davg", torch.zeros(self.ntypes, 4, dtype=self.dtype))
        self.register_buffer("dstd", torch.ones(self.ntypes, 4, dtype=self.dtype))
        self.register_buffer("sel", torch.tensor([self.nnei], dtype=torch.long))
        g = self._generator()
        self.type_embedding = TypeEmbedding(self.ntypes, self.tebd_dim, self.use_tebd_bias, self.dtype, g)
        tebd_in = self.tebd_dim * (1 if self.type_one_side else 2)
        emb_in = 1 + tebd_in if self.mode == "concat" else 1
        self.embedding_net = EmbeddingNet(emb_in, self.neuron, self.activation_function, self.resnet_dt, self.dtype, g)
        if self.mode == "strip":
            self.embedding_net_strip = EmbeddingNet(tebd_in, self.neuron, self.activation_function, self.resnet_dt, self.dtype, g)
        scaling = (self.attn * self.scaling_factor) ** -0.5 if self.temperature is None else float(self.temperature)
        self.attention = torch.nn.ModuleList(
            GatedAttentionLayer(self.neuron[-1], self.attn, self.attn_dotr, self.normalize, scaling, self.smooth,
                                self.ln_eps, self.trainable_ln, self.dtype, g)
            for _ in range(self.attn_layer)
        )
        #: None, or the compression record (:meth:`compress`): one table ``compress_data_geo`` /
        #: ``compress_info_geo`` for N_s and the type-gate table ``type_embd_data`` as buffers
        self.compression: Optional[dict[str, Any]] = None
        self._flat_cache: dict = {}
        self._calls = 0
        self.register_load_state_dict_post_hook(lambda module, keys: module._flat_cache.clear())

    @property
    def dim_out(self) -> int:
        return self.neuron[-1] * self.axis_neuron + (self.tebd_dim if self.concat_output_tebd else 0)

    def get_config(self) -> dict:
        cfg = {
            "type": self.type_name, "rcut": self.rcut, "rcut_smth": self.rcut_smth, "sel": self.nnei,
            "neuron": list(self.neuron), "axis_neuron": self.axis_neuron, "activation_function": self.activation_function,
            "resnet_dt": self.resnet_dt, "type_one_side": self.type_one_side, "precision": precision_name(self.dtype),
            "seed": self.seed, "attn": self.attn, "attn_layer": self.attn_layer, "attn_dotr": self.attn_dotr,
            "set_davg_zero": self.set_davg_zero, "trainable_ln": self.trainable_ln, "ln_eps": self.ln_eps,
            "tebd_dim": self.tebd_dim, "use_tebd_bias": self.use_tebd_bias, "scaling_factor": self.scaling_factor,
            "normalize": self.normalize, "temperature": self.temperature, "concat_output_tebd": self.concat_output_tebd,
        }
        if self.type_name == "se_atten":
            cfg.update(tebd_input_mode=self.mode, smooth_type_embedding=self.smooth)
        return cfg

    def uses_numba_tables(self) -> bool:
        """False: the gated table op of this descriptor has no numba kernel (tabulate.active_backend)."""
        return False

    def chunk_pairs_per_center(self) -> int:
        """The autograd memory of one center in units of an se_e2_a pair within rcut, for the chunk
        size of :func:`mlpot.model.evaluate`: ``sel`` padded slots, plus per attention layer the
        (sel × sel) weight tensors kept for the backward pass (≈ 48 B each vs ≈ 7 KiB per pair):
        sel + attn_layer·sel²/150. Measured on water (dpa1 attn_layer 2, sel 120, 1 thread): 32-atom
        chunks cost 0.9× the pair-budget chunks (~90 atoms), so the smaller chunks lose nothing on a
        CPU and keep a GPU's 4M-pair budget (~13,000 centers here) from needing > 100 GB."""
        return self.nnei + (self.attn_layer * self.nnei * self.nnei) // 150

    # -- the parts a tabulated (compressed) model replaces ----------------------------------------
    def geometric_embedding(self, s: torch.Tensor) -> torch.Tensor:
        """Strip mode: the radial embedding ``N_s(s̃)``, (..., 1) → (..., ng); a function of s̃ alone."""
        return self.embedding_net(s)

    def type_gate_table(self, tebd: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Strip mode: ``N_t`` over all type pairs, ((ntypes+1)², ng) with row c·(ntypes+1) + t
        (center c, neighbor t; index ntypes = no atom), or (ntypes+1, ng) with ``type_one_side``."""
        tebd = self.type_embedding() if tebd is None else tebd
        if self.type_one_side:
            return self.embedding_net_strip(tebd)
        n1 = tebd.shape[0]
        nei = tebd[None, :, :].expand(n1, n1, -1)
        cen = tebd[:, None, :].expand(n1, n1, -1)
        return self.embedding_net_strip(torch.cat([nei, cen], dim=-1).reshape(n1 * n1, -1))

    # -- compression (tabulated N_s, precomputed type gate; mlpot.descriptors.tabulate) ----------
    def table_keys(self) -> list[str]:
        """One table: the geometric net N_s ("geo")."""
        return ["geo"]

    def table_net(self, key: str) -> torch.nn.Module:
        return self.embedding_net

    def compress_refusal(self) -> Optional[str]:
        """Why this variant cannot be tabulated (None: attn_layer 0 and strip mode can)."""
        name = self.type_name
        if self.mode != "strip":
            return (
                f"{name} with tebd_input_mode '{self.mode}' cannot be compressed (its embedding net takes s̃ and the "
                "type embeddings together, not a function of s̃ alone); DeePMD-kit compresses only attn_layer 0 + "
                "tebd_input_mode strip"
            )
        if self.attn_layer > 0:
            return (
                f"{name} with attn_layer {self.attn_layer} cannot be compressed (attention layers act on the whole "
                "neighbor set); DeePMD-kit tabulates the geometric net only for attn_layer 0 + strip"
            )
        return None

    def compress(
        self, min_nbor_dist: float, step: float = 0.01, extrapolate: float = 5.0, check_frequency: int = -1,
    ) -> dict[str, Any]:
        """Tabulate N_s over DeePMD-kit's global range (``floor(min −davg/dstd)``, ``ceil(max
        (sw(r_min)/r_min − davg)/dstd)`` over center types and the 4 columns, as its "Atten" rule)
        and precompute the type-gate table ``type_embd_data`` (:meth:`type_gate_table`); forward
        then uses them. Returns the compression record. ModelError for a variant that cannot be
        compressed (:meth:`compress_refusal`) or when already compressed."""
        import numpy as np

        from mlpot.descriptors import tabulate as tab

        reason = self.compress_refusal()
        if reason:
            raise ModelError(reason)
        if self.compressed:
            raise ModelError("descriptor: already compressed")
        tab.check_parameters(step, extrapolate, float(min_nbor_dist), self.rcut)
        davg = self.davg.detach().cpu().double().numpy()
        dstd = self.dstd.detach().cpu().double().numpy()
        lower, upper = tab.env_range(davg, dstd, float(min_nbor_dist), self.rcut_smth, self.rcut)
        lo, up = float(np.min(lower)), float(np.max(upper))
        stride1 = 10.0 * step
        data, info = tab.build_table(self.embedding_net, lo, up, extrapolate, step, stride1, check_frequency)
        dev = self.davg.device
        self.register_buffer("compress_data_geo", data.to(device=dev, dtype=self.dtype))
        self.register_buffer("compress_info_geo", info.to(dev))
        with torch.no_grad():
            self.register_buffer("type_embd_data", self.type_gate_table().detach().clone())
        self.compression = {
            "step": float(step), "stride1": stride1, "extrapolate": float(extrapolate),
            "check_frequency": int(check_frequency), "min_nbor_dist": float(min_nbor_dist),
            "tables": {"geo": [lo, up, extrapolate * up, int(data.shape[0])]},
            "type_table": [int(self.type_embd_data.shape[0]), int(self.type_embd_data.shape[1])],
        }
        self._flat_cache.clear()
        return dict(self.compression)

    def enable_compression(self, record: dict[str, Any]) -> None:
        """Empty buffers of the shapes ``record`` names (a :meth:`compress` record from a model file),
        filled by ``load_state_dict``. ModelError for a bad record or a variant without tables."""
        reason = self.compress_refusal()
        if reason:
            raise ModelError(f"metadata.compression: {reason}")
        ng = self.neuron[-1]
        n_rows = (self.ntypes + 1) if self.type_one_side else (self.ntypes + 1) ** 2
        try:
            nspline = int(record["tables"]["geo"][3])
            if [int(v) for v in record["type_table"]] != [n_rows, ng]:
                raise ValueError(f"type_table {record['type_table']} != {[n_rows, ng]}")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"metadata.compression: expected the tables 'geo' and 'type_table' of {self.type_name} ({exc!r})") from None
        dev = self.davg.device
        self.register_buffer("compress_data_geo", torch.zeros(nspline, 6 * ng, dtype=self.dtype, device=dev))
        self.register_buffer("compress_info_geo", torch.zeros(6, dtype=torch.float64, device=dev))
        self.register_buffer("type_embd_data", torch.zeros(n_rows, ng, dtype=self.dtype, device=dev))
        self.compression = dict(record)
        self._flat_cache.clear()

    def _compressed_forward(self, env: Environment) -> torch.Tensor:
        """forward with the tables, on the edges (no padded layout): A_i = (1/S)[Σ_j R̃_j ⊗ N_s(s̃_j) ⊙
        (1 + gate_j) + (S − n_i)·R̃_pad ⊗ N_s(s̃_pad) ⊙ (1 + gate_pad)], the same function as the
        padded evaluation (attn_layer 0: the slots do not interact)."""
        from mlpot.descriptors import tabulate as tab

        self._refuse_training()
        counts = self.check_neighbors(env)
        n_c, S, dev = env.n_centers, self.nnei, env.center.device
        ct = env.center_types
        rij = env.rij.to(self.dtype)
        cte = ct[env.center]
        rows = normalize_rows(self.env_rows(rij), cte, self.davg, self.dstd)  # (E, 4)
        nt1 = self.ntypes + 1
        ntype = env.neighbor_type.to(torch.long)
        pair = ntype if self.type_one_side else cte * nt1 + ntype
        if self.smooth:
            sw = smooth_switch(torch.linalg.vector_norm(rij, dim=-1), self.rcut_smth, self.rcut)
        else:
            sw = torch.ones(rij.shape[0], dtype=self.dtype, device=dev)
        ft = self.flat_tables()
        x = rows[:, 0]
        tid = torch.zeros_like(ntype)
        self._check_range(x, tid, ft)
        acc = tab.tabulated_contract(x, rows, env.center, tid, n_c, ft, gate=(self.type_embd_data, pair, sw))
        # empty slots: s̃_pad = −davg/dstd of the center type; sw = 0 there (smooth) or the type of
        # the frame's first atom (module docstring, 2.)
        pad = padding_rows(self.davg, self.dstd)  # (ntypes, 4)
        g_pad = tab.eval_table(pad[:, 0], torch.zeros(self.ntypes, dtype=torch.long, device=dev), ft)[ct]  # (n_c, ng)
        if not self.smooth:
            pad_type = getattr(env, "pad_type", None)
            if pad_type is None:
                pad_type = torch.zeros(n_c, dtype=torch.long, device=dev)
            p_idx = pad_type if self.type_one_side else ct * nt1 + pad_type
            g_pad = g_pad + g_pad * self.type_embd_data[p_idx]
        n_empty = (S - counts).to(self.dtype)  # (n_c,)
        acc = acc + n_empty[:, None, None] * pad[ct][:, :, None] * g_pad[:, None, :]
        a = acc / S
        d = torch.matmul(a.transpose(1, 2), a[:, :, : self.axis_neuron]).reshape(n_c, -1)
        if self.concat_output_tebd:
            d = torch.cat([d, self.type_embedding()[ct]], dim=-1)
        return d

    # -- neighbors ---------------------------------------------------------------------------------
    def check_neighbors(self, env: Environment) -> torch.Tensor:
        """(n_centers,) neighbors within rcut per center; ModelError naming frame and atom if > sel."""
        counts = torch.bincount(env.center, minlength=env.n_centers)
        if counts.numel() and int(counts.max()) > self.nnei:
            atom = int(torch.argmax(counts))
            n = int(counts[atom])
            atom += env.center_offset
            frame, local = 0, atom
            fi = env.frame_index
            if fi is not None:
                frame = int(fi[atom])
                local = atom - int(torch.searchsorted(fi, torch.tensor(frame, device=fi.device)))
            raise ModelError(
                f"neighbor overflow: frame {frame}, atom {local} has {n} neighbors within rcut={self.rcut} Å "
                f"(the largest count) but model.descriptor.sel = {self.nnei} ({self.type_name}: one sel for all "
                f"types); raise sel to at least {n} (mlpot neighbor-stat gives the maximum; DeePMD-kit would "
                f"silently drop the farthest)"
            )
        return counts

    def stat_rows(self, env: Environment) -> torch.Tensor:
        self.check_neighbors(env)
        return self.env_rows(env.rij)

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, env: Environment) -> torch.Tensor:
        """Descriptor of every center of ``env``: (n_centers, dim_out), model precision."""
        if self.compressed:
            return self._compressed_forward(env)
        self.check_neighbors(env)
        n_c, S, dev = env.n_centers, self.nnei, env.center.device
        ct = env.center_types
        index, mask = env.padded(S, type_split=False)  # (n_c, S) edge index (−1 empty), nearest first
        rij = env.rij.to(self.dtype)
        E = rij.shape[0]
        safe = torch.where(mask, index, torch.full_like(index, E))  # empty slots → a dummy edge E
        rows = normalize_rows(self.env_rows(rij), ct[env.center], self.davg, self.dstd)  # (E, 4)
        rows = torch.cat([rows, rows.new_zeros(1, 4)], dim=0)
        pad = padding_rows(self.davg, self.dstd)[ct]  # (n_c, 4)
        rr = torch.where(mask[:, :, None], rows[safe], pad[:, None, :])  # (n_c, S, 4)
        r = torch.linalg.vector_norm(rij, dim=-1)
        sw = torch.cat([smooth_switch(r, self.rcut_smth, self.rcut), r.new_zeros(1)])[safe] * mask  # (n_c, S)
        pad_type = getattr(env, "pad_type", None)
        if pad_type is None:
            pad_type = torch.zeros(n_c, dtype=torch.long, device=dev)
        ntype = torch.cat([env.neighbor_type.to(torch.long), torch.zeros(1, dtype=torch.long, device=dev)])[safe]
        ntype = torch.where(mask, ntype, pad_type[:, None])  # (n_c, S); DeePMD: empty slot = the first atom's type
        tebd = self.type_embedding()  # (ntypes+1, tebd_dim)
        s = rr[:, :, :1]
        if self.mode == "concat":
            parts = [s, tebd[ntype]]
            if not self.type_one_side:
                parts.append(tebd[ct][:, None, :].expand(n_c, S, self.tebd_dim))
            g = self.embedding_net(torch.cat(parts, dim=-1))
        else:
            table = self.type_gate_table(tebd)
            idx = ntype if self.type_one_side else ct[:, None] * (self.ntypes + 1) + ntype
            gate = table[idx]  # (n_c, S, ng)
            if self.smooth:
                gate = gate * sw[:, :, None]
            gs = self.geometric_embedding(s)
            g = gs * gate + gs
        if self.attention:
            rhat = F.normalize(rr[:, :, 1:4], dim=-1)
            for layer in self.attention:
                g = layer(g, mask, rhat, sw)
        a = torch.matmul(rr.transpose(1, 2), g) / S  # (n_c, 4, ng)
        d = torch.matmul(a.transpose(1, 2), a[:, :, : self.axis_neuron]).reshape(n_c, -1)
        if self.concat_output_tebd:
            d = torch.cat([d, tebd[ct]], dim=-1)
        return d


@DESCRIPTORS.register("se_atten", aliases=("dpa1",), config=SeAttenConfig)
class DescriptorSeAtten(DescriptorSeAttenV2):
    """``se_atten`` / DPA-1: ``tebd_input_mode`` concat or strip, ``smooth_type_embedding`` on or off."""

    type_name = "se_atten"


__all__ = ["SeAttenConfig", "SeAttenV2Config", "DescriptorSeAtten", "DescriptorSeAttenV2", "GatedAttentionLayer", "LayerNorm"]
