"""``mlpot test``: errors of a frozen model on labeled systems, in DeePMD-kit's ``dp test`` wording.

    mlpot test -m model.pt -s data/water/data_3 [more systems...] [-n 100] [--detail-file out/detail]
               [--plot parity.png] [--device cpu]

Prints, per system, the ``Energy MAE/RMSE[/Natoms]``, ``Force  MAE/RMSE`` and (periodic systems with
virial labels) ``Virial ...`` lines, and, for several systems, their weighted average (weights: the
number of labeled values, as ``dp test``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True, help="frozen model file (mlpot freeze)")
    parser.add_argument(
        "-s", "--system", "--systems", dest="systems", nargs="+", required=True,
        help="labeled data: DeePMD system dirs (or dirs holding several), HDF5 stores, extxyz, OUTCAR, ...",
    )
    parser.add_argument("-n", "--numb-test", type=int, default=100,
                        help="frames tested per system, the first N (0: all; default 100, as dp test)")
    parser.add_argument("-d", "--detail-file", default=None,
                        help="prefix of per-frame/per-atom outputs: PREFIX.e.out, .e_peratom.out, .f.out (.v.out)")
    parser.add_argument("--plot", default=None, help="write parity plots (energy/atom, forces) to this image")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--batch-atoms", type=int, default=4096, help="atoms per model call (frames batched)")


def run(args: argparse.Namespace) -> int:
    from mlpot.atomic_io import atomic_path
    from mlpot.data import io as dio
    from mlpot.errors import DataError
    from mlpot.evaluate import detail_blocks, detail_path, error_metrics, format_metrics, predict, weighted_average
    from mlpot.plot import ParityData, parity_plot
    from mlpot.export import load_model

    if args.numb_test < 0:
        raise DataError(f"-n/--numb-test: expected a number of frames >= 0, found {args.numb_test}")
    model = load_model(args.model, device=args.device)
    systems = []
    for path in args.systems:
        systems.extend(dio.read(path))
    if not systems:
        raise DataError(f"{' '.join(args.systems)}: no systems found")
    errors, details, parity = [], {}, ParityData.empty()
    for system in systems:
        n = system.n_frames if args.numb_test == 0 else min(system.n_frames, args.numb_test)
        system = system.subset(slice(0, n))
        name = system.source
        print("# ---------------output of mlpot test--------------- ")
        print(f"# testing system : {name}")
        pred = predict(model, system, batch_atoms=args.batch_atoms)
        err = error_metrics(pred, system)
        print(f"# number of test data : {n:d} ")
        for line in format_metrics(err):
            print(line)
        if not err:
            print("# (no energy/force/virial labels in this system: nothing to compare)")
        print("# ----------------------------------------------- ")
        errors.append(err)
        for suffix, text in detail_blocks(name, pred, system).items():
            details[suffix] = details.get(suffix, "") + text
        parity.add(pred, system)
    if len(systems) > 1:
        print("# ----------weighted average of errors----------- ")
        print(f"# number of systems : {len(systems)}")
        for line in format_metrics(weighted_average(errors)):
            print(line)
        print("# ----------------------------------------------- ")
    if args.detail_file:
        for suffix, text in details.items():
            with atomic_path(detail_path(args.detail_file, suffix)) as tmp:
                tmp.write_text(text)
        print(f"# detail files: {', '.join(str(detail_path(args.detail_file, s)) for s in details)}")
    if args.plot:
        parity_plot(args.plot, parity, title=Path(args.model).name)
        print(f"# parity plot: {args.plot}")
    return 0
