"""DeePMD-kit compatibility of the training input: a DeePMD-kit ``input.json`` trains unchanged.

Three tables and one migration, applied by :class:`DeepmdSection` (the base of every training-input
section) before validation:

* :data:`ALIASES`: DeePMD-kit's old key names → the current ones (``n_axis_neuron``, ``stop_batch``,
  ``auto_prob_style``);
* :data:`NEUTRAL`: keys of features mlpot does not implement, accepted only at their neutral value
  (the value that switches the feature off) and then dropped; any other value is a ConfigError
  naming the key and the neutral value. This is the ONE such table (the DeePMD-kit model import
  uses it too);
* :data:`BOOKKEEPING`: keys DeePMD-kit accepts that do not change the math (logging, profiling, ...):
  accepted with any value, then dropped;
* :func:`migrate_warmup`: DeePMD-kit 3.0/3.1's ``training.warmup_*`` keys move to
  ``learning_rate`` (DeePMD-kit 3.2's ``migrate_training_warmup``).
"""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar, Optional

from mlpot.config.base import StrictModel, section_error

#: section → {old key: current key}
ALIASES: dict[str, dict[str, str]] = {
    "descriptor": {"n_axis_neuron": "axis_neuron"},
    "training": {"stop_batch": "numb_steps"},
    "data": {"auto_prob_style": "auto_prob"},
}

#: section → {key: neutral value}: accepted only at that value (see the module docstring)
NEUTRAL: dict[str, dict[str, Any]] = {
    "model": {"pair_exclude_types": [], "atom_exclude_types": [], "use_srtab": None, "spin": None},
    "descriptor": {"trainable": True, "exclude_types": [], "env_protection": 0.0, "spin": None, "compress": None},
    # se_atten / dpa1 / se_atten_v2 in addition to "descriptor" (mlpot.descriptors.se_atten)
    "descriptor.se_atten": {"attn_mask": False, "use_econf_tebd": False, "lmax": 1},
    "env_mat": {"protection": 0.0, "use_exp_switch": False},
    "fitting_net": {
        "numb_fparam": 0, "numb_aparam": 0, "dim_case_embd": 0, "atom_ener": [], "trainable": True,
        "exclude_types": [], "use_aparam_as_mask": False, "layer_name": None, "tot_ener_zero": False,
        "mixed_types": False, "spin": None, "dim_out": 1, "default_fparam": None,
    },
    "loss": {
        "start_pref_ae": 0.0, "limit_pref_ae": 0.0, "start_pref_pf": 0.0, "limit_pref_pf": 0.0,
        "relative_f": None, "enable_atom_ener_coeff": False, "use_l1_all": False,
    },
    "training": {"change_bias_after_training": False, "mixed_precision": None},
}

#: section → keys accepted with any value and ignored (they do not change the math)
BOOKKEEPING: dict[str, frozenset[str]] = {
    "model": frozenset({"type_embedding_ignored"}),
    "fitting_net": frozenset({"rcond"}),
    "learning_rate": frozenset({"scale_by_worker"}),
    "training": frozenset({
        "disp_training", "time_training", "profiling", "profiling_file", "enable_profiler", "tensorboard",
        "tensorboard_log_dir", "tensorboard_freq", "stat_file", "numb_test",
    }),
}

WARMUP_KEYS = ("warmup_steps", "warmup_ratio", "warmup_start_factor")


def is_neutral(value: Any, neutral: Any) -> bool:
    """Whether ``value`` switches the feature off like ``neutral`` does (``None`` and empty lists
    count as "off" for list/None neutrals; a per-layer list of ``true`` counts as ``true``)."""
    if neutral is True and isinstance(value, list):
        return all(v is True for v in value)
    if neutral is None or neutral == []:
        return value is None or (isinstance(value, (list, tuple)) and all(v is None for v in value))
    if isinstance(neutral, bool) or isinstance(value, bool):
        return value is neutral
    return value == neutral


def _js(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def apply_tables(section: str, data: dict[str, Any], cls_name: str = "section") -> dict[str, Any]:
    """The alias / neutral-value / bookkeeping tables of ``section`` applied to one raw mapping;
    a ValidationError naming every refused key."""
    data = dict(data)
    errors = []
    for old, new in ALIASES.get(section, {}).items():
        if old in data:
            if new in data:
                errors.append(((old,), f"expected `{new}` or its DeePMD-kit alias `{old}`, found both", data[old]))
            else:
                data[new] = data.pop(old)
    for key, neutral in NEUTRAL.get(section, {}).items():
        if key in data:
            value = data.pop(key)
            if not is_neutral(value, neutral):
                errors.append(((key,), f"expected {_js(neutral)} ({key} is not supported by mlpot; only {_js(neutral)} "
                                       f"is accepted), found {_js(value)}", value))
    for key in BOOKKEEPING.get(section, ()):
        data.pop(key, None)
    if errors:
        raise section_error(cls_name, errors)
    return data


class DeepmdSection(StrictModel):
    """A training-input section that applies the DeePMD-kit tables of ``deepmd_section``."""

    deepmd_section: ClassVar[Optional[str]] = None

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        if cls.deepmd_section is None:
            return data
        return apply_tables(cls.deepmd_section, data, cls.__name__)


def migrate_warmup(data: dict[str, Any], check_lr: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """The whole tree with legacy ``training.warmup_*`` keys moved into ``learning_rate``; the same
    key in both places is a ValueError. ``check_lr(lr_dict)`` validates the merged section (it
    raises a ConfigError, reworded here to say which keys moved)."""
    training = data.get("training")
    if not isinstance(training, dict):
        return data
    legacy = [k for k in WARMUP_KEYS if k in training]
    if not legacy:
        return data
    lr = data.get("learning_rate") or {}
    if not isinstance(lr, dict):
        return data
    both = [k for k in legacy if k in lr]
    if both:
        raise ValueError("; ".join(
            f"training.{k} and learning_rate.{k}: expected the warm-up key in one place (learning_rate), found both"
            for k in both
        ))
    merged = {**lr, **{k: training[k] for k in legacy}}
    from mlpot.errors import ConfigError

    try:
        check_lr(merged)
    except ConfigError as exc:
        raise ValueError(f"learning_rate (with {', '.join('training.' + k for k in legacy)} moved into it): {exc}") from None
    data = dict(data)
    data["learning_rate"] = merged
    data["training"] = {k: v for k, v in training.items() if k not in legacy}
    return data


__all__ = ["ALIASES", "NEUTRAL", "BOOKKEEPING", "DeepmdSection", "apply_tables", "is_neutral", "migrate_warmup"]
