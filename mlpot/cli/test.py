"""``mlpot test``: errors of a frozen model on labeled systems, in DeePMD-kit's ``dp test`` wording.

    mlpot test -m model.pt -s data/water/data_3 [more systems...] [-n 100] [--detail-file out/detail]
               [--plot parity.png] [--device cpu]

Prints, per system, the ``Energy MAE/RMSE[/Natoms]``, ``Force  MAE/RMSE`` and (periodic systems with
virial labels) ``Virial ...`` lines, and, for several systems, their weighted average (weights: the
number of labeled values, as ``dp test``). Library: :mod:`mlpot.metrics`, :func:`mlpot.plot.parity_plot`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlpot.cli.options import add_device_option, add_model_option, add_quiet_option, add_systems_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot test``."""
    add_model_option(parser)
    add_systems_option(parser, "--system", help="labeled data: DeePMD system dirs (or dirs holding several), "
                                                "HDF5 stores, extxyz, OUTCAR, ...")
    parser.add_argument("-n", "--numb-test", type=int, default=100,
                        help="frames tested per system, the first N (0: all; default 100, as dp test)")
    parser.add_argument("-d", "--detail-file", default=None,
                        help="prefix of per-frame/per-atom outputs: PREFIX.e.out, .e_peratom.out, .f.out (.v.out)")
    parser.add_argument("--plot", default=None, help="write parity plots (energy/atom, forces) to this image")
    add_device_option(parser)
    parser.add_argument("--batch-atoms", type=int, default=4096, help="atoms per model call (frames batched)")
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot test``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.data import io as dio
    from mlpot.errors import DataError
    from mlpot.export import load_model
    from mlpot.metrics import average_report, score_system, write_detail_files
    from mlpot.plot import ParityData, parity_plot
    from mlpot.progress import progress_bar

    if args.numb_test < 0:
        raise DataError(f"-n/--numb-test: expected a number of frames >= 0, found {args.numb_test}")
    model = load_model(args.model, device=args.device)
    systems = [s for path in args.systems for s in dio.read(path)]
    if not systems:
        raise DataError(f"{' '.join(args.systems)}: no systems found")
    scores = []
    total = sum(s.n_frames if args.numb_test == 0 else min(s.n_frames, args.numb_test) for s in systems)
    with progress_bar(total, desc="test", unit="frame", quiet=args.quiet) as bar:
        for system in systems:
            scores.append(score_system(model, system, numb_test=args.numb_test, batch_atoms=args.batch_atoms,
                                       progress=bar.update))
            bar.write("\n".join(scores[-1].report()))
    if len(scores) > 1:
        print("\n".join(average_report(scores)))
    if args.detail_file:
        paths = write_detail_files(args.detail_file, scores)
        print(f"# detail files: {', '.join(str(p) for p in paths)}")
    if args.plot:
        parity = ParityData.empty()
        for s in scores:
            parity.add(s.pred, s.system)
        parity_plot(args.plot, parity, title=Path(args.model).name)
        print(f"# parity plot: {args.plot}")
    return 0
