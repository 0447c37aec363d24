"""A trained mlpot model as an MD potential (``potential: {model: file.pt}``)."""

from __future__ import annotations

from pathlib import Path
from typing import AbstractSet, Any, ClassVar, Literal, Optional

import torch
from pydantic import Field, ValidationInfo, field_validator

from mlpot.errors import ModelError, SimulationError
from mlpot.neighbors import NeighborList

from md_engine.config import PotentialConfig, input_path
from md_engine.potentials.base import FORCE_OUTPUTS, POTENTIALS, pair_vectors


class MlpotModelConfig(PotentialConfig):
    """``potential: {model: FILE}`` (= ``{type: model, file: FILE}``): a frozen mlpot model file
    (``mlpot freeze``); a relative path is relative to the input file's folder."""

    shorthand: ClassVar[Optional[str]] = "file"

    type: Literal["model"] = "model"
    file: str = Field(description="frozen mlpot model file (mlpot freeze / import-deepmd), relative to the input's folder")

    @field_validator("file")
    @classmethod
    def _file(cls, v: str, info: ValidationInfo) -> str:
        return input_path(v, info)


@POTENTIALS.register("model", config=MlpotModelConfig)
class MlpotPotential:
    """A trained mlpot model as an MD potential (``mlpot.model.evaluate`` with the engine's pair list).

    ``model``: an ``EnergyModel`` or the path of a frozen model file (``mlpot.export.load_model``).
    The Verlet pair list may hold skin pairs beyond ``model.rcut``; the model ignores them. A
    :class:`ModelError` during evaluation (e.g. more neighbours than ``sel``) is re-raised as
    :class:`SimulationError`. Positions and cell are cast to the model's precision; results are
    returned in the dtype of the positions. With ``n_local`` < N (ghost atoms, :mod:`md_engine.domain`)
    only pairs with local centers are used: the energy is Σ of the local atomic energies, the forces
    (on local and ghost atoms) and the virial (−Σ r_ij ⊗ ∂E/∂r_ij over those pairs) are its exact
    derivatives — an atom's energy depends only on its own neighbors within rcut.
    """

    def __init__(self, model: Any, device: Optional[str | torch.device] = None) -> None:
        if isinstance(model, (str, Path)):
            from mlpot.export import load_model

            model = load_model(str(model), device=device)
        elif device is not None:
            model = model.to(device)
        self.model = model
        self.model.eval()
        self.cutoff = float(model.rcut)
        self.type_map: list[str] = list(model.type_map)
        try:
            self.dtype = next(p for p in model.parameters()).dtype
        except StopIteration:
            self.dtype = torch.float64

    @classmethod
    def from_config(cls, config: MlpotModelConfig, device: Optional[torch.device] = None) -> "MlpotPotential":
        """The model file of the validated ``potential`` section, on ``device``."""
        return cls(config.file, device=device)

    def _within_cutoff(self, positions: torch.Tensor, cell: torch.Tensor, nl: NeighborList) -> NeighborList:
        """The pairs of the Verlet list (rcut + skin) with |r_ij| < rcut. The model would skip the skin
        pairs itself, but its chunked evaluation sizes chunks by pair count: with the ~1.6x skin pairs
        (1 Å skin at 6 Å) left in, chunks hold fewer real pairs and every chunk re-filters them."""
        keep = torch.nonzero(torch.linalg.vector_norm(pair_vectors(positions, cell, None, nl), dim=-1) < self.cutoff).reshape(-1)
        if keep.shape[0] == nl.centers.shape[0]:
            return nl
        return NeighborList(nl.centers[keep], nl.neighbors[keep], nl.shifts[keep])

    def compute(
        self,
        positions: torch.Tensor,
        atom_types: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        nl: NeighborList,
        n_local: Optional[int] = None,
        outputs: AbstractSet[str] = FORCE_OUTPUTS,
    ) -> dict[str, torch.Tensor]:
        """``energy`` (eV), ``forces`` (N, 3) eV/Å, ``virial`` (3, 3) eV (those requested)."""
        from mlpot.model import evaluate

        out_dtype = positions.dtype
        ghosts = n_local is not None and n_local != positions.shape[0]
        nl = self._within_cutoff(positions, cell, nl)
        try:
            # with ghosts only the local atoms are centers (descriptor + fitting on them only);
            # pairs centered on ghosts, if any, are ignored by the model
            res = evaluate(
                self.model, positions.to(self.dtype), atom_types, cell.to(self.dtype).unsqueeze(0),
                pbc.reshape(1, 3), frame_index=None, nl=nl,
                outputs=("energy",) + tuple(k for k in ("forces", "virial") if k in outputs),
                n_centers=n_local if ghosts else None,
            )
        except ModelError as exc:
            raise SimulationError(f"model evaluation failed: {exc}") from exc
        out = {"energy": res["energy"].reshape(()).detach().to(out_dtype)}
        if "forces" in outputs:
            out["forces"] = res["forces"].detach().to(out_dtype)
        if "virial" in outputs:
            out["virial"] = res["virial"].reshape(3, 3).detach().to(out_dtype)
        return out


__all__ = ["MlpotPotential", "MlpotModelConfig"]
