"""``mlpot model-devi``: model deviation of an ensemble over the frames of a trajectory or data set.

    mlpot model-devi -m m1.pt m2.pt m3.pt -t traj.xyz [more...] [-o model_devi.out] [-f FREQUENCY]

Writes DP-GEN / DeePMD-kit's ``model_devi.out``: per frame ``step max_devi_v min_devi_v avg_devi_v
max_devi_f min_devi_f avg_devi_f devi_e`` (see :mod:`mlpot.evaluate` for the formulas), one block per
system read, each headed by a ``# <system>`` line; ``step`` = frame index × FREQUENCY.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--models", nargs="+", required=True, help="two or more frozen model files")
    parser.add_argument(
        "-t", "-s", "--traj", "--system", dest="trajs", nargs="+", required=True,
        help="frames: any ASE-readable trajectory (extxyz, traj, db), DeePMD system dirs, HDF5 stores, ...",
    )
    parser.add_argument("-o", "--output", default="model_devi.out", help="output file (default model_devi.out)")
    parser.add_argument("-f", "--frequency", type=int, default=1, help="MD steps between frames (step column)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--batch-atoms", type=int, default=4096, help="atoms per model call (frames batched)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mlpot.atomic_io import atomic_path
    from mlpot.data import io as dio
    from mlpot.errors import ModelError
    from mlpot.evaluate import check_same_type_map, ensemble_predict, format_model_devi, model_deviation
    from mlpot.export import load_model

    if len(args.models) < 2:
        raise ModelError(f"-m/--models: expected at least 2 models for a deviation, found {len(args.models)}")
    models = [load_model(p, device=args.device) for p in args.models]
    check_same_type_map(models, args.models)
    text = ""
    n_total = 0
    for path in args.trajs:
        for system in dio.read(path):
            pred = ensemble_predict(models, system, batch_atoms=args.batch_atoms)
            devi = model_deviation(pred["energy"], pred["forces"], pred["virial"], system.n_atoms)
            steps = np.arange(system.n_frames) * args.frequency
            text += format_model_devi(steps, devi, header=system.source)
            n_total += system.n_frames
            print(f"{system.source}: {system.n_frames} frames, max_devi_f up to {devi[:, 3].max():.4e} eV/A")
    with atomic_path(args.output) as tmp:
        tmp.write_text(text)
    print(f"model deviation of {len(models)} models over {n_total} frames written to {args.output}")
    return 0
