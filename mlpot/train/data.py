"""Training batches: which frames of which system each step (and each rank) trains on.

A batch holds ``B`` frames of ONE system (all frames of a batch have the same atoms, as in DeePMD-kit),
flattened into the model's layout: positions (B·N, 3) Å, atom_types (B·N,), cells (B, 3, 3) Å,
pbc (B, 3), frame_index (B·N,), energies (B,) eV, forces (B·N, 3) eV/Å, virials (B, 3, 3) eV or None.

System choice follows DeePMD-kit's default ``auto_prob = "prob_sys_size"``: the probability of a
system is proportional to its number of batches ``ceil(n_frames / batch_size)``
(``deepmd/pt/utils/dataloader.py``); ``"prob_uniform"``, the block form
``"prob_sys_size;A:B:p;C:D:q"`` (systems A..B-1 share probability p, ∝ their batch counts inside the
block) and explicit ``sys_probs`` are supported too.

Frames inside a system (``frame_order``):

* ``"passes"`` (training, as DeePMD-kit's per-system shuffled data loaders): the system's frames are
  visited in shuffled passes; the c-th batch drawn from a system is chunk ``c mod n_batches`` of
  pass ``c // n_batches``'s permutation, so within a pass every frame is used exactly once (the last
  batch of a pass may be smaller, as DeePMD-kit's ``drop_last=False``). Under data parallelism each
  rank shuffles its own passes.
* ``"random"`` (validation): ``min(batch_size, n_frames)`` distinct frames drawn uniformly per batch.

The schedule is *stateless*: the batch of step ``t`` on rank ``r`` is a pure function of
``(seed, stream, r, t)`` (numpy ``SeedSequence``s). For ``"passes"`` the systems of all steps are drawn
in blocks of :data:`SYSTEM_BLOCK` steps, so how often a system was drawn before step ``t`` is a sum of
block counts (cached; a restart at step t recomputes t / SYSTEM_BLOCK vectorised draws). Restarting
from a checkpoint therefore sees exactly the batches an uninterrupted run would, and a single process
can rebuild the batches of every rank of a data-parallel run (see
:class:`mlpot.train.trainer.Trainer`, ``emulate_world_size``).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

from mlpot.config import BatchSize, resolve_batch_size
from mlpot.data.batch import Batch, SystemTensors, to_batch
from mlpot.data.dataset import Dataset
from mlpot.data.frames import LabeledFrames
from mlpot.errors import ConfigError

#: RNG streams: independent random sequences from one seed
TRAIN_STREAM = 0
VALID_STREAM = 1
#: steps per block of system draws (``frame_order="passes"``)
SYSTEM_BLOCK = 4096


def system_probabilities(
    n_batches: Sequence[int], auto_prob: str = "prob_sys_size", sys_probs: Optional[Sequence[float]] = None
) -> np.ndarray:
    """Probability of drawing each system (sums to 1)."""
    nb = np.asarray(n_batches, dtype=np.float64)
    n = len(nb)
    if sys_probs is not None:
        p = np.asarray(sys_probs, dtype=np.float64)
    elif auto_prob == "prob_uniform":
        p = np.ones(n)
    elif auto_prob == "prob_sys_size":
        p = nb.copy()
    elif auto_prob.startswith("prob_sys_size;"):
        p = np.zeros(n)
        for block in auto_prob.split(";")[1:]:
            try:
                a, b, w = block.split(":")
                a, b, w = int(a), int(b), float(w)
            except ValueError:
                raise ConfigError(f"auto_prob: expected blocks 'A:B:p', found {block!r}") from None
            if not (0 <= a < b <= n):
                raise ConfigError(f"auto_prob: block {block!r} must satisfy 0 <= A < B <= {n} (number of systems)")
            p[a:b] += w * nb[a:b] / nb[a:b].sum()
    else:
        raise ConfigError(f"auto_prob: expected 'prob_sys_size', 'prob_uniform' or 'prob_sys_size;A:B:p;...', found {auto_prob!r}")
    if p.shape != (n,) or np.any(p < 0) or p.sum() <= 0:
        raise ConfigError(f"sys_probs: expected {n} non-negative probabilities with a positive sum, found {p.tolist()}")
    return p / p.sum()


class BatchSource:
    """Deterministic batches from several systems (see module docstring).

    systems: the data, :class:`~mlpot.data.dataset.Dataset` s: in-memory
    :class:`~mlpot.data.frames.LabeledFrames` are converted to tensors on the device once and indexed
    there; any other dataset (an HDF5 :class:`~mlpot.data.store.SystemView`) is read lazily, only the
    frames of each batch; batch_size: int, per-system list, ``"auto"`` or ``"auto:N"``;
    seed: the training seed; stream: :data:`TRAIN_STREAM` / :data:`VALID_STREAM`.
    """

    def __init__(
        self,
        systems: Sequence[Dataset],
        batch_size: BatchSize,
        seed: int,
        stream: int = TRAIN_STREAM,
        auto_prob: str = "prob_sys_size",
        sys_probs: Optional[Sequence[float]] = None,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float64,
        what: str = "training_data",
        frame_order: str = "passes",
    ):
        if frame_order not in ("passes", "random"):
            raise ConfigError(f"frame_order: expected 'passes' or 'random', found {frame_order!r}")
        self.frame_order = frame_order
        if not systems:
            raise ConfigError(f"training.{what}.systems: expected at least one system, found none")
        if isinstance(batch_size, list) and len(batch_size) != len(systems):
            raise ConfigError(
                f"training.{what}.batch_size: expected one batch size per system ({len(systems)} systems "
                f"after expanding directories), found {len(batch_size)}"
            )
        if sys_probs is not None and len(sys_probs) != len(systems):
            raise ConfigError(
                f"training.{what}.sys_probs: expected one probability per system ({len(systems)} systems "
                f"after expanding directories), found {len(sys_probs)}"
            )
        self.systems = list(systems)
        self.seed = int(seed)
        self.stream = int(stream)
        self.batch_sizes = [resolve_batch_size(batch_size, s.n_atoms, k) for k, s in enumerate(self.systems)]
        self.n_batches = [-(-s.n_frames // bs) for s, bs in zip(self.systems, self.batch_sizes)]
        self.probs = system_probabilities(self.n_batches, auto_prob, sys_probs)
        self.device = torch.device(device)
        self.dtype = dtype
        self._tensors: dict[int, SystemTensors] = {}
        # passes: (rank, k) -> [system draws of block b], [draw counts per system before block b]
        self._blocks: dict[tuple[int, int], tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def indices(self, step: int, rank: int = 0, k: int = 0) -> tuple[int, np.ndarray]:
        """(system index, frame indices) of batch ``k`` at ``step`` on ``rank``: a pure function."""
        if self.frame_order == "passes":
            return self._indices_passes(int(step), int(rank), int(k))
        rng = np.random.default_rng([self.seed, self.stream, int(rank), int(step), int(k)])
        sys_id = int(rng.choice(len(self.systems), p=self.probs))
        nf = self.systems[sys_id].n_frames
        frames = rng.choice(nf, size=min(self.batch_sizes[sys_id], nf), replace=False)
        return sys_id, np.sort(frames)

    def _system_draws(self, rank: int, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """System of every step of ``block`` and the per-system draw counts before the block."""
        draws, before = self._blocks.setdefault((rank, k), ([], [np.zeros(len(self.systems), dtype=np.int64)]))
        while len(draws) <= block:
            b = len(draws)
            rng = np.random.default_rng([self.seed, self.stream, rank, k, b, 1])
            draws.append(rng.choice(len(self.systems), size=SYSTEM_BLOCK, p=self.probs))
            before.append(before[-1] + np.bincount(draws[-1], minlength=len(self.systems)))
        return draws[block], before[block]

    def _indices_passes(self, step: int, rank: int, k: int) -> tuple[int, np.ndarray]:
        block, offset = divmod(step, SYSTEM_BLOCK)
        draws, before = self._system_draws(rank, k, block)
        sys_id = int(draws[offset])
        count = int(before[sys_id]) + int(np.count_nonzero(draws[:offset] == sys_id))
        n_pass, chunk = divmod(count, self.n_batches[sys_id])
        nf, bs = self.systems[sys_id].n_frames, self.batch_sizes[sys_id]
        perm = np.random.default_rng([self.seed, self.stream, rank, k, sys_id, n_pass, 2]).permutation(nf)
        return sys_id, np.sort(perm[chunk * bs : (chunk + 1) * bs])

    def batch(self, step: int, rank: int = 0, k: int = 0) -> Batch:
        """The :class:`~mlpot.data.batch.Batch` of :meth:`indices` ``(step, rank, k)`` on the device."""
        sys_id, frames = self.indices(step, rank, k)
        system = self.systems[sys_id]
        if isinstance(system, LabeledFrames):
            if sys_id not in self._tensors:
                self._tensors[sys_id] = SystemTensors(system, self.device, self.dtype)
            return to_batch(self._tensors[sys_id], frames, system=sys_id)
        batch = to_batch(system.read(frames), device=self.device, dtype=self.dtype, system=sys_id)
        batch.frames = np.asarray(frames)
        return batch

    def summary(self, name: str) -> str:
        """DeePMD-kit-style table: system, natoms, bch_sz, n_bch, prob, pbc."""
        lines = [f"---Summary of DataSystem: {name} ({len(self.systems)} system(s))"]
        lines.append(f"{'system':>40s} {'natoms':>6s} {'bch_sz':>6s} {'n_bch':>6s} {'prob':>6s} {'pbc':>4s}")
        for s, bs, nb, p in zip(self.systems, self.batch_sizes, self.n_batches, self.probs):
            src = str(s.source)
            src = src if len(src) <= 40 else "..." + src[-37:]
            lines.append(f"{src:>40s} {s.n_atoms:6d} {bs:6d} {nb:6d} {p:6.3f} {'T' if s.pbc.any() else 'F':>4s}")
        return "\n".join(lines)
