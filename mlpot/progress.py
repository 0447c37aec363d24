"""The one progress bar of mlpot's long commands (``train``, ``test``, ``model-devi``, ``convert``,
``neighbor-stat``): tqdm with count, rate and ETA on an interactive terminal, nothing otherwise.

    with progress_bar(total=n_frames, desc="test", unit="frame", quiet=args.quiet) as bar:
        ... bar.update(k) ...; bar.write(line)   # a result line (stdout) that does not break the bar

Quiet (no bar) when ``quiet`` (``-q/--quiet/--no-progress``), when ``stream`` (default stderr) is not a
terminal (logs, pipes, CI), or when the total is below ``min_total``. A terminal that reports fewer than
20 columns (some report 0: serial consoles, some CI runners and IDE panes) gets a fixed 80-column bar
instead of tqdm's empty one.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any, Optional, TextIO

#: below this width (a terminal reporting 0 columns) the bar gets a fixed width
MIN_COLUMNS = 20
FALLBACK_COLUMNS = 80


class NullBar:
    """The do-nothing bar (same methods as the tqdm ones mlpot uses)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_description_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def write(self, s: str) -> None:
        print(s)  # as tqdm.write: to stdout

    def close(self) -> None:
        pass

    def __enter__(self) -> "NullBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def is_interactive(stream: Optional[TextIO] = None) -> bool:
    """Whether ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def terminal_columns(stream: Optional[TextIO] = None) -> int:
    """The terminal width in columns, 0 when it cannot be told or is reported as 0."""
    try:
        import os

        fd = (sys.stderr if stream is None else stream).fileno()
        return int(os.get_terminal_size(fd).columns)
    except (AttributeError, ValueError, OSError):
        return int(shutil.get_terminal_size(fallback=(0, 0)).columns)


def progress_bar(total: Optional[int], desc: str = "", unit: str = "frame", quiet: bool = False,
                 stream: Optional[TextIO] = None, min_total: int = 2, initial: int = 0, leave: bool = False) -> Any:
    """A tqdm bar (count, rate, ETA) on ``stream`` (default stderr) when it is a terminal and not
    ``quiet``, else a :class:`NullBar`; usable as a context manager."""
    stream = sys.stderr if stream is None else stream
    if quiet or not is_interactive(stream) or (total is not None and total < min_total):
        return NullBar()
    from tqdm import tqdm

    kw: dict[str, Any] = {"dynamic_ncols": True}
    if terminal_columns(stream) < MIN_COLUMNS:
        kw = {"ncols": FALLBACK_COLUMNS, "nrows": 24, "dynamic_ncols": False}
    return tqdm(total=total, initial=initial, desc=desc or None, unit=unit, file=stream, leave=leave, **kw)


__all__ = ["progress_bar", "NullBar", "is_interactive", "terminal_columns"]
