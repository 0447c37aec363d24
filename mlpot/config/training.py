"""The training sections of the input: ``learning_rate``, ``loss``, ``training`` (with its
``training_data`` / ``validation_data``). DeePMD-kit's keys, plus mlpot's own in ``training``
(``device``, ``precision``, ``output_dir``, ``restart``, ``init_model``, ``freeze``, ``progress_bar``).
Relative paths resolve against the input file's folder (:func:`mlpot.config.base.resolve_input_path`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from mlpot.config.base import non_negative, resolve_input_path, resolve_input_paths
from mlpot.config.deepmd_compat import DeepmdSection


# ---------------------------------------------------------------------------------------------- lr, loss
class LearningRateConfig(DeepmdSection):
    """``learning_rate``: lr(t) = start_lr · decay_rate^(t // decay_steps) (``smooth``: t / decay_steps),
    never below stop_lr; with a linear warm-up from ``warmup_start_factor · start_lr`` over the first
    ``warmup_steps`` (or ``int(warmup_ratio · numb_steps)``) steps (see :mod:`mlpot.train.schedule`)."""

    deepmd_section = "learning_rate"

    type: Literal["exp"] = "exp"
    start_lr: float = Field(1e-3, gt=0)
    stop_lr: float = Field(1e-8, gt=0)
    decay_steps: PositiveInt = 5000
    decay_rate: Optional[float] = Field(None, gt=0, le=1)
    smooth: bool = False
    warmup_steps: Annotated[int, non_negative("number of steps (0 = no warm-up)")] = 0
    warmup_ratio: Optional[float] = None
    warmup_start_factor: Annotated[float, non_negative("factor of start_lr")] = 0.0

    @field_validator("warmup_ratio")
    @classmethod
    def _warm_ratio(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not (0 <= v < 1):
            raise ValueError(f"expected a fraction of numb_steps in [0, 1), found {v}")
        return v

    @field_validator("stop_lr")
    @classmethod
    def _stop(cls, v: float, info: ValidationInfo) -> float:
        start = info.data.get("start_lr")
        if start is not None and v > start:
            raise ValueError(f"expected stop_lr <= start_lr = {start}, found {v}")
        return v

    @model_validator(mode="after")
    def _warm_exclusive(self) -> "LearningRateConfig":
        if self.warmup_steps != 0 and self.warmup_ratio is not None:
            raise ValueError(
                f"warmup_steps and warmup_ratio: expected at most one of them, found both "
                f"({self.warmup_steps} and {self.warmup_ratio})"
            )
        return self


Prefactor = Annotated[float, non_negative("prefactor")]


class LossConfig(DeepmdSection):
    """``loss``: DeePMD-kit's energy loss, each prefactor moving from start to limit with the lr."""

    deepmd_section = "loss"

    type: Literal["ener"] = "ener"
    start_pref_e: Prefactor = 0.02
    limit_pref_e: Prefactor = 1.0
    start_pref_f: Prefactor = 1000.0
    limit_pref_f: Prefactor = 1.0
    start_pref_v: Prefactor = 0.0
    limit_pref_v: Prefactor = 0.0

    @model_validator(mode="after")
    def _something(self) -> "LossConfig":
        if all(getattr(self, k) == 0 for k in type(self).model_fields if k.startswith(("start_pref", "limit_pref"))):
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
        if any(int(x) <= 0 for x in v):
            raise ValueError(f"batch_size: expected positive integers, found {v}")
        return v
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


class DataConfig(DeepmdSection):
    """``training.training_data`` / ``training.validation_data``."""

    deepmd_section = "data"

    systems: Union[str, list[str]]
    batch_size: BatchSize = "auto"
    numb_btch: PositiveInt = 1
    auto_prob: str = "prob_sys_size"
    sys_probs: Optional[list[float]] = None
    set_prefix: str = "set"

    @field_validator("systems")
    @classmethod
    def _systems(cls, v: Union[str, list[str]], info: ValidationInfo) -> list[str]:
        items = [v] if isinstance(v, str) else v
        if not items:
            raise ValueError("expected at least one system path, found an empty list")
        return resolve_input_paths(items, info)

    @field_validator("batch_size")
    @classmethod
    def _bs(cls, v: BatchSize) -> BatchSize:
        return _check_batch_size(v)

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


class TrainingConfig(DeepmdSection):
    """``training``: DeePMD-kit's keys plus mlpot's own (device, precision, output_dir, ...)."""

    deepmd_section = "training"

    training_data: DataConfig
    validation_data: Optional[DataConfig] = None
    numb_steps: Annotated[int, Field(ge=0)] = 1000
    seed: Optional[int] = None
    disp_file: str = "lcurve.out"
    disp_freq: PositiveInt = 1000
    save_freq: PositiveInt = 1000
    save_ckpt: str = "model.ckpt"
    max_ckpt_keep: PositiveInt = 5
    gradient_max_norm: Annotated[float, non_negative("norm (0 = no clipping)")] = 0.0
    opt_type: Literal["Adam"] = "Adam"
    # mlpot's own keys
    device: str = "auto"
    precision: Optional[Literal["float32", "float64"]] = None
    output_dir: Optional[str] = None
    restart: Optional[str] = None
    init_model: Optional[str] = None
    freeze: bool = True
    progress_bar: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"):
            return v
        raise ValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', found {v!r}")

    @field_validator("output_dir")
    @classmethod
    def _outdir(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if v is None else resolve_input_path(v, info, must_exist=False)

    @field_validator("restart", "init_model")
    @classmethod
    def _ckpt(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        return None if v is None else resolve_input_path(v, info, must_exist=True)

    @model_validator(mode="after")
    def _one_start(self) -> "TrainingConfig":
        if self.restart is not None and self.init_model is not None:
            raise ValueError("restart and init_model: expected at most one of them, found both")
        return self


__all__ = [
    "LearningRateConfig", "LossConfig", "DataConfig", "TrainingConfig", "BatchSize", "resolve_batch_size",
]
