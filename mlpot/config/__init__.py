"""The training configuration: one validated, immutable tree, read from JSON or YAML.

The tree is DeePMD-kit's ``input.json`` for the descriptors mlpot supports (``se_e2_a``/``se_a``,
``se_e2_r``/``se_r``), so a DeePMD-kit training input trains unchanged apart from its data paths:

* ``model`` (:mod:`mlpot.config.model`): ``type_map``, ``descriptor`` (validated by the config class
  of its registered ``type``), ``fitting_net``; :meth:`mlpot.model.EnergyModel.from_config` takes
  this section. ``descriptor.sel`` may be ``"auto"`` / ``"auto:R"`` (the default, as in DeePMD-kit
  3.x): the trainer resolves it from neighbor statistics of the training data (:func:`auto_sel`);
* ``learning_rate``, ``loss``, ``training`` (:mod:`mlpot.config.training`);
* DeePMD-kit's aliases, keys accepted only at their neutral value, bookkeeping keys and the warm-up
  key migration: :mod:`mlpot.config.deepmd_compat`.

Every problem (an unknown key, a wrong type, an impossible value, a missing data path) is one
:class:`~mlpot.errors.ConfigError` that names the key path (``model.descriptor.rcut``) and what was
expected (:mod:`mlpot.config.base`, shared with the MD input). Relative paths are relative to the
folder of the config file. Validated trees are frozen: derive changed copies with
``model_copy(update=...)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Union

from pydantic import Field, model_validator

from mlpot.config.base import StrictModel, format_error, read_tree, resolve_input_path, validate
from mlpot.config.deepmd_compat import migrate_warmup
from mlpot.config.model import (
    AUTO_SEL_RATIO,
    DescriptorConfig,
    FittingConfig,
    ModelConfig,
    auto_sel,
    parse_auto_sel,
)
from mlpot.config.training import (
    BatchSize,
    DataConfig,
    LearningRateConfig,
    LossConfig,
    TrainingConfig,
    resolve_batch_size,
)

__all__ = [
    "Config", "ModelConfig", "DescriptorConfig", "FittingConfig", "LearningRateConfig", "LossConfig",
    "TrainingConfig", "DataConfig", "BatchSize", "load_config", "resolve_batch_size", "parse_auto_sel",
    "auto_sel", "AUTO_SEL_RATIO", "StrictModel", "read_tree", "validate", "format_error", "resolve_input_path",
]


class Config(StrictModel):
    """The whole training input (see the module docstring)."""

    model: ModelConfig
    learning_rate: LearningRateConfig = Field(default_factory=LearningRateConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    training: TrainingConfig

    @model_validator(mode="before")
    @classmethod
    def _move_warmup(cls, data: Any) -> Any:
        """Legacy ``training.warmup_*`` keys move to ``learning_rate`` (DeePMD-kit 3.2's
        ``migrate_training_warmup``); the same key in both places is an error."""
        if not isinstance(data, Mapping):
            return data
        return migrate_warmup(dict(data), lambda lr: validate(LearningRateConfig, lr))

    def to_dict(self) -> dict[str, Any]:
        """The whole validated tree as JSON-compatible data (DeePMD-kit key names)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


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
    if isinstance(source, Mapping):
        return validate(Config, dict(source), "", base_dir if base_dir is not None else Path.cwd())
    path = Path(source)
    data = read_tree(path)
    base = base_dir if base_dir is not None else path.resolve().parent
    return validate(Config, data, str(path), base)
