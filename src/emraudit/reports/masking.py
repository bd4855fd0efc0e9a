"""Patient masking for reports: names as 张*明, ids as P0****67, unless `--unmask`.

Reports are read by compliance staff who need to know *that* a patient's record was opened
and by whom, rarely *which* patient by name. Masking is on by default ([reports]
mask_patients); `--unmask` turns it off explicitly and the scan records it. Staff names are
never masked: who looked is the point of the report.

`Masker.scrub(text)` also replaces the known names and ids of the patients in a report when
they appear inside free text (a detector's sentence, an evidence string), so a patient's name
cannot leak through a finding summary.
"""

from __future__ import annotations

import re
from typing import Iterable

import pandas as pd


def _blank(value) -> bool:
    if value is None:
        return True
    try:
        if pd.isna(value):
            return True
    except (TypeError, ValueError):
        pass
    return str(value).strip() == ""


def mask_name(name) -> str:
    """张三明 → 张*明, 张三 → 张*, 欧阳小明 → 欧**明; Latin words keep their first letter."""
    if _blank(name):
        return ""
    s = str(name).strip()
    if " " in s:
        return " ".join(w[:1] + "*" * (len(w) - 1) for w in s.split())
    if len(s) == 1:
        return "*"
    if len(s) == 2:
        return s[0] + "*"
    return s[0] + "*" * (len(s) - 2) + s[-1]


def mask_id(value) -> str:
    """P00012367 → P0*****67: keep two characters at each end (one for short ids)."""
    if _blank(value):
        return ""
    s = str(value).strip()
    n = len(s)
    if n <= 2:
        return "*" * n
    if n <= 5:
        return s[0] + "*" * (n - 2) + s[-1]
    return s[:2] + "*" * (n - 4) + s[-2:]


class Masker:
    """Masks patient names and ids when `enabled`; knows which strings to scrub from text."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._known: dict[str, str] = {}
        self._rx: re.Pattern | None = None

    def name(self, value) -> str:
        if _blank(value):
            return ""
        return mask_name(value) if self.enabled else str(value)

    def pid(self, value) -> str:
        if _blank(value):
            return ""
        return mask_id(value) if self.enabled else str(value)

    def learn(self, ids: Iterable = (), names: Iterable = ()) -> None:
        """Remember patient ids and names to scrub from free text."""
        if not self.enabled:
            return
        for v in ids:
            if not _blank(v) and len(str(v).strip()) >= 3:
                self._known[str(v).strip()] = mask_id(v)
        for v in names:
            if not _blank(v) and len(str(v).strip()) >= 2:
                self._known[str(v).strip()] = mask_name(v)
        self._rx = None

    def learn_patients(self, patients: pd.DataFrame | None, ids: Iterable) -> None:
        ids = [str(i) for i in ids if not _blank(i)]
        names: list = []
        if patients is not None and len(patients) and "name" in patients.columns:
            sel = patients[patients["patient_id"].astype("string").isin(ids)]
            names = list(sel["name"].dropna())
        self.learn(ids, names)

    def scrub(self, text) -> str:
        """Free text with every known patient name or id replaced by its masked form."""
        if _blank(text):
            return ""
        s = str(text)
        if not self.enabled or not self._known:
            return s
        return self.pattern().sub(lambda m: self._known[m.group(0)], s)

    def pattern(self) -> re.Pattern:
        """The compiled alternation of every known string, longest first (built once: with
        thousands of patients compiling it takes a second)."""
        if self._rx is None:
            keys = sorted(self._known, key=len, reverse=True)
            # nothing known: a pattern that never matches (an empty one matches everywhere)
            self._rx = re.compile("|".join(re.escape(k) for k in keys) if keys else "(?!)")
        return self._rx

    def scrub_obj(self, obj):
        """`scrub` applied to every string inside a JSON-like structure."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {self.scrub(k): self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.scrub_obj(v) for v in obj]
        return obj
