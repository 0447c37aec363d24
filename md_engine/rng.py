"""One keyed random-number scheme for md_engine: every random number is a pure function of
``(seed, stream, rank, step, ...)``, as the trainer's batch schedule (:mod:`mlpot.train.data`).

* :func:`generator` — a numpy ``Generator`` from ``SeedSequence([seed, stream, rank, step, *more])``
  for the few *global* draws of a step (CSVR's two numbers, the barostat's one or three). Called with
  the same key on every MPI rank, it gives the same numbers everywhere without any communication.
* :func:`atom_normals` — per-atom standard normals keyed by ``(seed, stream, step, global atom id)``
  through the counter-based Philox-4×32-10 generator (Salmon et al., SC'11; as HOOMD-blue draws its
  per-particle noise): O(local atoms) work, and the noise of an atom does not depend on which rank
  owns it, so P-rank runs and P→Q restarts follow the serial trajectory.

Nothing random is carried as generator *state*: a checkpoint needs only the seed and the step, and a
restart continues the same streams exactly. Streams are named (:data:`STREAMS`); a new consumer adds
its name there, so no two consumers share a stream.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

#: named streams (independent sequences from one seed)
STREAMS = {"csvr": 1, "langevin": 2, "barostat": 3, "nhc": 4}

_M32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def stream_id(stream: str | int) -> int:
    """The number of a named stream (an int passes through)."""
    return int(stream) if isinstance(stream, int) else STREAMS[stream]


def generator(seed: int, stream: str | int, rank: int = 0, step: int = 0, *more: int) -> np.random.Generator:
    """numpy ``Generator`` keyed by ``(seed, stream, rank, step, *more)`` (all non-negative ints;
    the seed is taken modulo 2⁶⁴). Use ``rank=0`` for numbers that all ranks must share."""
    key: Sequence[int] = [int(seed) % 2**64, stream_id(stream), int(rank), int(step), *(int(m) for m in more)]
    return np.random.default_rng(key)


def philox4x32(counter: Sequence[Any], key: tuple[int, int], rounds: int = 10) -> list[Any]:
    """Philox-4×32-``rounds`` of the four 32-bit counter words under the 64-bit ``key`` (two 32-bit
    words); returns the four output words. The words are numpy uint64 arrays or torch int64 tensors
    of equal shape with values in [0, 2³²) (a product of two 32-bit numbers wraps to the same low 64
    bits in both), so one implementation serves the host (numpy: fewer, cheaper operations) and the
    device (torch), bit for bit alike."""
    numpy = isinstance(counter[0], np.ndarray)
    k = (lambda v: np.uint64(v)) if numpy else (lambda v: v)
    m32, s32, m0, m1 = k(_M32), k(32), k(_PHILOX_M[0]), k(_PHILOX_M[1])
    c0, c1, c2, c3 = (c & m32 for c in counter)
    k0, k1 = key[0] & _M32, key[1] & _M32
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & _M32, (k1 + _PHILOX_W[1]) & _M32
        p0, p1 = c0 * m0, c2 * m1
        c0, c1, c2, c3 = ((p1 >> s32) & m32) ^ c1 ^ k(k0), p1 & m32, ((p0 >> s32) & m32) ^ c3 ^ k(k1), p0 & m32
    return [c0, c1, c2, c3]


def atom_normals(seed: int, stream: str | int, step: int, ids: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal noise (n, 3) for the atoms with global ids ``ids`` (n,) int64 at ``step``.

    One Philox block per (atom, step): counter (id low, id high, step low, step high), key (seed low,
    seed high ⊕ stream·2²⁴); its four 32-bit words give two pairs of uniforms and, by Box–Muller,
    four normals, of which the first three are used. Computed with numpy for CPU tensors and with
    torch on other devices (the same bits); returned on the device of ``ids``."""
    seed = int(seed) % 2**64
    key = (seed & _M32, ((seed >> 32) ^ (stream_id(stream) << 24)) & _M32)
    s_lo, s_hi = int(step) & _M32, (int(step) >> 32) & _M32
    if ids.device.type == "cpu":
        i = ids.numpy().astype(np.uint64)
        words = philox4x32([i, i >> np.uint64(32), np.full_like(i, s_lo), np.full_like(i, s_hi)], key)
        w = [torch.from_numpy(x.astype(np.int64)) for x in words]
    else:
        i = ids.to(torch.long)
        w = philox4x32([i, i >> 32, torch.full_like(i, s_lo), torch.full_like(i, s_hi)], key)
    # uniforms in (0, 1]: u = (w + 1) / 2^32
    u = [(x.to(torch.float64) + 1.0) * (1.0 / 4294967296.0) for x in w]
    r1 = torch.sqrt(-2.0 * torch.log(u[0]))
    r2 = torch.sqrt(-2.0 * torch.log(u[2]))
    t1, t2 = (2.0 * torch.pi) * u[1], (2.0 * torch.pi) * u[3]
    z = torch.stack([r1 * torch.cos(t1), r1 * torch.sin(t1), r2 * torch.cos(t2)], dim=-1)
    return z.to(dtype)


__all__ = ["STREAMS", "generator", "philox4x32", "atom_normals", "stream_id"]
