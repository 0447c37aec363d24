"""Frames → the model's flat batch layout, written once.

A :class:`Batch` holds ``B`` frames of ONE system (same atoms in every frame), flattened into the
layout :func:`mlpot.model.evaluate` and :func:`mlpot.neighbors.neighbor_list` take:

===========  ==============  ======  ==========================================================
field        shape           unit    built as
===========  ==============  ======  ==========================================================
positions    (B·N, 3)        Å       ``positions[frames].reshape(B·N, 3)``
atom_types   (B·N,) long             ``atom_types.repeat(B)``
cells        (B, 3, 3)       Å       rows are lattice vectors (zeros where not periodic)
pbc          (B, 3) bool             ``pbc.expand(B, 3)`` (a broadcast view)
frame_index  (B·N,) long             ``arange(B).repeat_interleave(N)``
energies     (B,) or None    eV
forces       (B·N, 3)/None   eV/Å
virials      (B, 3, 3)/None  eV      virial = −stress·volume (DeePMD convention)
===========  ==============  ======  ==========================================================

:func:`to_batch` builds it from a :class:`~mlpot.data.frames.LabeledFrames` (converting only the
frames asked for) or from a :class:`SystemTensors` (one system converted to tensors on the device
once, then indexed there: the training cache for in-memory data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from mlpot.data.frames import LabeledFrames

FrameIndex = Union[Sequence[int], np.ndarray, slice, None]


@dataclass
class Batch:
    """One batch on the device (layout in the module docstring). ``n_atoms``: atoms per frame N;
    ``n_frames``: B; ``system``: index of the system it came from (-1 if none); ``frames``: the
    frame indices within that system, (B,) int."""

    positions: torch.Tensor
    atom_types: torch.Tensor
    cells: torch.Tensor
    pbc: torch.Tensor
    frame_index: torch.Tensor
    energies: Optional[torch.Tensor]
    forces: Optional[torch.Tensor]
    virials: Optional[torch.Tensor]
    n_atoms: int
    n_frames: int
    system: int
    frames: np.ndarray


class SystemTensors:
    """One system's arrays as tensors on ``device`` in ``dtype``, converted once (labels too unless
    ``labels=False``); :func:`to_batch` indexes frames out of it on the device."""

    def __init__(
        self, s: LabeledFrames, device: Union[str, torch.device], dtype: torch.dtype, labels: bool = True,
        atom_types: Optional[np.ndarray] = None,
    ):
        def t(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
            return None if a is None else torch.as_tensor(a, dtype=dtype, device=device)

        types = s.atom_types if atom_types is None else atom_types
        self.n_frames = s.n_frames
        self.n_atoms = s.n_atoms
        self.atom_types = torch.as_tensor(types, dtype=torch.long, device=device)
        self.pbc = torch.as_tensor(s.pbc, dtype=torch.bool, device=device)
        self.positions = t(s.positions)
        self.cells = t(s.cells)
        self.energies = t(s.energies) if labels else None
        self.forces = t(s.forces) if labels else None
        self.virials = t(s.virials) if labels else None


def _frame_array(frames: FrameIndex, n_frames: int) -> np.ndarray:
    if frames is None:
        return np.arange(n_frames)
    if isinstance(frames, slice):
        return np.arange(n_frames)[frames]
    return np.asarray(frames, dtype=np.int64).reshape(-1)


def to_batch(
    source: Union[LabeledFrames, SystemTensors],
    frames: FrameIndex = None,
    device: Union[str, torch.device, None] = None,
    dtype: Optional[torch.dtype] = None,
    *,
    atom_types: Optional[np.ndarray] = None,
    labels: bool = True,
    system: int = -1,
) -> Batch:
    """The :class:`Batch` of ``frames`` (indices, a slice, or None = all) of ``source``.

    ``source``: a :class:`LabeledFrames` (only the chosen frames are converted, to ``device`` (default
    CPU) and float ``dtype`` (default float64)) or a :class:`SystemTensors` (indexed where it lives;
    ``device``/``dtype`` must then be left None). ``atom_types``: (N,) type indices to use instead of
    ``source.atom_types`` (e.g. re-indexed into a model's type_map, :func:`mlpot.data.types.remap_types`);
    ``labels=False``: energies/forces/virials are None; ``system``: recorded in ``Batch.system``.
    """
    fr = _frame_array(frames, source.n_frames)
    b, n = int(fr.size), source.n_atoms
    if isinstance(source, SystemTensors):
        if device is not None or dtype is not None or atom_types is not None:
            raise TypeError("to_batch: device, dtype and atom_types are fixed by the SystemTensors")
        dev = source.positions.device
        idx = torch.as_tensor(fr, dtype=torch.long, device=dev)
        positions, cells = source.positions[idx], source.cells[idx]
        types, pbc = source.atom_types, source.pbc

        def take(a: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if a is None or not labels else a[idx]

        energies, forces, virials = take(source.energies), take(source.forces), take(source.virials)
    else:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        dt = dtype if dtype is not None else torch.float64
        sel: Union[slice, np.ndarray] = frames if isinstance(frames, slice) else fr
        if frames is None:
            sel = slice(None)

        def conv(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
            return None if a is None else torch.as_tensor(a[sel], dtype=dt, device=dev)

        positions, cells = conv(source.positions), conv(source.cells)
        types = torch.as_tensor(source.atom_types if atom_types is None else atom_types, dtype=torch.long, device=dev)
        pbc = torch.as_tensor(np.asarray(source.pbc, dtype=bool), device=dev)
        energies = conv(source.energies) if labels else None
        forces = conv(source.forces) if labels else None
        virials = conv(source.virials) if labels else None
    return Batch(
        positions=positions.reshape(b * n, 3),
        atom_types=types.repeat(b),
        cells=cells,
        pbc=pbc.expand(b, 3),
        frame_index=torch.arange(b, device=dev).repeat_interleave(n),
        energies=energies,
        forces=None if forces is None else forces.reshape(b * n, 3),
        virials=virials,
        n_atoms=n,
        n_frames=b,
        system=system,
        frames=fr,
    )


__all__ = ["Batch", "SystemTensors", "to_batch"]
