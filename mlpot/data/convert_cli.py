"""``mlpot convert INPUT... -o OUTPUT``: convert DFT data between DeePMD npy/raw, extxyz/ASE, VASP and HDF5.

The output format follows the suffix (``.h5``/``.hdf5`` → HDF5, ``.xyz``/``.extxyz`` → extxyz, anything
else → a DeePMD npy directory; several systems go into one subdirectory each) unless ``--format``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="DeePMD system dirs (or dirs holding them), .h5, extxyz, OUTCAR, vasprun.xml, ASE db/traj")
    parser.add_argument("-o", "--output", required=True, help="output path (.h5/.hdf5, .xyz/.extxyz, or a directory)")
    parser.add_argument("--format", dest="out_format", default=None,
                        choices=["deepmd/npy", "deepmd/raw", "extxyz", "hdf5"], help="output format (default: from suffix)")
    parser.add_argument("--input-format", default=None,
                        help="input format for all inputs (deepmd/npy, deepmd/raw, hdf5, extxyz, vasp/outcar, vasp/xml, ase, ase/db, ase/traj)")
    parser.add_argument("--type-map", nargs="+", default=None, metavar="ELEM",
                        help="element names for the type indices of the output (default: union of the inputs')")
    parser.add_argument("--append", action="store_true", help="HDF5 output: add the systems to an existing store")


def run(args: argparse.Namespace) -> int:
    from mlpot.data import io

    systems = []
    for path in io.find_systems(args.inputs):
        systems += io.read(path, fmt=args.input_format, type_map=args.type_map)
    tm = list(args.type_map) if args.type_map else io.common_type_map(systems)
    systems = [s if s.type_map == tm else s.with_type_map(tm) for s in systems]
    io.write(systems, args.output, fmt=args.out_format, append=args.append)
    n_frames = sum(s.n_frames for s in systems)
    print(f"wrote {len(systems)} system(s), {n_frames} frame(s), type_map {tm} to {args.output}")
    return 0
