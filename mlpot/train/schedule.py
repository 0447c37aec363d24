"""Learning-rate and loss-prefactor schedules (DeePMD-kit's ``exp`` schedule).

DeePMD-kit (``deepmd/dpmodel/utils/learning_rate.py``, ``LearningRateExp``) decays the learning rate
in stairs::

    decay_rate = (stop_lr / start_lr) ** (decay_steps / numb_steps)     (unless given explicitly)
    lr(t)      = max(start_lr · decay_rate ** (t // decay_steps), stop_lr)

and, when ``decay_steps >= numb_steps``, replaces ``decay_steps`` by 100 if ``numb_steps // 10 > 100``
else by ``numb_steps // 100 + 1``. The loss prefactors follow the learning rate
(``deepmd/pt/loss/ener.py``)::

    pref(t) = limit + (start − limit) · lr(t) / lr(0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ExpDecayLR:
    """Stepped exponential decay from ``start_lr`` towards ``stop_lr`` over ``numb_steps`` steps."""

    start_lr: float
    stop_lr: float
    decay_steps: int
    numb_steps: int
    decay_rate_override: Optional[float] = None

    @property
    def effective_decay_steps(self) -> int:
        """``decay_steps``, or DeePMD-kit's replacement when it is not smaller than ``numb_steps``."""
        n = max(int(self.numb_steps), 1)
        if self.decay_steps >= n:
            return 100 if n // 10 > 100 else n // 100 + 1
        return int(self.decay_steps)

    @property
    def decay_rate(self) -> float:
        if self.decay_rate_override is not None:
            return float(self.decay_rate_override)
        n = max(int(self.numb_steps), 1)
        return math.exp(math.log(self.stop_lr / self.start_lr) / (n / self.effective_decay_steps))

    def value(self, step: int) -> float:
        """The learning rate used at (0-based) training step ``step``."""
        lr = self.start_lr * self.decay_rate ** (int(step) // self.effective_decay_steps)
        return max(lr, self.stop_lr)


def prefactor(start: float, limit: float, lr: float, start_lr: float) -> float:
    """Loss prefactor at learning rate ``lr``: limit + (start − limit) · lr / start_lr."""
    return limit + (start - limit) * lr / start_lr
