"""mlpot: Deep-Potential-style machine-learned interatomic potentials.

Units everywhere: eV, Å, fs, amu, K, bar. The data flow is
DFT files → :mod:`mlpot.data` → :mod:`mlpot.train` → frozen model (:mod:`mlpot.export`)
→ :mod:`mlpot.calculator` (ASE) / :mod:`md_engine`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from mlpot.errors import ConfigError, DataError, MlpotError, ModelError, SimulationError  # noqa: E402

__all__ = ["__version__", "MlpotError", "DataError", "ConfigError", "ModelError", "SimulationError"]
