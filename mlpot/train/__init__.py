"""Training: DeePMD-kit's loss and schedules, deterministic batching, the trainer (DDP via torchrun).

* :mod:`mlpot.train.schedule` — ``ExpDecayLR`` (stepped exponential lr) and the prefactor rule;
* :mod:`mlpot.train.loss` — ``EnergyLoss`` (energy / force / virial terms);
* :mod:`mlpot.train.data` — ``BatchSource`` (which frames each step and rank trains on);
* :mod:`mlpot.train.checkpoint` — training checkpoints: ``write``, ``read -> Checkpoint``, ``find``, ``prune``;
* :mod:`mlpot.train.lcurve` — the ``lcurve.out`` format: ``header``, ``line``, ``truncate``, ``read``;
* :mod:`mlpot.train.trainer` — ``Trainer`` (Adam, lcurve.out, checkpoints, restart, DDP);
* :mod:`mlpot.train.distributed` — ``init_distributed`` (joining a torchrun launch; ``mlpot train``: :mod:`mlpot.cli.train`).

Submodules import torch; import them explicitly (``from mlpot.train.trainer import Trainer``).
"""
