"""Learning-rate and loss-prefactor schedules (DeePMD-kit's ``exp`` schedule with optional warm-up).

DeePMD-kit 3.x (``deepmd/dpmodel/utils/learning_rate.py``, ``BaseLR`` / ``LearningRateExp``): with
``W`` warm-up steps (``warmup_steps``, or ``int(warmup_ratio · numb_steps)``; ``W < numb_steps``) and
``T = numb_steps − W`` decay steps, the learning rate of 0-based step ``t`` is::

    t < W:   lr(t) = f·start_lr + (start_lr − f·start_lr) · t / W          (f = warmup_start_factor)
    t >= W:  lr(t) = max(start_lr · decay_rate ** e(t − W), stop_lr)
             e(s)  = s // decay_steps    (stepped, the default)   or   s / decay_steps   (smooth: true)
    decay_rate = (stop_lr / start_lr) ** (decay_steps / T)             (unless given explicitly)

When ``decay_rate`` is not given and ``decay_steps >= T``, ``decay_steps`` is replaced by 100 if
``T // 10 > 100`` else by ``T // 100 + 1``. The loss prefactors follow the learning rate
(``deepmd/pt/loss/ener.py``), also during the warm-up::

    pref(t) = limit + (start − limit) · lr(t) / start_lr
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from mlpot.errors import ConfigError


@dataclass(frozen=True)
class ExpDecayLR:
    """Exponential decay from ``start_lr`` towards ``stop_lr`` over ``numb_steps`` steps (stepped, or
    continuous with ``smooth``), after a linear warm-up of ``warmup_steps`` steps from
    ``warmup_start_factor · start_lr``. Learning rates in the optimizer's units; steps 0-based."""

    start_lr: float
    stop_lr: float
    decay_steps: int
    numb_steps: int
    decay_rate_override: Optional[float] = None
    smooth: bool = False
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0

    def __post_init__(self) -> None:
        w, n = int(self.warmup_steps), int(self.numb_steps)
        if w < 0 or (n > 0 and w >= n) or (n <= 0 and w != 0):
            raise ConfigError(
                f"learning_rate.warmup_steps: expected 0 <= warmup steps < training.numb_steps = {n}, found {w}"
            )

    @property
    def decay_total(self) -> int:
        """Steps of the decay phase: ``numb_steps − warmup_steps``."""
        return max(int(self.numb_steps) - int(self.warmup_steps), 0)

    @property
    def effective_decay_steps(self) -> int:
        """``decay_steps``, or DeePMD-kit's replacement when it is not smaller than the decay phase
        (only where ``decay_rate`` is not given explicitly)."""
        n = self.decay_total
        if self.decay_rate_override is None and self.decay_steps >= n:
            return 100 if n // 10 > 100 else n // 100 + 1
        return int(self.decay_steps)

    @property
    def decay_rate(self) -> float:
        if self.decay_rate_override is not None:
            return float(self.decay_rate_override)
        n = self.decay_total
        if n == 0:
            return 1.0
        return math.exp(math.log(self.stop_lr / self.start_lr) / (n / self.effective_decay_steps))

    def value(self, step: int) -> float:
        """The learning rate used at (0-based) training step ``step``."""
        step = int(step)
        w = int(self.warmup_steps)
        if step < w:
            lr0 = self.warmup_start_factor * self.start_lr
            return lr0 + (self.start_lr - lr0) * (step / w)
        s = step - w
        exponent = s / self.effective_decay_steps if self.smooth else s // self.effective_decay_steps
        return max(self.start_lr * self.decay_rate**exponent, self.stop_lr)


def lr_schedule_from_config(lr_cfg: Any, numb_steps: int) -> ExpDecayLR:
    """The schedule of a :class:`mlpot.config.LearningRateConfig` for a training of ``numb_steps`` steps
    (``warmup_ratio`` becomes ``int(warmup_ratio · numb_steps)`` warm-up steps, as in DeePMD-kit)."""
    n = int(numb_steps)
    if lr_cfg.warmup_ratio is not None:
        warm = int(lr_cfg.warmup_ratio * n)
        if n > 0 and warm >= n:
            raise ConfigError(
                f"learning_rate.warmup_ratio: expected int(warmup_ratio · numb_steps) < numb_steps = {n}, "
                f"found {lr_cfg.warmup_ratio} ({warm} steps)"
            )
    else:
        warm = int(lr_cfg.warmup_steps)
    if n <= 0:
        warm = 0  # no training steps, nothing to warm up (DeePMD-kit requires 0 here; harmless)
    return ExpDecayLR(
        float(lr_cfg.start_lr), float(lr_cfg.stop_lr), int(lr_cfg.decay_steps), n, lr_cfg.decay_rate,
        bool(lr_cfg.smooth), warm, float(lr_cfg.warmup_start_factor),
    )


def prefactor(start: float, limit: float, lr: float, start_lr: float) -> float:
    """Loss prefactor at learning rate ``lr``: limit + (start − limit) · lr / start_lr."""
    return limit + (start - limit) * lr / start_lr
