"""Descriptors of the DeepPot-SE family, edge-based (see :mod:`mlpot.descriptors.se_e2_a`).

Every descriptor registers itself in :data:`DESCRIPTORS` with its DeePMD-kit ``type`` name, its
aliases and its config class (:mod:`mlpot.descriptors.base`); :class:`mlpot.config.model.ModelConfig`
validates ``model.descriptor`` with that class and :meth:`mlpot.model.EnergyModel.from_config` builds
the module as ``Cls(config, ntypes)``.

Every module of this package is imported with it, so a new descriptor is ONE new file here (its
config class and its module class, registered with ``@DESCRIPTORS.register(name, config=Cfg)``; plus,
only for DeePMD-kit model import/export, its mapping in :mod:`mlpot.interop.deepmd`). A descriptor
registered anywhere else (e.g. a test file) is equally valid once its module is imported.
"""

from __future__ import annotations

import importlib
import pkgutil

from mlpot.descriptors.base import DESCRIPTORS, SeConfigBase, SeDescriptorBase

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

from mlpot.descriptors.se_e2_a import DescriptorSeA, SeE2AConfig  # noqa: E402
from mlpot.descriptors.se_e2_r import DescriptorSeR, SeE2RConfig  # noqa: E402
from mlpot.descriptors.se_atten import DescriptorSeAtten, DescriptorSeAttenV2, SeAttenConfig, SeAttenV2Config  # noqa: E402

__all__ = ["DESCRIPTORS", "DescriptorSeA", "DescriptorSeR", "DescriptorSeAtten", "DescriptorSeAttenV2", "SeDescriptorBase",
           "SeConfigBase", "SeE2AConfig", "SeE2RConfig", "SeAttenConfig", "SeAttenV2Config"]
