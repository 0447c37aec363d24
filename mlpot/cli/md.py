"""``mlpot md input.yaml``: molecular dynamics with md_engine (see :mod:`md_engine.config`).

    mlpot md input.yaml [--restart] [--steps N] [--device cuda] [-q]
    mpirun -n P mlpot md input.yaml            # spatial decomposition over P ranks

Writes to ``output_dir``: ``thermo.csv``, ``traj.h5`` (H5MD) and/or ``traj.xyz``, ``checkpoint.pt``
(every ``checkpoint_every`` steps and at the end; ``checkpoint.failed.pt`` if the run stops on an
error). ``restart: true`` (or ``--restart``) continues from ``output_dir/checkpoint.pt``.

The only module of :mod:`mlpot` that imports :mod:`md_engine` (inside :func:`run`, so that importing
:mod:`mlpot.cli` never does): md_engine imports mlpot, never the other way round. For now the run is
:func:`md_engine.md_cli.run`; the options are the shared ones (:mod:`mlpot.cli.options`).
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_device_option, add_quiet_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot md``."""
    parser.add_argument("input", help="YAML input file (structure, potential, ensemble, T, P, dt, steps, outputs)")
    parser.add_argument("--restart", action="store_true", help="continue from output_dir/checkpoint.pt")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    add_device_option(parser)
    add_quiet_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot md``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from md_engine import md_cli

    ns = argparse.Namespace(**vars(args))
    ns.no_progress = args.quiet  # md_engine.md_cli's name for -q/--quiet
    return md_cli.run(ns)
