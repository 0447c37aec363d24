"""DeePMD-kit's energy loss (``loss.type = "ener"``) with its learning-rate-driven prefactors.

For a batch of ``B`` frames of one system with ``N`` atoms (``deepmd/pt/loss/ener.py``, MSE form)::

    L = p_e · (1/N) · mean_b (E_b − Ê_b)²            energy, eV² / atom
      + p_f · mean_{b,i,α} (F_biα − F̂_biα)²          force, per component, (eV/Å)²
      + p_v · (1/N) · mean_{b,αβ} (W_bαβ − Ŵ_bαβ)²    virial, only where the data have virials

with ``p_x = limit_pref_x + (start_pref_x − limit_pref_x) · lr / start_lr``. A term is active (and
listed in ``lcurve.out``) only when both its start and limit prefactors are non-zero, as in DeePMD-kit.
Reported metrics: ``rmse = sqrt(L)``, ``rmse_e = sqrt(mean ΔE²) / N`` (eV/atom),
``rmse_f = sqrt(mean ΔF²)`` (eV/Å), ``rmse_v = sqrt(mean ΔW²) / N`` (eV/atom; NaN for data without
virials, as DeePMD-kit shows a missing label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from mlpot.config import LossConfig
from mlpot.train.schedule import prefactor


def _default(name: str) -> float:
    # the prefactor defaults live in one place, the config tree (mlpot.config.LossConfig)
    return float(LossConfig.model_fields[name].default)


@dataclass(frozen=True)
class EnergyLoss:
    """The ``loss`` section as a callable (prefactors in the units of the module docstring)."""

    start_lr: float
    start_pref_e: float = _default("start_pref_e")
    limit_pref_e: float = _default("limit_pref_e")
    start_pref_f: float = _default("start_pref_f")
    limit_pref_f: float = _default("limit_pref_f")
    start_pref_v: float = _default("start_pref_v")
    limit_pref_v: float = _default("limit_pref_v")

    @property
    def has_e(self) -> bool:
        return self.start_pref_e != 0.0 and self.limit_pref_e != 0.0

    @property
    def has_f(self) -> bool:
        return self.start_pref_f != 0.0 and self.limit_pref_f != 0.0

    @property
    def has_v(self) -> bool:
        return self.start_pref_v != 0.0 and self.limit_pref_v != 0.0

    @property
    def metric_keys(self) -> list[str]:
        """The lcurve quantities, sorted as DeePMD-kit sorts them: rmse, rmse_e, rmse_f, rmse_v."""
        keys = ["rmse"]
        if self.has_e:
            keys.append("rmse_e")
        if self.has_f:
            keys.append("rmse_f")
        if self.has_v:
            keys.append("rmse_v")
        return keys

    def prefactors(self, lr: float) -> tuple[float, float, float]:
        """(p_e, p_f, p_v) at learning rate ``lr``."""
        return (
            prefactor(self.start_pref_e, self.limit_pref_e, lr, self.start_lr),
            prefactor(self.start_pref_f, self.limit_pref_f, lr, self.start_lr),
            prefactor(self.start_pref_v, self.limit_pref_v, lr, self.start_lr),
        )

    def __call__(
        self,
        lr: float,
        n_atoms: int,
        energy: torch.Tensor,
        energy_label: torch.Tensor,
        forces: Optional[torch.Tensor] = None,
        forces_label: Optional[torch.Tensor] = None,
        virial: Optional[torch.Tensor] = None,
        virial_label: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss (0-d tensor, differentiable) and the detached metrics.

        energy, energy_label: (B,) eV; forces, forces_label: (B·N, 3) eV/Å or None;
        virial, virial_label: (B, 3, 3) eV or None (None label: the data have no virials).
        """
        p_e, p_f, p_v = self.prefactors(lr)
        norm = 1.0 / float(n_atoms)
        loss = torch.zeros((), dtype=energy.dtype, device=energy.device)
        metrics: dict[str, float] = {}
        if self.has_e:
            l2_e = torch.mean(torch.square(energy - energy_label.to(energy.dtype)))
            loss = loss + norm * p_e * l2_e
            metrics["rmse_e"] = float(l2_e.detach().sqrt()) * norm
        if self.has_f:
            if forces is not None and forces_label is not None:
                l2_f = torch.mean(torch.square(forces - forces_label.to(forces.dtype)))
                loss = loss + p_f * l2_f
                metrics["rmse_f"] = float(l2_f.detach().sqrt())
            else:
                metrics["rmse_f"] = float("nan")
        if self.has_v:
            if virial is not None and virial_label is not None:
                l2_v = torch.mean(torch.square(virial - virial_label.to(virial.dtype)))
                loss = loss + norm * p_v * l2_v
                metrics["rmse_v"] = float(l2_v.detach().sqrt()) * norm
            else:
                metrics["rmse_v"] = float("nan")
        metrics["rmse"] = float(loss.detach().sqrt())
        return loss, metrics
