"""Where the compressed se_e2_a path spends its time on this CPU: the memory floor of the tables.

The compiled path (``mlpot.descriptors.tabulate._CompiledContract``) does, per neighbor slot of the
padded (centers × nmax) layout: read the 6 coefficient rows of the slot's interval (6 × ng float64 =
4.8 KB for ng = 100), write G and G′ (2 × ng values, 1.6 KB), and later read G back for A = R̃ᵀG
(forward bmm) and G, G′ for the backward bmm. This script times the two pieces alone, on synthetic
inputs of the water model's shapes (blocks of 81 centers × 101 slots, ng = 100):

* the table kernel (``_kernel_values``, torch.compile) in ns per slot, with the table sized to sit in
  L1, L2 or L3 (a few, 400 or 3,200 intervals; the water model's two tables have 2 × 2,200), float64
  and float32: if it were arithmetic-bound the time would not depend on where the table lives;
* the backward contraction bmm ((n, 2·nmax, ng) × (n, ng, 4)) in ns per slot and GB/s of G, G′ read,
  in both operand orders.

    python benchmarks/compress_floor.py [--threads 2] [--json benchmarks/results/compress_floor.json]

Units: ns per slot (one neighbor slot of one center), GB/s. Needs a C++ compiler (torch.compile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import common  # noqa: E402

N_CENTERS, NMAX, NG, N_BLOCKS = 81, 101, 100, 9


def best_ms(fn, repeat: int = 20) -> float:
    """Minimum wall time (ms) of fn() over ``repeat`` calls after one warm-up call."""
    return 1e3 * min(common.time_calls(fn, warmup=1, min_repeat=repeat, max_repeat=repeat, budget_s=0.0))


def kernel_ns_per_slot(n_intervals: int, dtype: torch.dtype) -> dict:
    """The compiled G, G′ kernel over N_BLOCKS blocks with a table of ``n_intervals`` intervals."""
    from mlpot.descriptors.tabulate import _kernel_values

    kern = torch.compile(_kernel_values, dynamic=True)
    g = torch.Generator().manual_seed(0)
    tab = torch.randn(n_intervals * 6, NG, dtype=dtype, generator=g)
    blocks = [(torch.randint(0, n_intervals, (N_CENTERS, NMAX), generator=g) * 6,
               torch.randn(N_CENTERS, NMAX, 6, dtype=dtype, generator=g),
               torch.randn(N_CENTERS, NMAX, 6, dtype=dtype, generator=g)) for _ in range(N_BLOCKS)]

    def run():
        for row0, w, dw in blocks:
            kern(tab, row0, w, dw)

    ms = best_ms(run)
    return {"intervals": n_intervals, "dtype": str(dtype).replace("torch.", ""),
            "table_MB": tab.numel() * tab.element_size() / 1e6,
            "ns_per_slot": 1e6 * ms / (N_BLOCKS * N_CENTERS * NMAX)}


def backward_bmm() -> dict:
    """The backward contraction per block: P = [G; G′] dAᵀ, as (n, 2nmax, ng)·(n, ng, 4) and as
    dA·[G; G′]ᵀ ((n, 4, ng)·(n, ng, 2nmax)), float64."""
    g = torch.Generator().manual_seed(1)
    blocks = [(torch.randn(N_CENTERS, 2 * NMAX, NG, dtype=torch.float64, generator=g),
               torch.randn(N_CENTERS, 4, NG, dtype=torch.float64, generator=g)) for _ in range(N_BLOCKS)]
    slots = N_BLOCKS * N_CENTERS * NMAX
    out = {}
    for name, fn in (("v_dAT", lambda v, d: torch.bmm(v, d.transpose(1, 2))),
                     ("dA_vT", lambda v, d: torch.bmm(d, v.transpose(1, 2)))):
        ms = best_ms(lambda: [fn(v, d) for v, d in blocks])
        read = sum(v.numel() * v.element_size() for v, _ in blocks)
        out[name] = {"ns_per_slot": 1e6 * ms / slots, "GB_per_s_read": read / (ms * 1e-3) / 1e9}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "compress_floor.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for dtype in (torch.float64, torch.float32):
        for n_int in (20, 400, 3200):
            r = kernel_ns_per_slot(n_int, dtype)
            print(f"table kernel {r['dtype']:8s} {n_int:5d} intervals ({r['table_MB']:5.1f} MB): {r['ns_per_slot']:6.1f} ns/slot")
            rows.append(r)
    bmm = backward_bmm()
    for k, v in bmm.items():
        print(f"backward bmm {k}: {v['ns_per_slot']:.1f} ns/slot, {v['GB_per_s_read']:.1f} GB/s of G, G' read")
    res = {"kernel": rows, "backward_bmm": bmm, "threads": args.threads, "torch": torch.__version__,
           "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
           "loadavg_1min_at_end": os.getloadavg()[0], "shapes": {"centers_per_block": N_CENTERS, "nmax": NMAX, "ng": NG},
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(args.json)
    print(args.json)


if __name__ == "__main__":
    main()
