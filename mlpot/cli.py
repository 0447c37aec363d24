"""The ``mlpot`` command line: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. A user mistake
(:class:`mlpot.errors.MlpotError`) prints one line ``mlpot <cmd>: error: ...`` and exits with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from mlpot.errors import MlpotError

#: subcommand name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("mlpot.data.convert_cli", "convert DFT data between DeePMD npy/raw, extxyz/ASE, VASP and HDF5"),
    "neighbor-stat": ("mlpot.data.neighbor_stat", "minimal pair distance and maximal neighbor counts (sel)"),
    "train": ("mlpot.train.train_cli", "train a Deep Potential from a DeePMD-kit-style input.json (DDP via torchrun)"),
    "plot": ("mlpot.plot_cli", "plot a learning curve (lcurve.out) to an image"),
    "freeze": ("mlpot.freeze_cli", "freeze a training checkpoint into one self-contained model file"),
    "test": ("mlpot.test_cli", "energy/force/virial errors of a model on labeled data (dp test wording)"),
    "model-devi": ("mlpot.model_devi_cli", "model deviation of an ensemble over trajectory frames (model_devi.out)"),
    "import-deepmd": ("mlpot.interop.cli", "import a DeePMD-kit se_e2_a/se_e2_r model (.dp/.yaml/.pt checkpoint) as an mlpot model"),
    "export-deepmd": ("mlpot.interop.cli", "export an mlpot model as DeePMD-kit .dp/.yaml (then dp convert-backend)"),
    "md": ("md_engine.md_cli", "molecular dynamics with md_engine from a YAML input (NVE/NVT/NPT, LJ or a model)"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _overview() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "commands:\n" + "\n".join(lines) + "\n\nRun 'mlpot COMMAND --help' for a command's options."


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so one command never slows or breaks another)."""
    from mlpot import __version__

    parser = _Parser(
        prog="mlpot",
        description="Deep-Potential machine-learned interatomic potentials. Units: eV, Å, fs, amu, K, bar.",
        epilog=_overview(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlpot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if command is not None and name != command:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is None and argv and not argv[0].startswith("-"):
        print(f"mlpot: error: unknown command '{argv[0]}' (expected one of: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except MlpotError as exc:
        print(f"mlpot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlpot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
