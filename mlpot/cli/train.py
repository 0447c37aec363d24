"""``mlpot train``: train a model from a DeePMD-kit-style input (JSON or YAML).

    mlpot train input.json [-o OUTDIR] [--restart CKPT] [--init-model CKPT_OR_MODEL] [--overwrite] [--device cpu|cuda] [--quiet]
    torchrun --nproc_per_node=N -m mlpot train input.json      # data parallel (NCCL on GPUs, gloo on CPU)

Writes OUTDIR/lcurve.out, OUTDIR/model.ckpt-<step>.pt and OUTDIR/model.ckpt.pt (latest checkpoint),
and at the end the frozen model OUTDIR/model.pt (unless ``--no-freeze``). An OUTDIR that holds a previous
run (lcurve.out or checkpoints) is refused unless ``--restart`` continues it or ``--overwrite`` replaces it. Library:
:func:`mlpot.config.load_config`, :class:`mlpot.train.trainer.Trainer`,
:func:`mlpot.train.distributed.init_distributed`.
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_device_option, add_output_option, add_quiet_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot train``."""
    parser.add_argument("input", help="training input (DeePMD-kit input.json layout; .json, .yaml or .yml)")
    add_output_option(parser, "--output-dir", required=False,
                      help="output directory (default: training.output_dir, else the current directory)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--restart", default=None, metavar="CKPT", help="continue a training exactly from a checkpoint")
    start.add_argument("--init-model", default=None, metavar="MODEL",
                       help="start from the weights of a checkpoint or frozen model (fine-tuning)")
    add_device_option(parser)
    parser.add_argument("--steps", type=int, default=None, help="override training.numb_steps")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new training in an output directory that holds a previous run (lcurve.out, "
                             "checkpoints), replacing it; without it that is refused unless --restart continues it")
    parser.add_argument("--no-freeze", action="store_true", help="do not write OUTDIR/model.pt at the end")
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot train``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    import torch

    from mlpot.config import load_config
    from mlpot.train.distributed import init_distributed
    from mlpot.train.trainer import Trainer

    cfg = load_config(args.input)
    if args.steps is not None:
        if args.steps < 0:
            from mlpot.errors import ConfigError

            raise ConfigError(f"--steps: expected a non-negative number of steps, found {args.steps}")
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"numb_steps": args.steps})})
    device = args.device or cfg.training.device
    started = init_distributed(device)
    try:
        trainer = Trainer.from_config(
            cfg, output_dir=args.output, device=args.device, restart=args.restart,
            init_model=args.init_model, quiet=args.quiet, overwrite=args.overwrite,
        )
        trainer.train()
        if cfg.training.freeze and not args.no_freeze:
            path = trainer.freeze()
            if path is not None:
                trainer.info(f"frozen model written to {path}")
    finally:
        if started:
            torch.distributed.destroy_process_group()
    return 0
