"""The training configuration: one validated tree, read from JSON or YAML.

The tree is DeePMD-kit's ``input.json`` for the descriptors mlpot supports (``se_e2_a``/``se_a``,
``se_e2_r``/``se_r``), so a DeePMD-kit training input trains unchanged apart from its data paths:

* ``model``: ``type_map``, ``descriptor``, ``fitting_net`` (handed to
  :meth:`mlpot.model.EnergyModel.from_config` as a plain dict, see :meth:`Config.model_dict`);
  ``descriptor.sel`` may be ``"auto"`` / ``"auto:R"`` (the default, as in DeePMD-kit 3.x): the trainer
  resolves it from neighbor statistics of the training data (:func:`auto_sel`) before building the model;
* ``learning_rate``: ``type: exp``, ``start_lr``, ``stop_lr``, ``decay_steps`` (optional ``decay_rate``,
  ``smooth``, ``warmup_steps`` or ``warmup_ratio``, ``warmup_start_factor``; DeePMD-kit 3.0/3.1's
  ``training.warmup_*`` keys are moved here, as DeePMD-kit 3.2 does);
* ``loss``: ``type: ener``, ``start_pref_{e,f,v}``, ``limit_pref_{e,f,v}``;
* ``training``: ``training_data``/``validation_data`` (``systems``, ``batch_size``, ``numb_btch``,
  ``auto_prob``, ``sys_probs``), ``numb_steps``, ``seed``, ``disp_file``, ``disp_freq``, ``save_freq``,
  ``save_ckpt``, ``max_ckpt_keep`` and the bookkeeping keys DeePMD-kit accepts that do not change the
  math (``_comment``, ``disp_training``, ``time_training``, ``profiling``, ``tensorboard``, ...).

mlpot's own keys live in the same tree, all with working defaults: ``training.device``
(``"auto"``: CUDA when available), ``training.precision`` (overrides the model precision),
``training.output_dir``, ``training.restart``, ``training.init_model``, ``training.freeze`` (write the
frozen model at the end), ``training.progress_bar``. A system may be a DeePMD npy directory, a folder
holding several of them, or any file :func:`mlpot.data.io.read` understands (our HDF5 store, extxyz, ...).

Every problem (an unknown key, a wrong type, an impossible value, a missing data path) is one
:class:`~mlpot.errors.ConfigError` that names the key path (``model.descriptor.rcut``) and what was
expected. Relative data paths are relative to the directory of the config file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlpot.errors import ConfigError

__all__ = [
    "Config",
    "ModelConfig",
    "DescriptorConfig",
    "FittingConfig",
    "LearningRateConfig",
    "LossConfig",
    "TrainingConfig",
    "DataConfig",
    "load_config",
    "resolve_batch_size",
    "parse_auto_sel",
    "auto_sel",
]

#: DeePMD-kit's descriptor names and their aliases -> the name mlpot's model uses
DESCRIPTOR_ALIASES = {"se_e2_a": "se_e2_a", "se_a": "se_e2_a", "se_e2_r": "se_e2_r", "se_r": "se_e2_r"}
ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "gelu", "gelu_tf", "silu", "linear", "none")
PRECISIONS = ("default", "float64", "float32")


class _Strict(BaseModel):
    """Unknown keys are errors; ``_comment`` (DeePMD-kit's comment key) is accepted everywhere."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    comment: Optional[str] = Field(default=None, alias="_comment", exclude=True)


def _positive_ints(v: list[int], what: str) -> list[int]:
    if any(int(x) <= 0 for x in v):
        raise ValueError(f"{what}: expected positive integers, found {v}")
    return v


def _check_neuron(v: list[int]) -> list[int]:
    if not v:
        raise ValueError("expected at least one layer width, found an empty list")
    return _positive_ints(v, "neuron")


def _check_activation(v: str) -> str:
    if v.lower() not in ACTIVATIONS:
        raise ValueError(f"expected one of {list(ACTIVATIONS)}, found {v!r}")
    return v.lower()


def _check_precision(v: str) -> str:
    if v not in PRECISIONS:
        raise ValueError(f"expected one of {list(PRECISIONS)}, found {v!r}")
    return v


# ---------------------------------------------------------------------------------------------- sel: "auto"
#: DeePMD-kit's default safety factor of ``sel: "auto"`` (``deepmd/utils/update_sel.py``)
AUTO_SEL_RATIO = 1.1


def parse_auto_sel(spec: Any) -> Optional[float]:
    """The safety factor of ``sel: "auto"`` (1.1) or ``"auto:R"`` (R); ``None`` for an explicit sel.

    Raises ValueError for any other string, or a factor that is not a finite number >= 1."""
    if not isinstance(spec, str):
        return None
    words = spec.split(":")
    if words[0] == "auto" and len(words) == 1:
        return AUTO_SEL_RATIO
    if words[0] == "auto" and len(words) == 2:
        try:
            ratio = float(words[1])
        except ValueError:
            ratio = float("nan")
        if ratio >= 1.0 and ratio != float("inf"):
            return ratio
    raise ValueError(
        f"expected a list of neighbor counts, 'auto' or 'auto:R' with a factor R >= 1 (e.g. 'auto:1.2'), found {spec!r}"
    )


def auto_sel(max_nbor: Any, ratio: float = AUTO_SEL_RATIO) -> list[int]:
    """``sel`` from the largest neighbor count per neighbor type (DeePMD-kit's rule, ``update_sel.py``):
    ``n · ratio`` truncated to an integer, then rounded up to a multiple of 4 (``4·⌈⌊n·ratio⌋ / 4⌉``)."""
    return [4 * ((int(int(n) * float(ratio)) + 3) // 4) for n in max_nbor]


# ---------------------------------------------------------------------------------------------- model
class DescriptorConfig(_Strict):
    """``model.descriptor``: the smooth-edition two-body descriptors (``se_e2_a``, ``se_e2_r``)."""

    type: str = "se_e2_a"
    rcut: float = Field(6.0, description="cutoff radius, Å")
    rcut_smth: float = Field(0.5, description="where the smooth switching starts, Å (< rcut)")
    sel: Union[int, list[int], str] = Field(
        "auto",
        description="max neighbors per type (list; an int only for a one-type model), or 'auto' / 'auto:R' "
        "(from neighbor statistics of the training data, see resolve_auto_sel)",
    )
    neuron: list[int] = [10, 20, 40]
    axis_neuron: int = Field(4, alias="axis_neuron")
    type_one_side: bool = False
    resnet_dt: bool = False
    activation_function: str = "tanh"
    precision: str = "default"
    seed: Optional[int] = None
    # accepted DeePMD-kit keys that mlpot implements only in their default form
    trainable: bool = True
    set_davg_zero: bool = False
    exclude_types: list[list[int]] = []
    env_protection: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _n_axis_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "n_axis_neuron" in data and "axis_neuron" not in data:
            data = dict(data)
            data["axis_neuron"] = data.pop("n_axis_neuron")
        return data

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in DESCRIPTOR_ALIASES:
            raise ValueError(f"expected one of {sorted(DESCRIPTOR_ALIASES)}, found {v!r}")
        return DESCRIPTOR_ALIASES[v]

    @field_validator("rcut")
    @classmethod
    def _rcut(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"expected a positive cutoff radius (Å), found {v}")
        return v

    @field_validator("rcut_smth")
    @classmethod
    def _rcut_smth(cls, v: float, info: ValidationInfo) -> float:
        if v < 0:
            raise ValueError(f"expected a non-negative radius (Å), found {v}")
        rcut = info.data.get("rcut")
        if rcut is not None and v >= rcut:
            raise ValueError(f"expected rcut_smth < rcut = {rcut}, found {v}")
        return v

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
        return _positive_ints(v, "sel")

    @field_validator("neuron")
    @classmethod
    def _neuron(cls, v: list[int]) -> list[int]:
        return _check_neuron(v)

    @field_validator("axis_neuron")
    @classmethod
    def _axis(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"expected a positive integer, found {v}")
        return v

    @field_validator("activation_function")
    @classmethod
    def _act(cls, v: str) -> str:
        return _check_activation(v)

    @field_validator("precision")
    @classmethod
    def _prec(cls, v: str) -> str:
        return _check_precision(v)

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, v: bool) -> bool:
        if not v:
            raise ValueError("expected true (a frozen descriptor is not supported by mlpot)")
        return v

    @field_validator("set_davg_zero")
    @classmethod
    def _davg(cls, v: bool) -> bool:
        if v:
            raise ValueError("expected false (set_davg_zero is not supported by mlpot)")
        return v

    @field_validator("exclude_types")
    @classmethod
    def _excl(cls, v: list) -> list:
        if v:
            raise ValueError(f"expected an empty list (exclude_types is not supported by mlpot), found {v}")
        return v

    @field_validator("env_protection")
    @classmethod
    def _envp(cls, v: float) -> float:
        if v != 0.0:
            raise ValueError(f"expected 0.0 (env_protection is not supported by mlpot), found {v}")
        return v


class FittingConfig(_Strict):
    """``model.fitting_net``: the per-type atomic-energy network."""

    type: Literal["ener"] = "ener"
    neuron: list[int] = [120, 120, 120]
    resnet_dt: bool = True
    activation_function: str = "tanh"
    precision: str = "default"
    seed: Optional[int] = None
    trainable: Union[bool, list[bool]] = True
    numb_fparam: int = 0
    numb_aparam: int = 0
    atom_ener: list[Optional[float]] = []
    rcond: Optional[float] = None

    @field_validator("neuron")
    @classmethod
    def _neuron(cls, v: list[int]) -> list[int]:
        return _check_neuron(v)

    @field_validator("activation_function")
    @classmethod
    def _act(cls, v: str) -> str:
        return _check_activation(v)

    @field_validator("precision")
    @classmethod
    def _prec(cls, v: str) -> str:
        return _check_precision(v)

    @field_validator("numb_fparam", "numb_aparam")
    @classmethod
    def _no_params(cls, v: int) -> int:
        if v != 0:
            raise ValueError(f"expected 0 (frame/atomic parameters are not supported by mlpot), found {v}")
        return v

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, v: Union[bool, list[bool]]) -> Union[bool, list[bool]]:
        if (isinstance(v, bool) and not v) or (isinstance(v, list) and not all(v)):
            raise ValueError("expected true (frozen fitting layers are not supported by mlpot)")
        return v

    @field_validator("atom_ener")
    @classmethod
    def _atom_ener(cls, v: list) -> list:
        if any(x is not None for x in v):
            raise ValueError(f"expected an empty list (atom_ener is not supported by mlpot), found {v}")
        return v


class ModelConfig(_Strict):
    """``model``: DeePMD-kit's ``standard`` energy model."""

    type: Literal["standard"] = "standard"
    type_map: list[str]
    descriptor: DescriptorConfig
    fitting_net: FittingConfig = Field(default_factory=FittingConfig)
    data_stat_nbatch: int = 10
    data_stat_protect: float = 1e-2

    @field_validator("type_map")
    @classmethod
    def _type_map(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("expected at least one element name, found an empty list")
        if len(set(v)) != len(v):
            raise ValueError(f"expected unique element names, found {v}")
        return v

    @field_validator("data_stat_nbatch")
    @classmethod
    def _nbatch(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"expected a positive number of batches, found {v}")
        return v

    @model_validator(mode="after")
    def _sel_len(self) -> "ModelConfig":
        sel = self.descriptor.sel
        if isinstance(sel, int) and len(self.type_map) != 1:
            # DeePMD-kit's se_e2_a/se_e2_r take sel as list[int] or "auto[:R]" only; a single total count
            # is meaningful only for descriptors that do not split neighbors by type
            raise ValueError(
                f"descriptor.sel: expected one neighbor count per type of type_map {self.type_map} "
                f"(a list of {len(self.type_map)} numbers) or 'auto' / 'auto:R', found a single int {sel} "
                f"(se_e2_a/se_e2_r split neighbors by type; a single int is only accepted for one type)"
            )
        if isinstance(sel, list) and len(sel) != len(self.type_map):
            raise ValueError(
                f"descriptor.sel: expected one neighbor count per type of type_map {self.type_map} "
                f"({len(self.type_map)} numbers), found {len(sel)}: {sel}"
            )
        return self


# ---------------------------------------------------------------------------------------------- lr, loss
class LearningRateConfig(_Strict):
    """``learning_rate``: lr(t) = start_lr · decay_rate^(t // decay_steps) (``smooth``: t / decay_steps),
    never below stop_lr; with a linear warm-up from ``warmup_start_factor · start_lr`` over the first
    ``warmup_steps`` (or ``int(warmup_ratio · numb_steps)``) steps (see :mod:`mlpot.train.schedule`)."""

    type: Literal["exp"] = "exp"
    start_lr: float = 1e-3
    stop_lr: float = 1e-8
    decay_steps: int = 5000
    decay_rate: Optional[float] = None
    smooth: bool = False
    warmup_steps: int = 0
    warmup_ratio: Optional[float] = None
    warmup_start_factor: float = 0.0
    scale_by_worker: Literal["linear", "sqrt", "none"] = "linear"  # TF-only in DeePMD-kit; PyTorch ignores it

    @field_validator("warmup_steps")
    @classmethod
    def _warm(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"expected a non-negative number of steps (0 = no warm-up), found {v}")
        return v

    @field_validator("warmup_ratio")
    @classmethod
    def _warm_ratio(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not (0 <= v < 1):
            raise ValueError(f"expected a fraction of numb_steps in [0, 1), found {v}")
        return v

    @field_validator("warmup_start_factor")
    @classmethod
    def _warm_factor(cls, v: float) -> float:
        if not (0 <= v < float("inf")):
            raise ValueError(f"expected a non-negative factor of start_lr, found {v}")
        return v

    @model_validator(mode="after")
    def _warm_exclusive(self) -> "LearningRateConfig":
        if self.warmup_steps != 0 and self.warmup_ratio is not None:
            raise ValueError(
                f"warmup_steps and warmup_ratio: expected at most one of them, found both "
                f"({self.warmup_steps} and {self.warmup_ratio})"
            )
        return self

    @field_validator("start_lr")
    @classmethod
    def _start(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"expected a positive learning rate, found {v}")
        return v

    @field_validator("stop_lr")
    @classmethod
    def _stop(cls, v: float, info: ValidationInfo) -> float:
        if not v > 0:
            raise ValueError(f"expected a positive learning rate, found {v}")
        start = info.data.get("start_lr")
        if start is not None and v > start:
            raise ValueError(f"expected stop_lr <= start_lr = {start}, found {v}")
        return v

    @field_validator("decay_steps")
    @classmethod
    def _decay_steps(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"expected a positive number of steps, found {v}")
        return v

    @field_validator("decay_rate")
    @classmethod
    def _decay_rate(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not (0 < v <= 1):
            raise ValueError(f"expected a decay rate in (0, 1], found {v}")
        return v


class LossConfig(_Strict):
    """``loss``: DeePMD-kit's energy loss, each prefactor moving from start to limit with the lr."""

    type: Literal["ener"] = "ener"
    start_pref_e: float = 0.02
    limit_pref_e: float = 1.0
    start_pref_f: float = 1000.0
    limit_pref_f: float = 1.0
    start_pref_v: float = 0.0
    limit_pref_v: float = 0.0
    start_pref_ae: float = 0.0
    limit_pref_ae: float = 0.0
    start_pref_pf: float = 0.0
    limit_pref_pf: float = 0.0
    relative_f: Optional[float] = None
    enable_atom_ener_coeff: bool = False
    use_l1_all: bool = False

    @field_validator(
        "start_pref_e", "limit_pref_e", "start_pref_f", "limit_pref_f", "start_pref_v", "limit_pref_v"
    )
    @classmethod
    def _nonneg(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"expected a non-negative prefactor, found {v}")
        return v

    @field_validator("start_pref_ae", "limit_pref_ae", "start_pref_pf", "limit_pref_pf")
    @classmethod
    def _unsupported_pref(cls, v: float) -> float:
        if v != 0:
            raise ValueError(f"expected 0 (atomic energy / atomic prefactor losses are not supported), found {v}")
        return v

    @field_validator("relative_f")
    @classmethod
    def _rel(cls, v: Optional[float]) -> Optional[float]:
        if v is not None:
            raise ValueError(f"expected null (relative_f is not supported by mlpot), found {v}")
        return v

    @field_validator("enable_atom_ener_coeff", "use_l1_all")
    @classmethod
    def _false(cls, v: bool) -> bool:
        if v:
            raise ValueError("expected false (not supported by mlpot)")
        return v

    @model_validator(mode="after")
    def _something(self) -> "LossConfig":
        if all(
            getattr(self, k) == 0
            for k in ("start_pref_e", "limit_pref_e", "start_pref_f", "limit_pref_f", "start_pref_v", "limit_pref_v")
        ):
            raise ValueError("expected at least one non-zero prefactor, found all prefactors zero")
        return self


# ---------------------------------------------------------------------------------------------- training
BatchSize = Union[int, str, list[int]]


def resolve_batch_size(spec: BatchSize, n_atoms: int, index: int = 0) -> int:
    """Frames per batch for a system of ``n_atoms`` atoms (DeePMD-kit's rules).

    ``int``: that many; ``list``: the ``index``-th entry; ``"auto"``: the smallest ``bs`` with
    ``bs · n_atoms ≥ 32``; ``"auto:N"``: the smallest with ``bs · n_atoms ≥ N``.
    """
    if isinstance(spec, list):
        return int(spec[index])
    if isinstance(spec, int):
        return spec
    rule = 32 if spec == "auto" else int(spec.split(":", 1)[1])
    return max(1, -(-rule // int(n_atoms)))


def _check_batch_size(v: BatchSize) -> BatchSize:
    if isinstance(v, bool):
        raise ValueError(f"expected an integer, a list of integers, 'auto' or 'auto:N', found {v!r}")
    if isinstance(v, int):
        if v <= 0:
            raise ValueError(f"expected a positive number of frames, found {v}")
        return v
    if isinstance(v, list):
        if not v:
            raise ValueError("expected one batch size per system, found an empty list")
        return _positive_ints(v, "batch_size")
    if v == "auto":
        return v
    if v.startswith("auto:"):
        try:
            n = int(v.split(":", 1)[1])
        except ValueError:
            n = 0
        if n > 0:
            return v
    raise ValueError(f"expected an integer, a list of integers, 'auto' or 'auto:N' (N > 0), found {v!r}")


def _resolve_path(value: str, info: ValidationInfo, must_exist: bool = True) -> str:
    base = (info.context or {}).get("base_dir")
    p = Path(os.path.expanduser(value))
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if must_exist and not p.exists():
        raise ValueError(f"expected an existing file or directory, found no such path: {str(p)!r}")
    return os.path.normpath(str(p))


class DataConfig(_Strict):
    """``training.training_data`` / ``training.validation_data``."""

    systems: Union[str, list[str]]
    batch_size: BatchSize = "auto"
    numb_btch: int = 1
    auto_prob: str = Field("prob_sys_size", alias="auto_prob")
    sys_probs: Optional[list[float]] = None
    set_prefix: str = "set"

    @model_validator(mode="before")
    @classmethod
    def _prob_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "auto_prob_style" in data and "auto_prob" not in data:
            data = dict(data)
            data["auto_prob"] = data.pop("auto_prob_style")
        return data

    @field_validator("systems")
    @classmethod
    def _systems(cls, v: Union[str, list[str]], info: ValidationInfo) -> list[str]:
        items = [v] if isinstance(v, str) else v
        if not items:
            raise ValueError("expected at least one system path, found an empty list")
        out = []
        for k, item in enumerate(items):
            try:
                out.append(_resolve_path(item, info))
            except ValueError as exc:
                raise ValueError(f"entry {k} ({item!r}): {exc}") from None
        return out

    @field_validator("batch_size")
    @classmethod
    def _bs(cls, v: BatchSize) -> BatchSize:
        return _check_batch_size(v)

    @field_validator("numb_btch")
    @classmethod
    def _nb(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"expected a positive number of batches, found {v}")
        return v

    @field_validator("auto_prob")
    @classmethod
    def _ap(cls, v: str) -> str:
        if v in ("prob_uniform", "prob_sys_size") or v.startswith("prob_sys_size;"):
            return v
        raise ValueError(f"expected 'prob_sys_size', 'prob_uniform' or 'prob_sys_size;A:B:p;...', found {v!r}")

    @field_validator("sys_probs")
    @classmethod
    def _sp(cls, v: Optional[list[float]]) -> Optional[list[float]]:
        if v is not None and (any(p < 0 for p in v) or sum(v) <= 0):
            raise ValueError(f"expected non-negative probabilities with a positive sum, found {v}")
        return v

    @model_validator(mode="after")
    def _lists_match(self) -> "DataConfig":
        n = len(self.systems)
        if isinstance(self.batch_size, list) and len(self.batch_size) != n:
            raise ValueError(f"batch_size: expected one batch size per system ({n}), found {len(self.batch_size)}")
        if self.sys_probs is not None and len(self.sys_probs) != n:
            raise ValueError(f"sys_probs: expected one probability per system ({n}), found {len(self.sys_probs)}")
        return self


class TrainingConfig(_Strict):
    """``training``: DeePMD-kit's keys plus mlpot's own (device, precision, output_dir, ...)."""

    training_data: DataConfig
    validation_data: Optional[DataConfig] = None
    numb_steps: int = Field(1000, alias="numb_steps")
    seed: Optional[int] = None
    disp_file: str = "lcurve.out"
    disp_freq: int = 1000
    save_freq: int = 1000
    save_ckpt: str = "model.ckpt"
    max_ckpt_keep: int = 5
    gradient_max_norm: float = 0.0
    opt_type: Literal["Adam"] = "Adam"
    # DeePMD-kit 3.0/3.1 put the warm-up keys here; 3.2 moves them to learning_rate (Config does the same)
    warmup_steps: int = Field(0, exclude=True)
    warmup_ratio: Optional[float] = Field(None, exclude=True)
    warmup_start_factor: float = Field(0.0, exclude=True)
    # accepted DeePMD-kit bookkeeping keys that do not change the math
    disp_training: bool = True
    time_training: bool = True
    profiling: bool = False
    profiling_file: str = "timeline.json"
    enable_profiler: bool = False
    tensorboard: bool = False
    tensorboard_log_dir: str = "log"
    tensorboard_freq: int = 1
    stat_file: Optional[str] = None
    numb_test: Optional[int] = None
    change_bias_after_training: bool = False
    mixed_precision: Optional[dict] = None
    # mlpot's own keys
    device: str = "auto"
    precision: Optional[Literal["float32", "float64"]] = None
    output_dir: Optional[str] = None
    restart: Optional[str] = None
    init_model: Optional[str] = None
    freeze: bool = True
    progress_bar: bool = True

    @model_validator(mode="before")
    @classmethod
    def _stop_batch_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stop_batch" in data and "numb_steps" not in data:
            data = dict(data)
            data["numb_steps"] = data.pop("stop_batch")
        return data

    @field_validator("numb_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"expected a non-negative number of steps, found {v}")
        return v

    @field_validator("disp_freq", "save_freq", "max_ckpt_keep", "tensorboard_freq")
    @classmethod
    def _pos(cls, v: int) -> int:
        if v <= 0:
            raise ValueError(f"expected a positive integer, found {v}")
        return v

    @field_validator("gradient_max_norm")
    @classmethod
    def _gmn(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"expected a non-negative norm (0 = no clipping), found {v}")
        return v

    @field_validator("change_bias_after_training")
    @classmethod
    def _cbat(cls, v: bool) -> bool:
        if v:
            raise ValueError("expected false (not supported by mlpot)")
        return v

    @field_validator("mixed_precision")
    @classmethod
    def _mp(cls, v: Optional[dict]) -> Optional[dict]:
        if v:
            raise ValueError("expected null (mixed precision is not supported; use training.precision)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"):
            return v
        raise ValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', found {v!r}")

    @field_validator("output_dir")
    @classmethod
    def _outdir(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if v is None else _resolve_path(v, info, must_exist=False)

    @field_validator("restart", "init_model")
    @classmethod
    def _ckpt(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if v is None else _resolve_path(v, info, must_exist=True)

    @model_validator(mode="after")
    def _one_start(self) -> "TrainingConfig":
        if self.restart is not None and self.init_model is not None:
            raise ValueError("restart and init_model: expected at most one of them, found both")
        return self


class Config(_Strict):
    """The whole training input (see module docstring)."""

    model: ModelConfig
    learning_rate: LearningRateConfig = Field(default_factory=LearningRateConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    training: TrainingConfig

    @model_validator(mode="after")
    def _move_warmup(self) -> "Config":
        """Legacy ``training.warmup_*`` keys move to ``learning_rate`` (DeePMD-kit 3.2's
        ``migrate_training_warmup``); the same key in both places is an error."""
        keys = ("warmup_steps", "warmup_ratio", "warmup_start_factor")
        legacy = [k for k in keys if k in self.training.model_fields_set]
        if not legacy:
            return self
        both = [k for k in legacy if k in self.learning_rate.model_fields_set]
        if both:
            raise ValueError(
                "; ".join(f"training.{k} and learning_rate.{k}: expected the warm-up key in one place "
                          f"(learning_rate), found both" for k in both)
            )
        moved = {k: getattr(self.training, k) for k in legacy}
        try:
            lr = LearningRateConfig.model_validate(
                {**self.learning_rate.model_dump(by_alias=True, exclude_unset=True), **moved}
            )
        except ValidationError as exc:
            raise ValueError(
                f"learning_rate (with {', '.join('training.' + k for k in legacy)} moved into it): {_convert(exc, '')}"
            ) from None
        self.learning_rate = lr
        for k in legacy:
            setattr(self.training, k, TrainingConfig.model_fields[k].default)
            self.training.model_fields_set.discard(k)
        return self

    def model_dict(self) -> dict[str, Any]:
        """The ``model`` section as the plain dict :meth:`EnergyModel.from_config` takes: ``type_map``,
        ``descriptor`` {type, rcut, rcut_smth, sel, neuron, axis_neuron, type_one_side, resnet_dt,
        activation_function, precision, seed} and ``fitting_net`` {neuron, resnet_dt,
        activation_function, precision, seed}; ``training.precision`` overrides both precisions and
        ``"default"`` becomes ``"float64"``."""
        d = self.model.descriptor
        f = self.model.fitting_net
        override = self.training.precision

        def prec(p: str) -> str:
            return override or ("float64" if p == "default" else p)

        desc = {
            "type": d.type,
            "rcut": d.rcut,
            "rcut_smth": d.rcut_smth,
            "sel": d.sel,
            "neuron": list(d.neuron),
            "type_one_side": d.type_one_side,
            "resnet_dt": d.resnet_dt,
            "activation_function": d.activation_function,
            "precision": prec(d.precision),
            "seed": d.seed,
        }
        if d.type == "se_e2_a":
            desc["axis_neuron"] = d.axis_neuron
        fit = {
            "neuron": list(f.neuron),
            "resnet_dt": f.resnet_dt,
            "activation_function": f.activation_function,
            "precision": prec(f.precision),
            "seed": f.seed,
        }
        return {"type_map": list(self.model.type_map), "descriptor": desc, "fitting_net": fit}

    def to_dict(self) -> dict[str, Any]:
        """The whole validated tree as JSON-compatible data (DeePMD-kit key names)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# ---------------------------------------------------------------------------------------------- loading
#: pydantic's names for union branches / validator wrappers inside an error location (not config keys)
_BRANCH = re.compile(r"^(int|str|float|bool|none|(list|dict|tuple|set|union|literal|nullable)\[.*\]|(function|constrained)-.*)$")


def _loc_to_path(loc: tuple) -> str:
    """pydantic's error location → ``model.descriptor.sel[1]`` (branch names dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _BRANCH.match(str(part)):
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _describe(err: Mapping[str, Any]) -> str:
    typ = err.get("type", "")
    msg = str(err.get("msg", ""))
    found = err.get("input")
    if typ == "extra_forbidden":
        return "unknown key (not a DeePMD-kit or mlpot option; check its spelling)"
    if typ == "missing":
        return "missing required key"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, "):]
    if msg.startswith("Input should be "):
        msg = msg[len("Input should be "):]
    shown = repr(found)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"expected {msg[0].lower() + msg[1:] if msg else typ}, found {shown}"


def _convert(exc: ValidationError, source: str) -> ConfigError:
    errors = exc.errors()
    # a union produces one error per branch: report the first per key path
    seen: dict[str, str] = {}
    for err in errors:
        path = _loc_to_path(tuple(err.get("loc", ())))
        seen.setdefault(path, _describe(err))
    # a whole-tree check (path "<root>") already names its key paths in its message
    lines = [what if path == "<root>" else f"{path}: {what}" for path, what in seen.items()]
    head = f"{source}: " if source else ""
    if len(lines) == 1:
        return ConfigError(head + lines[0])
    return ConfigError(head + f"{len(lines)} problems: " + "; ".join(lines))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def load_config(
    source: Union[str, os.PathLike, Mapping[str, Any], Config], base_dir: Union[str, os.PathLike, None] = None
) -> Config:
    """Read and validate a training config.

    ``source``: a JSON/YAML file path, a dict (DeePMD-kit ``input.json`` layout) or a :class:`Config`.
    ``base_dir``: the directory relative data paths are resolved against; default: the config file's
    directory, or the current directory for a dict. Raises :class:`ConfigError` naming the key path.
    """
    if isinstance(source, Config):
        return source
    label = ""
    if isinstance(source, Mapping):
        data = dict(source)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        data = _read_file(path)
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
        label = str(path)
    try:
        return Config.model_validate(data, context={"base_dir": str(base)})
    except ValidationError as exc:
        raise _convert(exc, label) from None
