"""mlpot: Deep-Potential-style machine-learned interatomic potentials.

Units everywhere: eV, Å, fs, amu, K, bar. The data flow is
DFT files → :mod:`mlpot.data` → :mod:`mlpot.train` → frozen model (:mod:`mlpot.export`)
→ :mod:`mlpot.calculator` (ASE) / :mod:`md_engine`; the command line is :mod:`mlpot.cli`.

The workflow from Python (each name is imported on first use, so ``import mlpot`` alone imports
neither torch nor ASE)::

    import mlpot

    systems = mlpot.read("data/water/data_0")           # [LabeledFrames] (mlpot.data.io.read)
    mlpot.write(systems, "water.h5")                    # any registered format (mlpot.data.io.write)
    cfg = mlpot.load_config("input.json")               # validated config tree (mlpot.config)
    trainer = mlpot.Trainer.from_config(cfg, output_dir="run")
    trainer.train()
    mlpot.freeze("run", "model.pt")                     # newest checkpoint -> one model file
    model = mlpot.load_model("model.pt")                # EnergyModel in eval mode
    out = mlpot.evaluate(model, positions, atom_types, cell, pbc)   # energy (B,) eV, forces (N,3) eV/Å, virial
    atoms.calc = mlpot.DeepPotCalculator(model)         # ASE; EnsembleCalculator([...]) adds model deviation

=====================  =========================================
name                   defined in
=====================  =========================================
``read``, ``write``    :mod:`mlpot.data.io`
``LabeledFrames``      :mod:`mlpot.data.frames`
``load_config``        :mod:`mlpot.config`
``Trainer``            :mod:`mlpot.train.trainer`
``evaluate``           :mod:`mlpot.model` (the model's energies, forces, virials)
``save_model``,        :mod:`mlpot.export`
``load_model``,
``freeze``
``DeepPotCalculator``, :mod:`mlpot.calculator`
``EnsembleCalculator``
``MlpotError`` ...     :mod:`mlpot.errors` (``DataError``, ``ConfigError``, ``ModelError``, ``SimulationError``)
=====================  =========================================
"""

from __future__ import annotations

__version__ = "0.1.0"

from mlpot.errors import ConfigError, DataError, MlpotError, ModelError, SimulationError  # noqa: E402

#: public name -> module defining it; imported on first use, so that ``import mlpot`` does not import torch or ASE
_LAZY = {
    "read": "mlpot.data.io",
    "write": "mlpot.data.io",
    "LabeledFrames": "mlpot.data.frames",
    "load_config": "mlpot.config",
    "Trainer": "mlpot.train.trainer",
    "evaluate": "mlpot.model",
    "save_model": "mlpot.export",
    "load_model": "mlpot.export",
    "freeze": "mlpot.export",
    "DeepPotCalculator": "mlpot.calculator",
    "EnsembleCalculator": "mlpot.calculator",
}

__all__ = ["__version__", "MlpotError", "DataError", "ConfigError", "ModelError", "SimulationError", *_LAZY]


def __getattr__(name: str):
    """The lazy exports of :data:`_LAZY` (see the module docstring)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlpot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
