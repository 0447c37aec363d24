"""Benchmark: neighbor search on water boxes, side by side in one run: mlpot's torch cell list, vesin,
vesin-torch, ASE's neighbor_list, and mlpot.neighbors.neighbor_list as dispatched (CPU).

Run: ``python benchmarks/neighbors.py [--cutoff 6] [--reps 1 4 8] [--threads 2] [--json PATH]``.

Water box: frame 0 of data/water/data_0 (192 atoms, 12.44 Å cubic) replicated reps³ times
(192 / 12,288 / 98,304 atoms for reps 1 / 4 / 8). Every timed call includes the conversion to
mlpot's NeighborList (full list, torch int64 centers, neighbors, shifts), and every library's
(i, j, S) set is checked to equal the torch cell list's. The fast libraries are timed interleaved
(one call of each per round, rounds until ``--budget`` seconds, at least ``--repeat`` rounds, after
a warm-up round); ASE separately (``--ase-repeat`` calls at the largest size, where one call takes
minutes). Reported: median µs per call, wall time and process CPU time (all threads; the more
robust figure on a shared machine). torch runs on ``--threads`` threads and vesin on as many; ASE is
numpy (one thread). Raw results: ``--json`` (default benchmarks/results/neighbors.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from mlpot.neighbors import NeighborList, neighbor_list, neighbor_list_with  # noqa: E402
from mlpot.neighbors.vesin_backend import VESIN_MIN_ATOMS, vesin_available, vesin_neighbor_list  # noqa: E402


def interleaved(fns: list[Callable[[], Any]], min_repeat: int, budget_s: float, max_repeat: int = 50) -> list[dict]:
    """Rounds of one call of each function (after the caller's warm-up), at least ``min_repeat``
    rounds, more while under ``budget_s``; per function the wall times and the process CPU times
    (s, all threads; less sensitive than wall time to other jobs on a shared machine)."""
    out: list[dict] = [{"wall": [], "cpu": []} for _ in fns]
    start = time.perf_counter()
    while len(out[0]["wall"]) < max_repeat and (len(out[0]["wall"]) < min_repeat or time.perf_counter() - start < budget_s):
        for k, fn in enumerate(fns):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            out[k]["cpu"].append(time.process_time() - c0)
            out[k]["wall"].append(time.perf_counter() - w0)
    return out


def rows(nl: NeighborList) -> np.ndarray:
    """(i, j, s0, s1, s2) rows sorted lexicographically."""
    a = torch.cat([nl.centers[:, None], nl.neighbors[:, None], nl.shifts], dim=1).numpy()
    return a[np.lexsort(a.T[::-1])]


def libraries(pos: torch.Tensor, cell: torch.Tensor, cutoff: float) -> dict[str, Callable[[], NeighborList]]:
    """name -> call returning a NeighborList (fast libraries; ASE is timed apart)."""
    pbc = torch.ones(1, 3, dtype=torch.bool)
    pbc3 = torch.ones(3, dtype=torch.bool)
    libs: dict[str, Callable[[], NeighborList]] = {
        "mlpot_cell_list": lambda: neighbor_list_with("cell_list", pos, cell[None], pbc, cutoff),
        "mlpot_neighbor_list": lambda: neighbor_list(pos, cell[None], pbc, cutoff),
    }
    if vesin_available():
        libs["vesin"] = lambda: vesin_neighbor_list(pos, cell, pbc3, cutoff)
    try:
        import vesin.torch as vt

        def vesin_torch() -> NeighborList:
            calc = vt.NeighborList(cutoff=cutoff, full_list=True)
            i, j, s = calc.compute(pos, cell, True, quantities="ijS", copy=True)
            return NeighborList(i.to(torch.long), j.to(torch.long), s.to(torch.long))

        libs["vesin_torch"] = vesin_torch
    except ImportError:
        pass
    return libs


def ase_call(pos_np: np.ndarray, cell_np: np.ndarray, cutoff: float) -> Callable[[], NeighborList]:
    from ase import Atoms
    from ase.neighborlist import neighbor_list as ase_nl

    atoms = Atoms("X" * len(pos_np), positions=pos_np, cell=cell_np, pbc=True)

    def call() -> NeighborList:
        i, j, s = ase_nl("ijS", atoms, cutoff)
        return NeighborList(torch.from_numpy(i).to(torch.long), torch.from_numpy(j).to(torch.long),
                            torch.from_numpy(s).to(torch.long))

    return call


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cutoff", type=float, default=6.0, help="Å")
    p.add_argument("--reps", type=int, nargs="+", default=[1, 4, 8], help="replications per direction")
    p.add_argument("--threads", type=int, default=2, help="torch (and vesin) threads")
    p.add_argument("--repeat", type=int, default=5, help="at least this many interleaved rounds")
    p.add_argument("--budget", type=float, default=20.0, help="s of interleaved rounds per size (beyond --repeat)")
    p.add_argument("--ase-repeat", type=int, default=3, help="ASE calls per size (1 at the largest)")
    p.add_argument("--no-ase", action="store_true")
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "neighbors.json"))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    info = common.print_header("cpu", args.threads)
    versions: dict[str, Any] = {"torch": torch.__version__}
    for mod in ("vesin", "ase"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    print(f"# versions {versions}, cutoff {args.cutoff} Å, vesin backend from {VESIN_MIN_ATOMS} atoms")
    out: dict[str, Any] = {"host": info, "versions": versions, "cutoff_A": args.cutoff, "threads": args.threads,
                           "vesin_min_atoms": VESIN_MIN_ATOMS, "load_start": common.loadavg(), "sizes": []}
    names: list[str] = []
    for reps in args.reps:
        atoms = common.water_atoms(reps)
        pos_np, cell_np = atoms.get_positions(), np.asarray(atoms.get_cell()[:])
        pos, cell = torch.tensor(pos_np), torch.tensor(cell_np)
        libs = libraries(pos, cell, args.cutoff)
        names = list(libs) + ([] if args.no_ase else ["ase"])
        ref = rows(libs["mlpot_cell_list"]())
        entry: dict[str, Any] = {"n_atoms": len(pos_np), "n_pairs": int(len(ref)), "load": common.loadavg(),
                                 "libraries": {}}
        for name, fn in libs.items():  # the same (i, j, S) set, and the warm-up call
            entry["libraries"][name] = {"same_pairs": bool(np.array_equal(rows(fn()), ref))}
        times = interleaved(list(libs.values()), args.repeat, args.budget)
        for name, t in zip(libs, times):
            entry["libraries"][name].update(times_s=t["wall"], median_us=common.median(t["wall"]) * 1e6,
                                            cpu_times_s=t["cpu"], median_cpu_us=common.median(t["cpu"]) * 1e6)
        if not args.no_ase:
            call = ase_call(pos_np, cell_np, args.cutoff)
            w0, c0 = time.perf_counter(), time.process_time()
            nl = call()
            first = (time.perf_counter() - w0, time.process_time() - c0)
            same = bool(np.array_equal(rows(nl), ref))
            del nl
            n_more = 0 if reps == max(args.reps) and len(args.reps) > 1 else args.ase_repeat - 1
            t = interleaved([call], n_more, 0.0, max_repeat=n_more)[0] if n_more else {"wall": [], "cpu": []}
            wall, cpu = [first[0]] + t["wall"], [first[1]] + t["cpu"]
            entry["libraries"]["ase"] = {"same_pairs": same, "times_s": wall, "median_us": common.median(wall) * 1e6,
                                         "cpu_times_s": cpu, "median_cpu_us": common.median(cpu) * 1e6,
                                         "note": "first call included (no warm-up)"}
        entry["load_end"] = common.loadavg()
        out["sizes"].append(entry)
        cols = "  ".join(f"{n}={common.fmt(entry['libraries'][n]['median_us'], '.0f')}" for n in names)
        print(f"{entry['n_atoms']:>7} atoms {entry['n_pairs']:>10} pairs  µs/call: {cols}  load {entry['load']}", flush=True)
        bad = [n for n in names if not entry["libraries"][n]["same_pairs"]]
        if bad:
            print(f"  DIFFERENT PAIR SETS: {bad}")
    out["load_end"] = common.loadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    common.write_json(args.json, out)

    header = f"{'atoms':>7} {'pairs':>10} " + " ".join(f"{n:>20}" for n in names)
    for key, what in (("median_us", "wall"), ("median_cpu_us", "process CPU (all threads)")):
        print(f"\nmedian µs per call, {what}, incl. conversion to NeighborList\n" + header + "\n" + "-" * len(header))
        for e in out["sizes"]:
            print(f"{e['n_atoms']:>7} {e['n_pairs']:>10} "
                  + " ".join(f"{common.fmt(e['libraries'][n][key], '.0f'):>20}" for n in names))
    print(f"raw: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
