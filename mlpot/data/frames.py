"""The one in-memory representation of labeled DFT frames.

A :class:`LabeledFrames` is one *system*: a fixed number of atoms with fixed types, and any number
of frames (configurations) with their labels. Arrays are numpy, float64, in mlpot's units:

==========  ===========================  ======
field       shape                        unit
==========  ===========================  ======
positions   (n_frames, n_atoms, 3)       Å
cells       (n_frames, 3, 3), rows are   Å
            lattice vectors (ASE); zeros
            where no direction is periodic
pbc         (3,) bool
atom_types  (n_atoms,) int, index into
            ``type_map``
energies    (n_frames,) or None          eV
forces      (n_frames, n_atoms, 3)/None  eV/Å
virials     (n_frames, 3, 3) or None     eV  (virial = −stress·volume, DeePMD convention)
weights     (n_frames,) or None          1   (per-frame training weight)
==========  ===========================  ======
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from mlpot.data.types import check_elements
from mlpot.errors import DataError


def _as_float(name: str, value, source: str) -> np.ndarray:
    try:
        return np.ascontiguousarray(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: field '{name}' is not numeric ({exc})") from None


@dataclass
class LabeledFrames:
    """One system: ``n_frames`` configurations of the same ``n_atoms`` atoms (see module docstring)."""

    type_map: list[str]
    atom_types: np.ndarray
    positions: np.ndarray
    cells: np.ndarray
    pbc: np.ndarray
    energies: Optional[np.ndarray] = None
    forces: Optional[np.ndarray] = None
    virials: Optional[np.ndarray] = None
    weights: Optional[np.ndarray] = None
    #: where the frames came from (a path), used in error messages
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        src = self.source
        self.type_map = [str(t) for t in self.type_map]
        self.atom_types = np.ascontiguousarray(np.asarray(self.atom_types)).astype(np.int64, copy=False)
        self.positions = _as_float("positions", self.positions, src)
        self.cells = _as_float("cells", self.cells, src)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(-1)
        if self.pbc.shape == (1,):
            self.pbc = np.repeat(self.pbc, 3)
        for name in ("energies", "forces", "virials", "weights"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _as_float(name, value, src))
        if self.positions.ndim == 2:  # one frame given without the frame axis
            self.positions = self.positions[None]
        if self.cells.ndim == 2 and self.cells.shape == (3, 3):
            self.cells = np.broadcast_to(self.cells, (self.positions.shape[0], 3, 3)).copy()
        if self.cells.ndim == 2 and self.cells.shape[1] == 9:
            self.cells = self.cells.reshape(-1, 3, 3)
        if self.virials is not None and self.virials.ndim == 2 and self.virials.shape[1] == 9:
            self.virials = self.virials.reshape(-1, 3, 3)
        if self.energies is not None:
            self.energies = self.energies.reshape(-1)
        self.validate()

    # ------------------------------------------------------------------ properties
    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.atom_types.shape[0])

    @property
    def symbols(self) -> list[str]:
        return [self.type_map[t] for t in self.atom_types]

    # ------------------------------------------------------------------ validation
    def validate(self) -> "LabeledFrames":
        """Check shapes, finiteness, type indices and cell volumes; raise :class:`DataError`."""
        src = self.source
        nf, na = self.positions.shape[0] if self.positions.ndim == 3 else -1, self.atom_types.shape[0]

        def fail(fld: str, expected: str, found: str) -> None:
            raise DataError(f"{src}: field '{fld}': expected {expected}, found {found}")

        if len(self.type_map) == 0:
            fail("type_map", "at least one element name", "an empty list")
        if len(set(self.type_map)) != len(self.type_map):
            fail("type_map", "unique element names", str(self.type_map))
        if self.atom_types.ndim != 1 or na == 0:
            fail("atom_types", "a non-empty 1-D array of type indices", f"shape {self.atom_types.shape}")
        if self.positions.ndim != 3 or self.positions.shape[1:] != (na, 3):
            fail("positions", f"shape (n_frames, {na}, 3)", f"shape {self.positions.shape}")
        if nf == 0:
            fail("positions", "at least one frame", "0 frames")
        if self.atom_types.min() < 0 or self.atom_types.max() >= len(self.type_map):
            bad = int(self.atom_types[(self.atom_types < 0) | (self.atom_types >= len(self.type_map))][0])
            fail("atom_types", f"indices in [0, {len(self.type_map)}) for type_map {self.type_map}", f"index {bad}")
        if self.cells.shape != (nf, 3, 3):
            fail("cells", f"shape ({nf}, 3, 3) or ({nf}, 9)", f"shape {self.cells.shape}")
        if self.pbc.shape != (3,):
            fail("pbc", "3 booleans", f"shape {self.pbc.shape}")
        checks = [("energies", (nf,)), ("forces", (nf, na, 3)), ("virials", (nf, 3, 3)), ("weights", (nf,))]
        for name, shape in checks:
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                fail(name, f"shape {shape} (one per frame)" if len(shape) == 1 else f"shape {shape}", f"shape {value.shape}")
        for name in ("positions", "cells", "energies", "forces", "virials", "weights"):
            value = getattr(self, name)
            if value is not None and not np.all(np.isfinite(value)):
                idx = np.argwhere(~np.isfinite(value))[0]
                fail(name, "finite values", f"{value[tuple(idx)]} at index {tuple(int(i) for i in idx)}")
        if self.pbc.any():
            vol = np.linalg.det(self.cells)
            if np.any(vol <= 1e-12):
                k = int(np.argmax(vol <= 1e-12))
                fail("cells", "a positive cell volume for a periodic system", f"volume {vol[k]:.6g} Å³ in frame {k}")
        if self.weights is not None and np.any(self.weights < 0):
            fail("weights", "non-negative per-frame weights", f"minimum {self.weights.min()}")
        return self

    # ------------------------------------------------------------------ Dataset protocol
    def read(self, frames: Sequence[int] | np.ndarray | slice | None = None) -> "LabeledFrames":
        """Frames ``frames`` (None: all, returned as is) — :class:`mlpot.data.dataset.Dataset`."""
        return self if frames is None else self.subset(frames)

    def read_energies(self) -> Optional[np.ndarray]:
        """The (n_frames,) energies in eV, or None — :class:`mlpot.data.dataset.Dataset`."""
        return self.energies

    # ------------------------------------------------------------------ helpers
    def subset(self, index: Sequence[int] | np.ndarray | slice) -> "LabeledFrames":
        """Frames ``index`` (any numpy index over the frame axis) as a new system."""

        def take(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return None if a is None else np.ascontiguousarray(a[index])

        return replace(
            self,
            positions=take(self.positions),
            cells=take(self.cells),
            energies=take(self.energies),
            forces=take(self.forces),
            virials=take(self.virials),
            weights=take(self.weights),
        )

    def with_type_map(self, type_map: Sequence[str]) -> "LabeledFrames":
        """The same frames with ``atom_types`` re-indexed into ``type_map`` (a superset of ours)."""
        type_map = [str(t) for t in type_map]
        check_elements(self.type_map, type_map, where=str(self.source), owner="the")
        remap = np.array([type_map.index(t) for t in self.type_map], dtype=np.int64)
        return replace(self, type_map=type_map, atom_types=remap[self.atom_types])

    @staticmethod
    def concatenate(systems: Sequence["LabeledFrames"]) -> "LabeledFrames":
        """Join systems with the same atoms (same type_map, types, pbc) along the frame axis."""
        if not systems:
            raise DataError("<memory>: cannot concatenate an empty list of systems")
        first = systems[0]
        for s in systems[1:]:
            if s.type_map != first.type_map or not np.array_equal(s.atom_types, first.atom_types):
                raise DataError(f"{s.source}: field 'atom_types': expected the same atoms as {first.source}")
            if not np.array_equal(s.pbc, first.pbc):
                raise DataError(f"{s.source}: field 'pbc': expected {first.pbc.tolist()}, found {s.pbc.tolist()}")

        def cat(name: str) -> Optional[np.ndarray]:
            values = [getattr(s, name) for s in systems]
            if any(v is None for v in values):
                return None
            return np.concatenate(values, axis=0)

        return replace(
            first,
            positions=cat("positions"),
            cells=cat("cells"),
            energies=cat("energies"),
            forces=cat("forces"),
            virials=cat("virials"),
            weights=cat("weights"),
        )

    def __repr__(self) -> str:
        labels = [n for n in ("energies", "forces", "virials", "weights") if getattr(self, n) is not None]
        return (
            f"LabeledFrames({self.source!r}, frames={self.n_frames}, atoms={self.n_atoms}, "
            f"type_map={self.type_map}, pbc={self.pbc.tolist()}, labels={labels})"
        )
