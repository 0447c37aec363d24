"""``mlpot compress model.pt -o model-compressed.pt``: tabulate the embedding nets (model compression).

    mlpot compress model.pt -o model-compressed.pt [--step 0.01] [--extrapolate 5] [--check-frequency N]
                   [--min-distance R | -s SYSTEM...]

The tables cover the neighbor distances the model can meet: from the minimum neighbor distance of
the training data (recorded in the model by ``mlpot train``; for older models give ``--min-distance``
in Å or the training data with ``-s``, whose shortest pair distance ``mlpot neighbor-stat`` computes).
Library: :meth:`mlpot.model.EnergyModel.compress`, :func:`mlpot.compress.compress_file`.
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_output_option, add_systems_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot compress``."""
    parser.add_argument("model", metavar="MODEL", help="frozen (uncompressed) model file (mlpot freeze)")
    add_output_option(parser, help="compressed model file to write")
    parser.add_argument("--step", type=float, default=0.01, help="stride of the first table in normalised s̃ "
                        "(the second table's is 10x; default 0.01, DeePMD-kit's)")
    parser.add_argument("--extrapolate", type=float, default=5.0,
                        help="the second table ends at extrapolate x the first's upper bound (default 5)")
    parser.add_argument("--check-frequency", type=int, default=-1,
                        help="every N evaluations count the neighbor pairs beyond the tables and warn (default -1: off)")
    parser.add_argument("--min-distance", type=float, default=None, metavar="R",
                        help="minimum neighbor distance in Å (default: the one recorded in the model at training)")
    add_systems_option(parser, required=False,
                       help="training data: compute the minimum neighbor distance from them (models that do not record it); "
                            "also the check set (its first frames) for the printed deviation")


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot compress``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.compress import compress_file

    report = compress_file(
        args.model, args.output, step=args.step, extrapolate=args.extrapolate,
        check_frequency=args.check_frequency, min_distance=args.min_distance, systems=args.systems,
    )
    print(report.format())
    return 0
