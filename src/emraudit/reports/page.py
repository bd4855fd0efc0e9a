"""What every page and sheet of the reports shares: display strings of stored cells, JSON
cells read back, times in the site's timezone (`Fmt`), the static assets and the
content-security policy of a self-contained page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from importlib import resources

import pandas as pd


def _static(name: str) -> str:
    return (resources.files("emraudit.reports") / "static" / name).read_text("utf-8")


def _csp(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    h = base64.b64encode(digest).decode("ascii")
    return ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{h}'; base-uri 'none'; form-action 'none'")


def _s(v) -> str:
    """A display string: missing values become ''."""
    if v is None:
        return ""
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    return str(v)


def _json_list(v) -> list:
    if isinstance(v, list):
        return v
    if isinstance(v, str) and v:
        try:
            out = json.loads(v)
            return out if isinstance(out, list) else [out]
        except json.JSONDecodeError:
            return [v]
    return []


def _json_dict(v) -> dict:
    if isinstance(v, dict):
        return v
    if isinstance(v, str) and v:
        try:
            out = json.loads(v)
            return out if isinstance(out, dict) else {}
        except json.JSONDecodeError:
            return {}
    return {}


class Fmt:
    """Timestamps in the site's timezone, for reading."""

    def __init__(self, tz: str):
        self.tz = tz
        # a report formats the same few thousand times ~10 times each (case, finding and
        # event rows); parsing and converting one costs ~0.1 ms
        self._seen: dict = {}

    def ts(self, v, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        try:
            return self._seen[(v, fmt)]
        except KeyError:
            out = self._seen[(v, fmt)] = self._format(v, fmt)
            return out
        except TypeError:       # unhashable
            return self._format(v, fmt)

    def _format(self, v, fmt: str) -> str:
        if v is None or _s(v) == "":
            return ""
        try:
            t = pd.Timestamp(v)
        except (ValueError, TypeError):
            return str(v)
        if t is pd.NaT:
            return ""
        t = t.tz_localize("UTC") if t.tzinfo is None else t
        return t.tz_convert(self.tz).strftime(fmt)

    def day(self, v) -> str:
        return self.ts(v, "%Y-%m-%d")

    def now(self) -> str:
        return self.ts(datetime.now(timezone.utc), "%Y-%m-%d %H:%M")

    def minute(self, v) -> str:
        return self.ts(v, "%Y-%m-%d %H:%M")
