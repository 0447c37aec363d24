"""``mlpot plot``: draw a learning curve.

    mlpot plot lcurve.out -o lcurve.png

Library: :func:`mlpot.plot.plot_lcurve` (needs matplotlib: ``pip install mlpot[plot]``).
"""

from __future__ import annotations

import argparse

from mlpot.cli.options import add_output_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mlpot plot``."""
    parser.add_argument("lcurve", help="learning-curve file written by mlpot train (DeePMD-kit lcurve.out layout)")
    add_output_option(parser, default="lcurve.png", help="image file (format from suffix)")
    parser.add_argument("--dpi", type=int, default=120, help="resolution (default 120)")


def run(args: argparse.Namespace) -> int:
    """Run ``mlpot plot``; 0 on success (a user mistake raises :class:`mlpot.errors.MlpotError`)."""
    from mlpot.plot import plot_lcurve

    out = plot_lcurve(args.lcurve, args.output, dpi=args.dpi)
    print(f"wrote {out}")
    return 0
