"""Progress of long work on stderr, for a person at a terminal; nothing at all under cron.

A 10-million-event scan reads sources, runs detectors and writes pages for minutes; at a
terminal it shows a bar (tqdm) for each: ingest by source with the rows read, detection by
detector, report pages. Under cron, or with `--quiet`, or whenever stderr is not a terminal,
nothing is drawn. Bars show counts and names of sources and detectors only, never patient
data.

The command line turns it on for the duration of a verb (`showing(quiet)`); deep code asks
`current()` and reports what it has done with `track(key, done, total)`. Only the process
that turned it on draws: a forked worker's calls do nothing (the parent tracks their
results).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, TextIO

import click

quiet_option = click.option(
    "--quiet", "-q", is_flag=True,
    help="No progress display (it is also off when stderr is not a terminal, e.g. cron).")


class Progress:
    """Bars on `stream` when `enabled`; one bar is active at a time, finished bars stay as
    a line each."""

    def __init__(self, enabled: bool = False, stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._pid = os.getpid()
        self._key: str | None = None
        self._bar = None

    @property
    def drawing(self) -> bool:
        return self.enabled and os.getpid() == self._pid

    def track(self, key: str, done: int, total: int | None = None, *, unit: str = "",
              what: str = "") -> None:
        """Work `key` has reached `done` (of `total`, when known); `what` names the item
        just finished (a source, a detector)."""
        if not self.drawing:
            return
        if key != self._key:
            self.finish()
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=key, unit=unit or "it", file=self.stream,
                             leave=True, dynamic_ncols=True, mininterval=0.2)
            self._key = key
        bar = self._bar
        if total is not None and bar.total != total:
            bar.total = total
        if what:
            bar.set_postfix_str(what, refresh=False)
        bar.update(max(0, done - bar.n))

    def finish(self) -> None:
        """Close the active bar (it stays on screen as a finished line)."""
        if self._bar is not None:
            self._bar.close()
        self._bar, self._key = None, None

    def note(self, message: str) -> None:
        """A line of its own, printed above any bar (only when drawing)."""
        if self.drawing:
            from tqdm import tqdm
            tqdm.write(message, file=self.stream)


_current = Progress(enabled=False)


def current() -> Progress:
    return _current


def wanted(quiet: bool, stream: TextIO | None = None) -> bool:
    """Progress is drawn unless asked to be quiet or stderr is not a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return not quiet and stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def showing(quiet: bool = False, stream: TextIO | None = None) -> Iterator[Progress]:
    """Progress on (unless `quiet` or not a terminal) for the block, off after it."""
    global _current
    before = _current
    _current = Progress(wanted(quiet, stream), stream)
    try:
        yield _current
    finally:
        _current.finish()
        _current = before


__all__ = ["Progress", "current", "showing", "wanted", "quiet_option"]
