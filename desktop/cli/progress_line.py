"""The one progress line the command line writes on stderr.

On a terminal the line is rewritten in place; elsewhere (a pipe, a log file) each update
is a line of its own, and the caller decides how often it writes one.
"""

from __future__ import annotations

from typing import TextIO

_REWRITE = "\r\x1b[K"  # back to the line's start, clear it


class ProgressLine:
    """A progress line on ``err``."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.shown = False

    def show(self, line: str) -> None:
        """Show ``line``: in place on a terminal, as a new line elsewhere."""
        self.err.write(_REWRITE + line if self.tty else line + "\n")
        self.err.flush()
        self.shown = True

    def clear(self) -> None:
        """Take the line away (a terminal only), so that other output starts clean."""
        if self.tty and self.shown:
            self.err.write(_REWRITE)
            self.err.flush()
        self.shown = False

    def keep(self) -> None:
        """Leave the last line standing and move below it (a terminal only)."""
        if self.tty and self.shown:
            self.err.write("\n")
            self.err.flush()
        self.shown = False
