"""Benchmark: mlpot.neighbors.neighbor_list on replicated water boxes vs ASE (and vesin if installed).

Run: ``python benchmarks/neighbors.py [--cutoff 6] [--repeat 3] [--device cpu] [--max-atoms 98304]``.
Prints a table of wall times (best of ``--repeat``) and pair counts. Water box: frame 0 of
data/water/data_0 (192 atoms, 12.44 Å cubic), replicated 1, 2, 4, 8 times per direction.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mlpot.neighbors import neighbor_list

ROOT = Path(__file__).resolve().parent.parent


def water_box(reps: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (N, 3) Å and cell (3, 3) Å of the bundled water frame replicated reps³ times."""
    d = ROOT / "data" / "water" / "data_0" / "set.000"
    pos = np.load(d / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    cell = np.load(d / "box.npy")[0].reshape(3, 3).astype(np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(reps)] * 3, indexing="ij"), -1).reshape(-1, 3)
    big = (pos[None, :, :] + (grid @ cell)[:, None, :]).reshape(-1, 3)
    return big, cell * reps


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cutoff", type=float, default=6.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-atoms", type=int, default=98304)
    p.add_argument("--no-ase", action="store_true", help="skip ASE (slow for big boxes)")
    args = p.parse_args()

    try:
        import vesin  # optional
    except ImportError:
        vesin = None
    from ase.neighborlist import neighbor_list as ase_nl

    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, rc {args.cutoff} Å")
    header = f"{'atoms':>7} {'pairs':>10} {'mlpot f64 s':>12} {'mlpot f32 s':>12} {'ase s':>9} {'vesin s':>9}"
    print(header)
    print("-" * len(header))
    for reps in (1, 2, 4, 8):
        pos_np, cell_np = water_box(reps)
        if len(pos_np) > args.max_atoms:
            break
        dev = torch.device(args.device)
        pos = torch.tensor(pos_np, device=dev)
        cell = torch.tensor(cell_np, device=dev)[None]
        pbc = torch.ones(1, 3, dtype=torch.bool, device=dev)
        neighbor_list(pos, cell, pbc, args.cutoff)  # warm-up
        t64, nl = best_time(lambda: neighbor_list(pos, cell, pbc, args.cutoff), args.repeat)
        pos32, cell32 = pos.float(), cell.float()
        t32, _ = best_time(lambda: neighbor_list(pos32, cell32, pbc, args.cutoff), args.repeat)
        n_pairs = nl.centers.numel()
        t_ase = float("nan")
        if not args.no_ase:
            from ase import Atoms

            atoms = Atoms("X" * len(pos_np), positions=pos_np, cell=cell_np, pbc=True)
            t_ase, i_ase = best_time(lambda: ase_nl("i", atoms, args.cutoff), 1 if reps >= 8 else args.repeat)
            assert len(i_ase) == n_pairs, (len(i_ase), n_pairs)
        t_vesin = float("nan")
        if vesin is not None:
            calc = vesin.NeighborList(cutoff=args.cutoff, full_list=True)
            t_vesin, i_v = best_time(lambda: calc.compute(pos_np, cell_np, True, quantities="i"), args.repeat)
            i_v = i_v[0] if isinstance(i_v, (tuple, list)) else i_v
            assert len(i_v) == n_pairs, (len(i_v), n_pairs)
        print(f"{len(pos_np):>7} {n_pairs:>10} {t64:>12.4f} {t32:>12.4f} {t_ase:>9.3f} {t_vesin:>9.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
