"""mlpot: Deep-Potential-style machine-learned interatomic potentials.

Units everywhere: eV, Å, fs, amu, K, bar. The data flow is
DFT files → :mod:`mlpot.data` → :mod:`mlpot.train` → frozen model (:mod:`mlpot.export`)
→ :mod:`mlpot.calculator` (ASE) / :mod:`md_engine`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from mlpot.errors import ConfigError, DataError, MlpotError, ModelError, SimulationError  # noqa: E402

__all__ = [
    "__version__",
    "MlpotError",
    "DataError",
    "ConfigError",
    "ModelError",
    "SimulationError",
    "load_model",
    "DeepPotCalculator",
]

#: public names imported on first use, so that ``import mlpot`` does not import torch or ASE
_LAZY = {"load_model": "mlpot.export", "DeepPotCalculator": "mlpot.calculator"}


def __getattr__(name: str):
    """Lazy exports: ``mlpot.load_model`` (:func:`mlpot.export.load_model`) and
    ``mlpot.DeepPotCalculator`` (:class:`mlpot.calculator.DeepPotCalculator`)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlpot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
