"""``mlpot neighbor-stat -s SYSTEM... -r RCUT``: the shortest pair distance and the largest neighbor count
per neighbor type within ``rcut`` over all frames — what DeePMD-kit calls ``sel``.

Library: :func:`mlpot.data.neighbor_stat.neighbor_stat` (systems opened lazily with
:func:`mlpot.data.io.open_datasets`, so an HDF5 store is read batch by batch).
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_device_option, add_quiet_option, add_systems_option, add_type_map_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot neighbor-stat``."""
    add_systems_option(parser)
    parser.add_argument("-r", "--rcut", type=float, required=True, help="cutoff radius (Å)")
    add_type_map_option(parser, help="element order of the columns (default: the data's)")
    add_device_option(parser)
    parser.add_argument("--max-frames", type=int, default=None, help="examine only the first N frames of each system")
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot neighbor-stat``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.data.io import open_datasets
    from mlpot.data.neighbor_stat import neighbor_stat

    from mlpot.progress import progress_bar

    systems = open_datasets(args.systems, type_map=args.type_map)
    total = sum(s.n_frames if args.max_frames is None else min(s.n_frames, args.max_frames) for s in systems)
    with progress_bar(total, desc="neighbor-stat", unit="frame", quiet=args.quiet) as bar:
        stat = neighbor_stat(systems, args.rcut, device=args.device, max_frames=args.max_frames, progress=bar.update)
    print(stat.format())
    return 0
