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
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from mlpot import __version__

    parser = _Parser(prog="mlpot", description="Deep-Potential machine-learned interatomic potentials.")
    parser.add_argument("--version", action="version", version=f"mlpot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
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
