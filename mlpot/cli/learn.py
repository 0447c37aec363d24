"""``mlpot learn input.yaml``: concurrent learning (the DP-GEN loop in-package): train an ensemble,
explore with MD, label the configurations where the members disagree with any ASE calculator,
retrain, until the ensemble agrees on the last exploration stage.

    mlpot learn input.yaml [--device cuda] [--workers N] [-q]

Every training, MD run, selection and labelling is one task of the workflow engine; a re-run of the
same input continues from the last finished step. Outputs in ``output_dir``: data.h5 (the grown
dataset, with provenance), results.json, iterations.csv, accurate_fraction.png, deviation_hist.png,
models/; one line per iteration on stdout. Input keys and defaults:
:mod:`mlpot.workflows.learn.config`. Thin: parses the arguments and calls
:func:`mlpot.workflows.learn.loop.run_learn`.
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_device_option, add_quiet_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot learn``."""
    parser.add_argument("input", help="YAML input (init_data, training, stages, f_trust_lo/hi, labeller, ...)")
    parser.add_argument("--workers", type=int, default=None, help="tasks run at once (default: the engine's)")
    add_device_option(parser)
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot learn``; 0 when the loop converged or stopped at max_iterations (said on stdout),
    input mistakes and failed steps raise MlpotError (exit 2)."""
    from mlpot.workflows.learn.config import load_learn_config
    from mlpot.workflows.learn.loop import run_learn

    cfg = load_learn_config(args.input)
    if args.device:
        cfg = cfg.model_copy(update={"device": args.device})
    run_learn(cfg, progress=not args.quiet, max_workers=args.workers,
              echo=lambda line: print(line, flush=True))  # one line per iteration, at once in a log file too
    return 0
