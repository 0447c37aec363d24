"""``mlpot freeze``: turn a training checkpoint into one self-contained model file.

    mlpot freeze -c train/model.ckpt.pt -o model.pt

``-c`` may also name the training output directory (its newest checkpoint is used). The checkpoint
format is :mod:`mlpot.train.checkpoint`; the freeze is :func:`mlpot.export.freeze`; the model file
(see :mod:`mlpot.export`) carries weights, statistics, type_map, rcut, precision, the model and full
training config and the mlpot version.
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_output_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot freeze``."""
    parser.add_argument("-c", "--checkpoint", required=True,
                        help="training checkpoint file, or the training output directory (newest checkpoint)")
    add_output_option(parser, default="model.pt", help="model file to write")


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot freeze``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.export import freeze, read_model_file
    from mlpot.train import checkpoint

    ckpt = checkpoint.read(args.checkpoint)
    out = freeze(ckpt, args.output)
    _, meta = read_model_file(out)
    print(
        f"froze {ckpt.path} (step {meta.get('step')}) -> {out}: type_map {meta['type_map']}, "
        f"rcut {meta['rcut']} Å, {meta['precision']}"
    )
    return 0
