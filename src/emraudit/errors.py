"""User-facing errors: a message naming the file, key or line and what was expected.

Raised for user mistakes (bad config, missing file, bad profile); the CLI prints the message
and exits 2 without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; `str(err)` is the whole message."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None):
        where = []
        if file:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if key:
            where.append(f"key '{key}'")
        self.file, self.key, self.line = file, key, line
        self.message = message
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class ConfigError(UserError):
    """A configuration or profile file is wrong."""


class SourceError(UserError):
    """A source cannot be read (missing file, missing required column, bad URL)."""


class LockedError(UserError):
    """Another writer holds the store's lock: this command could not run (exit code 4, a
    conflict: run it again once the other has finished)."""

    exit_code = 4
