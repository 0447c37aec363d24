"""Potentials behind one small interface, :class:`Potential`, with named outputs.

``compute(positions (N,3) Å, atom_types (N,) int64, cell (3,3) Å, pbc (3,) bool, nl: NeighborList,
n_local=None, outputs=frozenset({"energy", "forces", "virial"})) -> dict[str, Tensor]``: ``energy``
0-d eV (the local-centre contribution), ``forces`` (N,3) eV/Å (on every row, ghosts included),
``virial`` (3,3) eV, each when requested, plus any extra named outputs the potential defines (e.g.
``"dU_dlambda"``, a 0-d local contribution: the simulation sums scalar outputs over ranks and keeps
them in ``state.outputs``, and every scalar output is a thermo observable by its name). Attribute
``cutoff`` (Å).

The pair list is full (both (i,j) and (j,i)) and may contain pairs beyond ``cutoff`` (Verlet skin):
they contribute nothing. Virial (DeePMD convention, = −stress·V): W = −Σ_pairs r_ij ⊗ ∂E/∂r_ij.

``n_local`` (optional keyword of ``compute``): only the energies of atoms ``[:n_local]`` count (the
rest are ghost copies owned by other ranks); forces then include the contributions on ghosts, to be
sent back to their owners by the domain layer. ``None`` means all atoms.

Registry: :data:`POTENTIALS` maps the MD input's ``potential`` names to the potential classes, each
with its config class (a :class:`md_engine.config.PotentialConfig`, key ``type``); the MD input is
validated by that class and :func:`md_engine.build.build_potential` builds
``Cls.from_config(config, device)``. A new potential is one module::

    class HarmonicConfig(PotentialConfig):
        type: Literal["harmonic"] = "harmonic"
        k: float                                   # eV/Å²
        ...

    @POTENTIALS.register("harmonic", config=HarmonicConfig)
    class Harmonic:
        cutoff: float
        @classmethod
        def from_config(cls, config: HarmonicConfig, device: torch.device) -> "Harmonic": ...
        def compute(self, positions, atom_types, cell, pbc, nl, n_local=None, outputs=FORCE_OUTPUTS): ...

and the MD input names it: ``potential: {type: harmonic, k: 1.0}``. Every module of the
``md_engine.potentials`` package is imported with the package (so a new file there registers itself
with no other edit); a potential registered anywhere else (e.g. a test file) works the same way once
its module is imported.
"""

from __future__ import annotations

from typing import AbstractSet, Optional, Protocol, Sequence, Union

import torch

from mlpot.neighbors import NeighborList, pair_vectors
from mlpot.registry import Registry

Params = Union[float, Sequence[Sequence[float]], torch.Tensor]

#: what the simulation asks every potential for
FORCE_OUTPUTS: frozenset[str] = frozenset({"energy", "forces", "virial"})


class Potential(Protocol):
    """What the engine needs from a potential (module docstring); a registered potential class also
    has ``from_config(config, device) -> Potential``."""

    cutoff: float

    def compute(
        self,
        positions: torch.Tensor,
        atom_types: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        nl: NeighborList,
        n_local: Optional[int] = None,
        outputs: AbstractSet[str] = FORCE_OUTPUTS,
    ) -> dict[str, torch.Tensor]: ...


#: potential name (MD input ``potential: {type: NAME}``) → potential class, with its config class
POTENTIALS: Registry = Registry("potential")

__all__ = ["Potential", "POTENTIALS", "FORCE_OUTPUTS", "Params", "pair_vectors"]
