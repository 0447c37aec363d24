"""ASE calculator for mlpot models: ``mlpot.DeepPotCalculator``.

    from mlpot import DeepPotCalculator
    atoms.calc = DeepPotCalculator("model.pt")            # or an EnergyModel
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()
    atoms.calc = EnsembleCalculator([m1, m2, m3])          # ensemble mean + model deviation

Results (ASE units): ``energy``/``free_energy`` (eV), ``energies`` (N,) per-atom energies (eV),
``forces`` (N, 3) eV/Å, ``virial`` (3, 3) eV (DeePMD convention: virial = −stress·volume) and, for
a cell periodic in all three directions, ``stress`` (6,) eV/Å³ in Voigt order xx yy zz yz xz xy,
stress = −virial / V (symmetrised). Non-periodic and mixed-pbc systems work; asking them for a stress
raises :class:`ase.calculators.calculator.PropertyNotImplementedError`.

:class:`EnsembleCalculator` (also what ``DeepPotCalculator([m1, m2, ...])`` gives) returns the
ensemble means, and adds the model deviation of the current structure (see :mod:`mlpot.metrics`): ``model_devi_f_max``,
``model_devi_f_min``, ``model_devi_f_avg`` (eV/Å), ``model_devi_e`` (eV/atom), ``model_devi_v_max``,
``model_devi_v_min``, ``model_devi_v_avg`` (eV/atom), and ``model_devi`` (the 7 numbers in
``model_devi.out`` column order).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlpot.data.types import type_indices
from mlpot.errors import ModelError

ModelLike = Union[str, os.PathLike, torch.nn.Module]


def _load(model: ModelLike, device: Optional[str]) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        if device is not None:
            model = model.to(device)
        return model
    if isinstance(model, (str, os.PathLike)):
        from mlpot.export import load_model

        return load_model(model, device=device)
    raise ModelError(
        f"DeepPotCalculator: model must be a model file path, an EnergyModel or a list of them, "
        f"got {type(model).__name__}"
    )


class DeepPotCalculator(Calculator):
    """ASE calculator backed by one mlpot model (see the module docstring).

    Parameters
    ----------
    model: a model file path (``mlpot freeze``) or an :class:`mlpot.model.EnergyModel`. A list of
        them gives an :class:`EnsembleCalculator`.
    device: "cpu", "cuda", "cuda:1"; default: :func:`mlpot.device.resolve_device` (CUDA when
        available) for file paths, or where the given in-memory model already lives.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "virial"]

    def __new__(cls, model: Union[ModelLike, Sequence[ModelLike]], *args: Any, **kwargs: Any) -> "DeepPotCalculator":
        if cls is DeepPotCalculator and isinstance(model, (list, tuple)) and len(model) > 1:
            return super().__new__(EnsembleCalculator)
        return super().__new__(cls)

    def __init__(
        self,
        model: Union[ModelLike, Sequence[ModelLike]],
        device: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        if not models:
            raise ModelError("DeepPotCalculator: expected a model or a non-empty list of models, got []")
        self.models = [_load(m, device) for m in models]
        self.type_map = [str(t) for t in self.models[0].type_map]
        for k, m in enumerate(self.models[1:], 1):
            if [str(t) for t in m.type_map] != self.type_map:
                raise ModelError(
                    f"{type(self).__name__}: ensemble member {k} has type_map {list(m.type_map)}, "
                    f"member 0 has {self.type_map}"
                )
        for m in self.models:
            m.eval()
        self.device = self.models[0].device
        self.dtype = self.models[0].dtype
        self._cache_key: Optional[tuple] = None
        self._types: Optional[torch.Tensor] = None
        self._frame_index: Optional[torch.Tensor] = None
        self._pbc: Optional[torch.Tensor] = None

    @property
    def model(self) -> torch.nn.Module:
        """The (first) model."""
        return self.models[0]

    # ------------------------------------------------------------------ helpers
    def _constants(self, atoms: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Type tensor, frame index and pbc on the device; rebuilt only when the atoms' elements or
        pbc change."""
        numbers = atoms.get_atomic_numbers()
        pbc = tuple(bool(x) for x in atoms.get_pbc())
        key = (numbers.tobytes(), pbc)
        if key != self._cache_key:
            symbols = atoms.get_chemical_symbols()
            types = type_indices(symbols, self.type_map, where=type(self).__name__)
            self._types = torch.as_tensor(types, device=self.device)
            self._frame_index = torch.zeros(len(symbols), dtype=torch.long, device=self.device)
            self._pbc = torch.tensor([pbc], dtype=torch.bool, device=self.device)
            self._cache_key = key
        assert self._types is not None and self._frame_index is not None and self._pbc is not None
        return self._types, self._frame_index, self._pbc

    def _evaluate(self, model: torch.nn.Module, pos: torch.Tensor, cell: torch.Tensor) -> dict[str, np.ndarray]:
        from mlpot.model import evaluate

        types, frame_index, pbc = self._constants(self.atoms)
        res = evaluate(model, pos, types, cell, pbc, frame_index=frame_index, outputs=("energy", "forces", "virial"))
        return {
            "energy": res["energy"].detach().to("cpu", torch.float64).numpy().reshape(()),
            "energies": res["atom_energy"].detach().to("cpu", torch.float64).numpy().reshape(-1),
            "forces": res["forces"].detach().to("cpu", torch.float64).numpy().reshape(-1, 3),
            "virial": res["virial"].detach().to("cpu", torch.float64).numpy().reshape(3, 3),
        }

    def _outputs(self, pos: torch.Tensor, cell: torch.Tensor) -> list[dict[str, np.ndarray]]:
        """One result dict per model (one model here)."""
        return [self._evaluate(m, pos, cell) for m in self.models]

    # ------------------------------------------------------------------ ASE interface
    def calculate(
        self,
        atoms: Any = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        n = len(atoms)
        if n == 0:
            raise ModelError(f"{type(self).__name__}: the Atoms object is empty (0 atoms); nothing to compute")
        pbc = atoms.get_pbc()
        periodic_3d = bool(np.all(pbc))
        if "stress" in properties and not periodic_3d:
            raise PropertyNotImplementedError(
                f"{type(self).__name__}: stress needs a cell periodic in all 3 directions, pbc is {pbc.tolist()}"
            )
        cell_np = np.asarray(atoms.get_cell()[:], dtype=np.float64)
        if np.any(pbc) and np.any(np.linalg.norm(cell_np[pbc], axis=1) < 1e-12):
            raise ModelError(
                f"{type(self).__name__}: pbc is {pbc.tolist()} but the cell has a zero lattice vector along a "
                f"periodic direction: {cell_np.tolist()}"
            )
        self._constants(atoms)
        pos = torch.as_tensor(atoms.get_positions(), dtype=self.dtype, device=self.device)
        cell = torch.as_tensor(cell_np, dtype=self.dtype, device=self.device).reshape(1, 3, 3)
        outs = self._outputs(pos, cell)
        res = outs[0] if len(outs) == 1 else {k: np.mean([o[k] for o in outs], axis=0) for k in outs[0]}
        energy = float(res["energy"])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = res["energies"]
        self.results["forces"] = res["forces"]
        virial = 0.5 * (res["virial"] + res["virial"].T)
        self.results["virial"] = res["virial"]
        if periodic_3d:
            self.results["stress"] = full_3x3_to_voigt_6_stress(-virial / abs(atoms.get_volume()))
        if len(outs) > 1:
            self._add_model_deviation(outs, n)

    def _add_model_deviation(self, outs: list[dict[str, np.ndarray]], n: int) -> None:
        from mlpot.metrics import model_deviation

        devi = model_deviation(
            np.stack([o["energy"] for o in outs]).reshape(-1, 1),
            np.stack([o["forces"] for o in outs])[:, None],
            np.stack([o["virial"] for o in outs])[:, None],
            n,
        )[0]
        self.results["model_devi"] = devi
        for k, name in enumerate(("v_max", "v_min", "v_avg", "f_max", "f_min", "f_avg", "e")):
            self.results[f"model_devi_{name}"] = float(devi[k])


class EnsembleCalculator(DeepPotCalculator):
    """ASE calculator for an ensemble of mlpot models sharing one type_map: the results are the
    ensemble means plus the model deviation (``model_devi_*``, see the module docstring).

    models: model file paths and/or :class:`mlpot.model.EnergyModel` s; device: as
    :class:`DeepPotCalculator`.
    """

    def __init__(self, model: Sequence[ModelLike], device: Optional[str] = None, **kwargs: Any) -> None:
        if not isinstance(model, (list, tuple)):
            raise ModelError(f"EnsembleCalculator: expected a list of models, got {type(model).__name__}")
        super().__init__(model, device=device, **kwargs)
