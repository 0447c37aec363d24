"""Descriptors of the DeepPot-SE family, edge-based (see :mod:`mlpot.descriptors.se_e2_a`).

Every descriptor registers itself in :data:`DESCRIPTORS` with its DeePMD-kit ``type`` name, its
aliases and its config class (:mod:`mlpot.descriptors.base`); :class:`mlpot.config.model.ModelConfig`
validates ``model.descriptor`` with that class and :meth:`mlpot.model.EnergyModel.from_config` builds
the module as ``Cls(config, ntypes)``.
"""

from __future__ import annotations

from mlpot.descriptors.base import DESCRIPTORS, SeConfigBase, SeDescriptorBase
from mlpot.descriptors.se_e2_a import DescriptorSeA, SeE2AConfig
from mlpot.descriptors.se_e2_r import DescriptorSeR, SeE2RConfig

__all__ = ["DESCRIPTORS", "DescriptorSeA", "DescriptorSeR", "SeDescriptorBase", "SeConfigBase", "SeE2AConfig", "SeE2RConfig"]
