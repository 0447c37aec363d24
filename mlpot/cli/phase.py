"""``mlpot phase input.yaml``: phase diagrams from free energies (Frenkel–Ladd / Uhlenbeck–Ford +
reversible scaling per phase and pressure, crossings, Clausius–Clapeyron, Gibbs–Duhem line).

    mlpot phase input.yaml [--device cuda] [--workers N] [-q]

Every (phase × pressure × replica × stage) is one task of the workflow engine; a re-run reuses the
finished ones. Outputs in ``output_dir``: results.json, transitions.csv, G_T_P*.png, phase_diagram.png;
one line per transition on stdout. Input keys and defaults: :mod:`mlpot.workflows.phase.config`.
Thin: parses the arguments and calls :func:`mlpot.workflows.phase.driver.run_phase`.
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_device_option, add_quiet_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot phase``."""
    parser.add_argument("input", help="YAML input (potential, phases, pressures, t_min, t_max, replicas, steps)")
    parser.add_argument("--workers", type=int, default=None, help="tasks run at once (default: the engine's)")
    add_device_option(parser)
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot phase``; 0 on success (input mistakes and failed tasks raise MlpotError: exit 2)."""
    from mlpot.workflows.phase.config import load_phase_config
    from mlpot.workflows.phase.driver import run_phase

    cfg = load_phase_config(args.input)
    if args.device:
        cfg = cfg.model_copy(update={"device": args.device})
    run_phase(cfg, progress=not args.quiet, max_workers=args.workers)
    return 0
