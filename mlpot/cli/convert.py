"""``mlpot convert INPUT... -o OUTPUT``: convert DFT data between the registered data formats
(:mod:`mlpot.data.formats`: DeePMD npy/raw, extxyz/ASE, VASP, HDF5, ...).

The output format follows the suffix (``.h5``/``.hdf5`` → HDF5, ``.xyz``/``.extxyz`` → extxyz, anything
else → a DeePMD npy directory; several systems go into one subdirectory each) unless ``--format``.
Library: :func:`mlpot.data.io.load_systems`, :func:`mlpot.data.io.write`.
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_output_option, add_quiet_option, add_type_map_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot convert``."""
    from mlpot.data.formats import FORMATS, help_text

    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="DeePMD system dirs (or dirs holding them), .h5, extxyz, OUTCAR, vasprun.xml, ASE db/traj")
    add_output_option(parser, help="output path (.h5/.hdf5, .xyz/.extxyz, or a directory)")
    writable = [n for n in FORMATS.names(aliases=True) if FORMATS.get(n).obj.write is not None]
    parser.add_argument("--format", dest="out_format", default=None, choices=sorted(writable), metavar="FORMAT",
                        help=f"output format (default: from suffix): {help_text(writable=True)}")
    parser.add_argument("--input-format", default=None,
                        help=f"input format for all inputs (default: guessed per input): {help_text()}")
    add_type_map_option(parser, help="element names for the type indices of the output (default: union of the inputs')")
    parser.add_argument("--append", action="store_true", help="HDF5 output: add the systems to an existing store")
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot convert``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.data import io

    from mlpot.data.formats.deepmd import find_systems
    from mlpot.progress import progress_bar

    n_inputs = len(find_systems(args.inputs))
    with progress_bar(n_inputs, desc="convert: reading", unit="system", quiet=args.quiet) as bar:
        systems = io.load_systems(args.inputs, type_map=args.type_map, fmt=args.input_format, progress=bar.update)
    tm = systems[0].type_map
    io.write(systems, args.output, fmt=args.out_format, append=args.append)
    n_frames = sum(s.n_frames for s in systems)
    print(f"wrote {len(systems)} system(s), {n_frames} frame(s), type_map {tm} to {args.output}")
    return 0
