"""What every descriptor shares: the registry, the base config of the DeepPot-SE family and
:class:`SeDescriptorBase` (hyperparameters, statistics buffers, neighbor counting).

A descriptor module defines its config class (a :class:`~mlpot.config.model.DescriptorConfig`) and
its module class and registers them::

    @DESCRIPTORS.register("se_e2_a", aliases=("se_a",), config=SeE2AConfig)
    class DescriptorSeA(SeDescriptorBase): ...

Constructor: ``Cls(config, ntypes)``; no defaults of its own (they live in the config class).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from pydantic import Field, ValidationInfo, field_validator

from mlpot.config.model import Activation, DescriptorConfig, Neuron, Precision, parse_auto_sel
from mlpot.descriptors import tabulate as tab
from mlpot.descriptors.env import edge_env_rows, normalize_rows, padding_rows
from mlpot.descriptors.environment import Environment
from mlpot.errors import ConfigError, ModelError
from mlpot.nn import EmbeddingNet, precision_name, resolve_precision
from mlpot.registry import Registry

#: every descriptor, by DeePMD-kit ``type`` name (aliases included), with its config class
DESCRIPTORS: Registry = Registry("descriptor")


def check_rcut_smth(v: float, info: ValidationInfo) -> float:
    """The ``rcut_smth`` validator of every smooth descriptor: rcut_smth < rcut (Å)."""
    rcut = info.data.get("rcut")
    if rcut is not None and v >= rcut:
        raise ValueError(f"expected rcut_smth < rcut = {rcut}, found {v}")
    return v


class SeConfigBase(DescriptorConfig):
    """Keys shared by the smooth-edition two-body descriptors (DeePMD-kit 3.2 ``argcheck`` defaults)."""

    rcut_smth: float = Field(0.5, ge=0, description="where the smooth switching starts, Å (< rcut)")
    sel: Union[int, list[int], str] = Field(
        "auto",
        description="max neighbors per type (list; an int only for a one-type model), or 'auto' / 'auto:R' "
        "(from neighbor statistics of the training data)",
    )
    neuron: Neuron = [10, 20, 40]
    resnet_dt: bool = False
    activation_function: Activation = "tanh"
    precision: Precision = "default"
    set_davg_zero: bool = False
    type_one_side: bool = False
    seed: Optional[int] = None

    @field_validator("rcut_smth")
    @classmethod
    def _rcut_smth(cls, v: float, info: ValidationInfo) -> float:
        return check_rcut_smth(v, info)

    @field_validator("sel")
    @classmethod
    def _sel(cls, v: Union[int, list[int], str]) -> Union[int, list[int], str]:
        if isinstance(v, str):
            parse_auto_sel(v)  # raises ValueError naming the expected forms
            return v
        if isinstance(v, int):
            if v <= 0:
                raise ValueError(f"expected a positive neighbor count, found {v}")
            return v
        if len(v) == 0:
            raise ValueError("expected one neighbor count per type, found an empty list")
        if any(int(x) < 0 for x in v) or sum(v) == 0:
            raise ValueError(f"expected non-negative neighbor counts with a positive sum, found {v}")
        return v

    def check_type_map(self, type_map: Sequence[str]) -> None:
        sel = self.sel
        if isinstance(sel, int) and len(type_map) != 1:
            # DeePMD-kit's se_e2_a/se_e2_r take sel as list[int] or "auto[:R]" only; a single total count
            # is meaningful only for descriptors that do not split neighbors by type
            raise ValueError(
                f"descriptor.sel: expected one sel per type of type_map {list(type_map)} "
                f"(a list of {len(type_map)} numbers) or 'auto' / 'auto:R', found a single int {sel} "
                f"(se_e2_a/se_e2_r split neighbors by type; a single int is only accepted for one type)"
            )
        if isinstance(sel, list) and len(sel) != len(type_map):
            raise ValueError(
                f"descriptor.sel: expected one neighbor count per type of type_map {list(type_map)} "
                f"({len(type_map)} numbers), found {len(sel)}: {sel}"
            )


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

    ``config``: the validated :class:`SeConfigBase` subclass of the descriptor; ``ntypes``: number of
    element types. Buffers: ``davg``, ``dstd`` (ntypes, k) per *center* type (DeePMD stores them tiled over the nnei
    slots; they are slot-independent), ``sel`` (ntypes,) int64.
    """

    type_name = ""
    radial_only = False

    def __init__(self, config: SeConfigBase, ntypes: int) -> None:
        super().__init__()
        self.config = config
        self.ntypes = int(ntypes)
        self.rcut = float(config.rcut)
        self.rcut_smth = float(config.rcut_smth)
        self.sel_list = normalize_sel(config.sel, self.ntypes)
        self.nnei = sum(self.sel_list)
        self.neuron = [int(n) for n in config.neuron]
        self.resnet_dt = bool(config.resnet_dt)
        self.activation_function = config.activation_function
        self.dtype = resolve_precision(config.precision, "model.descriptor.precision")
        self.set_davg_zero = bool(config.set_davg_zero)
        self.type_one_side = bool(config.type_one_side)
        self.seed = config.seed
        k = 1 if self.radial_only else 4
        self.register_buffer("davg", torch.zeros(self.ntypes, k, dtype=self.dtype))
        self.register_buffer("dstd", torch.ones(self.ntypes, k, dtype=self.dtype))
        self.register_buffer("sel", torch.tensor(self.sel_list, dtype=torch.long))
        #: None, or the compression parameters (:meth:`compress`); the tables are buffers
        #: ``compress_data_<net>`` (nspline, 6·ng) and ``compress_info_<net>`` (6,) float64
        self.compression: Optional[dict[str, Any]] = None
        self._flat_cache: dict[tuple, tab.FlatTables] = {}
        self._calls = 0
        self.register_load_state_dict_post_hook(lambda module, keys: module._flat_cache.clear())

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

    # -- compression (tabulated embedding nets, :mod:`mlpot.descriptors.tabulate`) -------------
    def table_keys(self) -> list[str]:
        """Embedding-net keys in table-id order: t (type_one_side) or "c_t" at id c·ntypes + t."""
        if self.type_one_side:
            return [str(t) for t in range(self.ntypes)]
        return [f"{c}_{t}" for c in range(self.ntypes) for t in range(self.ntypes)]

    def table_net(self, key: str) -> torch.nn.Module:
        """The embedding net a table ``key`` (of :meth:`table_keys`) replaces."""
        return self.embeddings[key]

    def compress_refusal(self) -> Optional[str]:
        """None if this descriptor can be tabulated, else the one-line reason it cannot."""
        return None

    @property
    def compressed(self) -> bool:
        return getattr(self, "compression", None) is not None

    def compress(
        self, min_nbor_dist: float, step: float = tab.DEFAULT_STEP, extrapolate: float = tab.DEFAULT_EXTRAPOLATE,
        check_frequency: int = tab.DEFAULT_CHECK_FREQUENCY,
    ) -> dict[str, Any]:
        """Tabulate every embedding net (float64 coefficients, strides ``step`` and 10·step, linear
        extrapolation beyond ``extrapolate``·upper) over the range met by neighbors no closer than
        ``min_nbor_dist`` Å; the tables become buffers and :meth:`forward` uses them. Returns the
        compression record (also ``self.compression``). ModelError if already compressed."""
        if self.compressed:
            raise ModelError("descriptor: already compressed")
        tab.check_parameters(step, extrapolate, float(min_nbor_dist), self.rcut)
        # DeePMD-kit's PyTorch backend bounds the range over all k columns of davg/dstd (its
        # (ntypes, nnei, k) statistics indexed [:, 0] are the first slot's k columns): for se_e2_a the
        # angular std sets the upper bound; kept so that its tables and ours are the same grid
        davg = self.davg.detach().cpu().double().numpy()
        dstd = self.dstd.detach().cpu().double().numpy()
        lower, upper = tab.env_range(davg, dstd, float(min_nbor_dist), self.rcut_smth, self.rcut)
        lower, upper = lower.min(axis=1), upper.max(axis=1)
        stride1 = 10.0 * step
        tables: dict[str, list[float]] = {}
        for key in self.table_keys():
            if self.type_one_side:
                # DeePMD-kit's rule: the center types c with sel[c] > 0
                use = [c for c in range(self.ntypes) if self.sel_list[c] > 0] or list(range(self.ntypes))
                lo, up = float(lower[use].min()), float(upper[use].max())
            else:
                c = int(key.split("_")[0])
                lo, up = float(lower[c]), float(upper[c])
            data, info = tab.build_table(self.embeddings[key], lo, up, extrapolate, step, stride1, check_frequency)
            self.register_buffer(f"compress_data_{key}", data.to(device=self.davg.device, dtype=self.dtype))
            self.register_buffer(f"compress_info_{key}", info.to(self.davg.device))
            tables[key] = [lo, up, extrapolate * up, int(data.shape[0])]
        self.compression = {
            "step": float(step), "stride1": stride1, "extrapolate": float(extrapolate),
            "check_frequency": int(check_frequency), "min_nbor_dist": float(min_nbor_dist), "tables": tables,
        }
        self._flat_cache.clear()
        return dict(self.compression)

    def enable_compression(self, record: dict[str, Any]) -> None:
        """Register empty table buffers of the shapes ``record`` (a :meth:`compress` result read from a
        model file) names, so that ``load_state_dict`` fills them. ModelError for a bad record."""
        try:
            tables = record["tables"]
            ng = self.neuron[-1]
            for key in self.table_keys():
                nspline = int(tables[key][3])
                self.register_buffer(f"compress_data_{key}", torch.zeros(nspline, 6 * ng, dtype=self.dtype, device=self.davg.device))
                self.register_buffer(f"compress_info_{key}", torch.zeros(6, dtype=torch.float64, device=self.davg.device))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"metadata.compression: expected one table record per embedding net {self.table_keys()} ({exc!r})") from None
        self.compression = dict(record)
        self._flat_cache.clear()

    def flat_tables(self) -> tab.FlatTables:
        """The tables concatenated for evaluation in the model dtype on its device (cached)."""
        dev = self.davg.device
        key = (dev, self.dtype)
        ft = self._flat_cache.get(key)
        if ft is None:
            keys = self.table_keys()
            ft = tab.flat_tables(
                [getattr(self, f"compress_data_{k}") for k in keys], [getattr(self, f"compress_info_{k}") for k in keys],
                self.dtype, dev,
            )
            self._flat_cache.clear()
            self._flat_cache[key] = ft
        return ft

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        self._flat_cache = {}
        return super()._apply(fn, recurse)

    def edge_table_ids(self, center_types: torch.Tensor, neighbor_types: torch.Tensor) -> torch.Tensor:
        """(E,) table id of each edge: its neighbor type (type_one_side) or c·ntypes + t."""
        return neighbor_types if self.type_one_side else center_types * self.ntypes + neighbor_types

    def compressed_sum(self, env: Environment, rows: torch.Tensor, with_rows: bool) -> torch.Tensor:
        """Σ over real neighbors of R̃ ⊗ G (with_rows: (N, 4, ng)) or of G ((N, 1, ng)) from the tables.

        Refuses (ModelError) a module in training mode: a compressed model is for inference and MD."""
        self._refuse_training()
        ft = self.flat_tables()
        x = rows[:, 0]
        tid = self.edge_table_ids(env.center_types[env.center], env.neighbor_type)
        self._check_range(x, tid, ft)
        r = rows if with_rows else torch.ones_like(rows[:, :1])
        return tab.tabulated_contract(x, r, env.center, tid, env.n_centers, ft)

    def uses_numba_tables(self) -> bool:
        """Whether a compressed forward runs the numba kernels (:meth:`fused_compressed_sum`) now."""
        return self.compressed and tab.active_backend(self.davg.device, self.dtype) == "numba"

    def fused_compressed_sum(self, env: Environment, with_rows: bool) -> Optional[torch.Tensor]:
        """:meth:`compressed_sum` straight from ``env.rij`` when the numba kernels run here
        (:func:`mlpot.descriptors.tabulate_numba.numba_env_contract`: environment rows, normalisation and
        tables in one kernel, backward to rij), else None (the caller takes the row-based path)."""
        if tab.active_backend(env.rij.device, self.dtype) != "numba":
            return None
        self._refuse_training()
        ft = self.flat_tables()
        rij, center = env.rij, env.center  # in any order: the kernels group the edges by center themselves
        tid = self.edge_table_ids(env.center_types[center], env.neighbor_type)
        freq = int(self.compression.get("check_frequency", -1)) if self.compression else -1
        if freq > 0 and (self._calls + 1) % freq == 0:  # the range check needs s̃: the rows, without graph
            with torch.no_grad():
                x = normalize_rows(self.env_rows(rij), env.center_types[center], self.davg, self.dstd)[:, 0]
            self._check_range(x, tid, ft)
        elif freq > 0:
            self._calls += 1
        from mlpot.descriptors.tabulate_numba import numba_env_contract

        try:
            return numba_env_contract(rij, center, env.center_types, tid, env.n_centers, self.davg, self.dstd,
                                      self.rcut_smth, self.rcut, with_rows, ft)
        except Exception as exc:  # noqa: BLE001 - a numba/LLVM failure: the row-based torch path is exact too
            tab._numba_failed(exc)
            return None

    def _refuse_training(self) -> None:
        """ModelError for a compressed module in training mode (tables have no parameter gradients)."""
        if self.training and torch.is_grad_enabled():
            raise ModelError(
                "descriptor: a compressed model cannot be trained (its tables have no parameter gradients "
                "and no second derivatives); train the uncompressed model and compress it again"
            )

    def _check_range(self, x: torch.Tensor, tid: torch.Tensor, ft: tab.FlatTables) -> None:
        """Every ``check_frequency`` calls: warn if some s̃ values lie beyond their tables."""
        freq = int(self.compression.get("check_frequency", -1)) if self.compression else -1
        if freq > 0:
            self._calls += 1
            if self._calls % freq == 0:
                n_out = tab.out_of_range(x, tid, ft)
                if n_out:
                    import warnings

                    warnings.warn(
                        f"compressed model: {n_out} of {x.shape[0]} neighbor pairs lie beyond the tables "
                        f"(closer than the table range built from min_nbor_dist = "
                        f"{self.compression['min_nbor_dist']:g} Å × extrapolate); their embedding is extrapolated linearly",
                        stacklevel=4,
                    )

    def padding_embeddings(self) -> torch.Tensor:
        """G of an empty slot, (ntypes_c, ntypes_t, ng): the net (uncompressed) or the table at
        s̃_pad = −davg/dstd of the center type (compressed)."""
        pad = padding_rows(self.davg, self.dstd)[:, :1]  # (ntypes_c, 1)
        nt = self.ntypes
        if self.compressed:
            ft = self.flat_tables()
            c = torch.arange(nt, device=pad.device).repeat_interleave(nt)
            t = torch.arange(nt, device=pad.device).repeat(nt)
            tid = self.edge_table_ids(c, t)
            g = tab.eval_table(pad[c, 0], tid, ft)
            return g.reshape(nt, nt, -1)
        if self.type_one_side:
            return torch.stack([self.embedding(-1, t)(pad) for t in range(nt)], dim=1)
        return torch.stack(
            [torch.cat([self.embedding(c, t)(pad[c : c + 1]) for c in range(nt)], dim=0) for t in range(nt)], dim=1
        )

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
    def stat_rows(self, env: Environment) -> torch.Tensor:
        """Un-normalised environment rows of the edges of ``env`` (E, k) for the statistics
        (:func:`mlpot.data.stats.compute_stats`), after the sel check."""
        env.check_sel(self.sel, self.rcut)
        return self.env_rows(env.rij)

    def neighbor_counts(
        self,
        centers: torch.Tensor,
        neighbor_types: torch.Tensor,
        n_atoms: int,
        frame_index: Optional[torch.Tensor] = None,
        type_map: Optional[Sequence[str]] = None,
    ) -> torch.Tensor:
        """Neighbors of each type within rcut per atom, (n_atoms, ntypes) int64; raises
        :class:`ModelError` when a count exceeds ``sel`` (:meth:`Environment.check_sel`)."""
        center_types = torch.zeros(int(n_atoms), dtype=torch.long, device=centers.device)
        env = Environment(torch.empty(0, 3), centers, neighbor_types, center_types, self.ntypes, frame_index, 0, type_map)
        return env.check_sel(self.sel, self.rcut)


__all__ = ["DESCRIPTORS", "SeConfigBase", "SeDescriptorBase", "Environment", "normalize_sel"]
