"""Shared command-line options: one spelling, one default and one help text per flag, for every command.

=====================  ==========================================================================
``--device``           torch device (default None = auto: CUDA when available, else the CPU)
``-s/--systems``       data: DeePMD system dirs (or dirs holding them), HDF5 stores, extxyz, OUTCAR...
``--type-map``         element names in type order (there is no short form: ``-t`` is not a type map)
``-m/--model``         one model file;  ``-m/--models``: several (an ensemble)
``-o/--output``        the file (or directory) a command writes
``-q/--quiet``         no progress bar (``--no-progress`` is a synonym)
=====================  ==========================================================================

Each helper adds its option to an :class:`argparse.ArgumentParser` and returns the action, so a
command can only choose whether an option is required and its default, never its name or meaning.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

DEVICE_HELP = ("torch device: cpu, cuda or cuda:N (default: the input file's device setting where a command "
               "reads one, else CUDA when available, else the CPU)")
SYSTEMS_HELP = "data: DeePMD system dirs (or dirs holding several), HDF5 stores, extxyz, OUTCAR, ASE db/traj ..."
TYPE_MAP_HELP = "element names in type order, e.g. O H"
QUIET_HELP = "no progress bar (train: and no log lines; md: the thermo lines then go to stdout)"


def add_device_option(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--device DEVICE`` (dest ``device``, default None: :func:`mlpot.device.resolve_device`'s auto)."""
    return parser.add_argument("--device", default=None, metavar="DEVICE", help=DEVICE_HELP)


def add_systems_option(parser: argparse.ArgumentParser, *aliases: str, required: bool = True,
                       help: str = SYSTEMS_HELP) -> argparse.Action:
    """``-s/--systems SYSTEM...`` (dest ``systems``); ``aliases``: extra long spellings a command keeps."""
    return parser.add_argument("-s", "--systems", *aliases, dest="systems", nargs="+", required=required,
                               metavar="SYSTEM", help=help)


def add_type_map_option(parser: argparse.ArgumentParser, help: str = TYPE_MAP_HELP) -> argparse.Action:
    """``--type-map ELEM...`` (dest ``type_map``, default None: the data's own)."""
    return parser.add_argument("--type-map", dest="type_map", nargs="+", default=None, metavar="ELEM", help=help)


def add_model_option(parser: argparse.ArgumentParser, help: str = "frozen model file (mlpot freeze)") -> argparse.Action:
    """``-m/--model MODEL`` (dest ``model``, required)."""
    return parser.add_argument("-m", "--model", required=True, metavar="MODEL", help=help)


def add_models_option(parser: argparse.ArgumentParser, help: str = "frozen model files (mlpot freeze)") -> argparse.Action:
    """``-m/--models MODEL...`` (dest ``models``, required)."""
    return parser.add_argument("-m", "--models", nargs="+", required=True, metavar="MODEL", help=help)


def add_output_option(parser: argparse.ArgumentParser, *aliases: str, default: Optional[str] = None,
                      required: Optional[bool] = None, help: str = "output file", dest: str = "output") -> argparse.Action:
    """``-o/--output PATH`` (``aliases``: extra long spellings a command keeps, e.g. ``--output-dir``).

    Required when ``default`` is None (unless ``required=False``); a default is appended to ``help``."""
    req = default is None if required is None else required
    kw: dict[str, Any] = {"required": True} if req else {"default": default}
    text = f"{help} (default {default})" if default is not None else help
    return parser.add_argument("-o", "--output", *aliases, dest=dest, metavar="PATH", help=text, **kw)


def add_quiet_option(parser: argparse.ArgumentParser) -> argparse.Action:
    """``-q/--quiet`` and its synonym ``--no-progress`` (dest ``quiet``)."""
    return parser.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true", help=QUIET_HELP)
