"""Process-level tuning applied by the ``mlpot`` command before it runs a command, and on the first
import of :mod:`mlpot.model` (so library use, ``mlpot.evaluate`` or the ASE calculator, gets it too).

glibc's malloc adapts its mmap and trim thresholds as blocks are freed. PyTorch's CPU tensors are
allocated with malloc, and the allocation pattern of one MD step or one batched evaluation (many
buffers of a few MiB, freed every step) can make glibc hand that memory back to the kernel and fault
it in again at the next step: measured on `mlpot md` (1,536 water atoms, se_e2_a, 13 steps) 1.04 M
minor page faults and ~15-20 % of the step time, against 0.10 M faults with fixed thresholds
(`benchmarks/RESULTS.md`, "No speed regression"). Fixing the thresholds (mmap above 32 MiB, the glibc
maximum; trim only above 1 GiB of free heap top) removes most of that churn. The rest went with a
256 MiB top pad (heap growth and trimming keep that much more): a compressed water model at 1,536
atoms still took 58,000 minor faults (230 MB of fresh pages) per evaluation with the two thresholds,
none with the pad, and ran 1.4× faster (`benchmarks/RESULTS.md`, "Compression"). The process keeps
at most that much freed memory. Set ``MLPOT_MALLOC_TUNING=0`` to leave malloc alone (also skipped when the
user already set glibc's ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``, or off glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
#: bytes
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024
TOP_PAD = 256 * 1024 * 1024

_applied = False


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` has applied the thresholds in this process."""
    return _applied


def tune_malloc() -> bool:
    """Fix glibc's mmap/trim thresholds (module docstring); True when applied (now or before)."""
    global _applied
    if _applied:
        return True
    if os.environ.get("MLPOT_MALLOC_TUNING", "1") == "0":
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt, Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = (bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
                and bool(mallopt(M_TOP_PAD, TOP_PAD)))
    return _applied


__all__ = ["tune_malloc", "malloc_tuned"]
