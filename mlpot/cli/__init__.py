"""The ``mlpot`` command line: one entry point (:func:`main`), one thin module per command in this package.

Each command module (``mlpot/cli/<command>.py``) defines ``add_arguments(parser)`` and ``run(args) -> int``
and only parses arguments and calls library functions; the flags shared by several commands come from
:mod:`mlpot.cli.options`, so they are spelled and mean the same everywhere. Only the module of the command
that runs is imported. A user mistake (:class:`mlpot.errors.MlpotError`, or a bad argument) prints one line
``mlpot <cmd>: error: ...`` and exits with status 2; Ctrl-C exits with 130; anything else is a bug and
keeps its traceback.

Adding a command: one module here with ``add_arguments``/``run`` and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable, Optional, Sequence

from mlpot.errors import MlpotError, did_you_mean

#: command name -> (``module`` or ``module:prefix``, one-line help). A module serves its command with
#: ``add_arguments``/``run``; ``module:prefix`` names ``<prefix>_add_arguments``/``<prefix>_run`` in it
#: (two commands in one file). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("mlpot.cli.convert", "convert DFT data between DeePMD npy/raw, extxyz/ASE, VASP and HDF5"),
    "neighbor-stat": ("mlpot.cli.neighbor_stat", "minimal pair distance and maximal neighbor counts (sel)"),
    "train": ("mlpot.cli.train", "train a Deep Potential from a DeePMD-kit-style input.json (DDP via torchrun)"),
    "plot": ("mlpot.cli.plot", "plot a learning curve (lcurve.out) to an image"),
    "freeze": ("mlpot.cli.freeze", "freeze a training checkpoint into one self-contained model file"),
    "compress": ("mlpot.cli.compress", "tabulate the embedding nets of a model (model compression) for faster inference and MD"),
    "test": ("mlpot.cli.test", "energy/force/virial errors of a model on labeled data (dp test wording)"),
    "model-devi": ("mlpot.cli.model_devi", "model deviation of an ensemble over trajectory frames (model_devi.out)"),
    "import-deepmd": ("mlpot.cli.deepmd:import_deepmd", "import a DeePMD-kit se_e2_a/se_e2_r/se_atten(_v2) model (.dp/.yaml/.pt checkpoint/frozen or compressed .pth) as an mlpot model"),
    "export-deepmd": ("mlpot.cli.deepmd:export_deepmd", "export an mlpot model as DeePMD-kit .dp/.yaml (then dp convert-backend)"),
    "md": ("mlpot.cli.md", "molecular dynamics with md_engine from a YAML input (NVE/NVT/NPT, LJ or a model)"),
    "phase": ("mlpot.cli.phase", "phase diagram from free energies (Frenkel-Ladd/Uhlenbeck-Ford + reversible scaling)"),
    "learn": ("mlpot.cli.learn", "concurrent learning: ensemble, MD exploration, labelling with an ASE calculator, retrain (DP-GEN loop)"),
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                help="one of the commands below")
    for name, (module, help_text) in COMMANDS.items():
        if command is not None and name != command:
            continue
        p = sub.add_parser(name, description=help_text)  # listed once, in the epilog (_overview)
        p.set_defaults(_module=module)
        _entry(module, "add_arguments")(p)
    return parser


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[command]


def _entry(spec: str, name: str) -> Callable[..., Any]:
    """The function ``name`` (add_arguments / run) of the command whose ``COMMANDS`` spec is ``spec``."""
    module, _, prefix = spec.partition(":")
    return getattr(importlib.import_module(module), f"{prefix}_{name}" if prefix else name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mlpot.runtime import tune_malloc

    tune_malloc()  # glibc malloc thresholds: no page-fault churn per MD step (mlpot/runtime.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is None and argv and not argv[0].startswith("-"):
        print(f"mlpot: error: unknown command '{argv[0]}'{did_you_mean(argv[0], COMMANDS)} "
              f"(expected one of: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args, extra = parser.parse_known_args(argv)
    command = getattr(args, "command", None)
    if extra:  # worded by the command's parser: "mlpot <cmd>: error: unrecognized arguments: ..."
        (_command_parser(parser, command) if command else parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not command:
        parser.print_help()
        return 2
    try:
        return int(_entry(args._module, "run")(args) or 0)
    except MlpotError as exc:
        print(f"mlpot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlpot {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` etc.: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
