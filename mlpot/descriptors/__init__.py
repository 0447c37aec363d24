"""Descriptors of the DeepPot-SE family, edge-based (see :mod:`mlpot.descriptors.se_e2_a`).

:func:`build_descriptor` turns DeePMD-kit's ``model.descriptor`` section into a module.
"""

from __future__ import annotations

from typing import Any

from mlpot.descriptors.se_e2_a import DescriptorSeA, SeDescriptorBase
from mlpot.descriptors.se_e2_r import DescriptorSeR
from mlpot.errors import ConfigError

#: accepted ``type`` names (DeePMD-kit aliases included)
DESCRIPTOR_TYPES = {"se_e2_a": DescriptorSeA, "se_a": DescriptorSeA, "se_e2_r": DescriptorSeR, "se_r": DescriptorSeR}

# DeePMD-kit keys we accept but whose only supported value is the default
_DEFAULT_ONLY = {
    "exclude_types": [],
    "env_protection": 0.0,
    "trainable": True,
    "spin": None,
}
_IGNORED = {"_comment", "ntypes", "type_map"}
_COMMON = {"rcut", "rcut_smth", "sel", "neuron", "resnet_dt", "activation_function", "precision",
           "set_davg_zero", "type_one_side", "seed"}
_KEYS = {DescriptorSeA: _COMMON | {"axis_neuron"}, DescriptorSeR: _COMMON}


def build_descriptor(cfg: dict[str, Any], ntypes: int) -> SeDescriptorBase:
    """A descriptor from DeePMD-kit's ``model.descriptor`` dict (raises :class:`ConfigError`)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"model.descriptor: expected a mapping, got {type(cfg).__name__}")
    dtype = cfg.get("type")
    if dtype not in DESCRIPTOR_TYPES:
        raise ConfigError(
            f"model.descriptor.type: unsupported {dtype!r}; expected one of {sorted(DESCRIPTOR_TYPES)}"
        )
    cls = DESCRIPTOR_TYPES[dtype]
    kwargs = {}
    for key, value in cfg.items():
        if key == "type" or key in _IGNORED:
            continue
        if key in _DEFAULT_ONLY:
            if value not in (_DEFAULT_ONLY[key], None) and not (isinstance(value, list) and not value):
                raise ConfigError(f"model.descriptor.{key}: only {_DEFAULT_ONLY[key]!r} is supported, got {value!r}")
            continue
        if key not in _KEYS[cls]:
            raise ConfigError(f"model.descriptor.{key}: unknown key for {dtype} (known: {sorted(_KEYS[cls])})")
        kwargs[key] = value
    for key in ("rcut", "rcut_smth", "sel"):
        if key not in kwargs:
            raise ConfigError(f"model.descriptor.{key}: required for {dtype}")
    try:
        return cls(ntypes=ntypes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.descriptor: {exc}") from None


__all__ = ["DescriptorSeA", "DescriptorSeR", "SeDescriptorBase", "build_descriptor", "DESCRIPTOR_TYPES"]
