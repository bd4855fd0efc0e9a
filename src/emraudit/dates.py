"""The one parser for dates and times given on the command line: ISO 8601, nothing else.

`09/10/2026` is September 10th to some and October 9th to others; a tool that guesses
differently from its user scans or reports on the wrong month without a word. So every verb
takes a day as `2026-09-30`, or an instant as `2026-09-30T08:00` (a space instead of `T`,
seconds and an offset such as `+08:00` or `Z` are allowed); anything else is a user mistake
that names the option (exit 2). A naive time is read in the site's timezone.

Ranges are inclusive of whole days: `--since 2026-09-30 --until 2026-09-30` is that day. An
instant as the end of a range ends there (a midnight ends with the day before it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import click
import pandas as pd

from emraudit.errors import UserError

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?")
EXAMPLE = "2026-09-30"


@dataclass(frozen=True)
class When:
    """A day, or an instant, as given on the command line."""

    text: str
    day: date
    time: datetime | None = None      # None: the whole day

    def start(self, tz: str) -> pd.Timestamp:
        """The first instant it covers, in the site's timezone."""
        if self.time is None:
            return pd.Timestamp(self.day).tz_localize(tz)
        t = pd.Timestamp(self.time)
        return t.tz_localize(tz) if t.tzinfo is None else t.tz_convert(tz)

    def end(self, tz: str) -> pd.Timestamp:
        """The instant it ends (exclusive): the next midnight for a day, itself for a time."""
        if self.time is None:
            return pd.Timestamp(self.day + timedelta(days=1)).tz_localize(tz)
        return self.start(tz)

    def last_day(self, tz: str) -> date:
        """The last site-local day it reaches as the end of a range."""
        if self.time is None:
            return self.day
        end = self.end(tz)
        return (end - pd.Timedelta(microseconds=1)).date() if end == end.normalize() \
            else end.date()

    def first_day(self, tz: str) -> date:
        return self.day if self.time is None else self.start(tz).date()


def parse(value, option: str = "date", *, times: bool = True) -> When:
    """`2026-09-30` or (when `times`) `2026-09-30T08:00[:00][offset]`; else a UserError
    naming `option`."""
    if isinstance(value, When):
        return value
    text = str(value if value is not None else "").strip()
    try:
        if _DAY.fullmatch(text):
            return When(text, date.fromisoformat(text))
        if times and _TIME.fullmatch(text):
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return When(text, t.date(), t)
    except ValueError as exc:       # 2026-02-30, 25:00
        raise UserError(f"{option}: {text!r} is not a real "
                        f"{'date' if len(text) <= 10 else 'date and time'} ({exc})") from None
    what = (f"a date such as {EXAMPLE} (ISO: year-month-day, optionally with a time, "
            f"{EXAMPLE}T08:00)" if times else f"a date such as {EXAMPLE} (ISO: year-month-day)")
    raise UserError(f"{option}: expected {what}, got {text!r}")


def parse_day(value, option: str = "date") -> date:
    """A day only (`2026-09-30`)."""
    return parse(value, option, times=False).day


def day_range(since, until, tz: str, *, since_option: str = "--since",
              until_option: str = "--until") -> tuple[str | None, str | None]:
    """(first day, last day), both inclusive, as `YYYY-MM-DD`; None for a side not given.
    An end before the start is a user mistake."""
    a = parse(since, since_option) if since else None
    b = parse(until, until_option) if until else None
    lo = a.first_day(tz) if a else None
    hi = b.last_day(tz) if b else None
    if lo is not None and hi is not None and hi < lo:
        raise UserError(f"{until_option} ({b.text}) is before {since_option} ({a.text})")
    return (lo.isoformat() if lo else None), (hi.isoformat() if hi else None)


def period(start, end, tz: str, *, options: tuple[str, str] = ("--from", "--to")
           ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A report's period: its first and last day (inclusive) as naive midnights."""
    lo, hi = day_range(start, end, tz, since_option=options[0], until_option=options[1])
    return pd.Timestamp(lo), pd.Timestamp(hi)


class IsoDate(click.ParamType):
    """A click option type through `parse`: the value becomes a `When`; a bad one is a
    one-line user mistake (exit 2), never click's usage screen."""

    name = "DATE"

    def __init__(self, times: bool = True):
        self.times = times

    def convert(self, value, param, ctx):
        option = param.opts[0] if param is not None and param.opts else "date"
        return parse(value, option, times=self.times)


ISO_DATE = IsoDate(times=False)
ISO_TIME = IsoDate(times=True)

__all__ = ["When", "parse", "parse_day", "day_range", "period", "IsoDate", "ISO_DATE", "ISO_TIME"]
