"""``mlpot model-devi``: model deviation of an ensemble over the frames of a trajectory or data set.

    mlpot model-devi -m m1.pt m2.pt m3.pt -s traj.xyz [more...] [-o model_devi.out] [-f FREQUENCY]

Writes DP-GEN / DeePMD-kit's ``model_devi.out``: per frame ``step max_devi_v min_devi_v avg_devi_v
max_devi_f min_devi_f avg_devi_f devi_e`` (see :mod:`mlpot.metrics` for the formulas), one block per
system read, each headed by a ``# <system>`` line; ``step`` = the MD step of the frame where the file
records one (an H5MD trajectory from ``mlpot md``), else frame index × FREQUENCY.
``-t/--traj`` is kept as another spelling of ``-s/--systems`` here (``-t`` means nothing else anywhere).
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import (add_device_option, add_models_option, add_output_option, add_quiet_option,
                               add_systems_option)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot model-devi``."""
    add_models_option(parser, help="two or more frozen model files")
    add_systems_option(parser, "--system", "-t", "--traj", help="frames: any ASE-readable trajectory (extxyz, "
                                                                "traj, db), DeePMD system dirs, HDF5 stores, ...")
    add_output_option(parser, default="model_devi.out", help="output file")
    parser.add_argument("-f", "--frequency", type=int, default=1, help="MD steps between frames (step column) for files that do not record "
                                                                "each frame's step (an H5MD trajectory does)")
    add_device_option(parser)
    parser.add_argument("--batch-atoms", type=int, default=4096, help="atoms per model call (frames batched)")
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot model-devi``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    import numpy as np

    from mlpot.atomic_io import atomic_path
    from mlpot.data import io as dio
    from mlpot.errors import ModelError
    from mlpot.export import load_model
    from mlpot.metrics import check_same_type_map, format_model_devi, system_model_deviation

    if len(args.models) < 2:
        raise ModelError(f"-m/--models: expected at least 2 models for a deviation, found {len(args.models)}")
    models = [load_model(p, device=args.device) for p in args.models]
    check_same_type_map(models, args.models)
    from mlpot.progress import progress_bar

    text, n_total = "", 0
    inputs = [(dio.read(path), dio.frame_steps(path)) for path in args.systems]
    total = len(models) * sum(s.n_frames for systems, _ in inputs for s in systems)
    with progress_bar(total, desc="model-devi", unit="frame", quiet=args.quiet) as bar:
        for systems, recorded in inputs:
            for k, system in enumerate(systems):
                steps = recorded[k] if recorded is not None else np.arange(system.n_frames) * args.frequency
                devi = system_model_deviation(models, system, batch_atoms=args.batch_atoms, progress=bar.update)
                text += format_model_devi(steps, devi, header=system.source)
                n_total += system.n_frames
                bar.write(f"{system.source}: {system.n_frames} frames, max_devi_f up to {devi[:, 3].max():.4e} eV/A")
    with atomic_path(args.output) as tmp:
        tmp.write_text(text)
    print(f"model deviation of {len(models)} models over {n_total} frames written to {args.output}")
    return 0
