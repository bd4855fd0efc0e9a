"""How urgent a case is: the order of the review queue and who gets the night's budget.

A compliance office reviews a few dozen cases a night, so the queue must put first what is
most likely to be real misuse and most harmful if it is. Risk is a sum of points, each a
fact a reviewer can check on the case page (the points are stored with the case as
`risk_factors`), not a model score:

=================  ======================================================================
severity           10 per level of the case's severity (low 0 … critical 30), after the
                   raises for agreeing detectors and repeat offences
special patient    6 when a finding concerns a VIP, sensitive, sealed, deceased or staff
                   patient (the snoop.* detectors, or a patient flag in the evidence)
look-up            4 when the user looked the patient up by name just before opening
output             5 when records left the system (item 8: print, export, copy, download)
breadth            2 per doubling of the patients touched (up to 10)
volume             1 per doubling of the events (up to 10)
detectors          4 per further detector that fired on the same incident
history            5 per earlier confirmed case of the user (up to 15)
=================  ======================================================================

Ties are broken by case id, so the same store always gives the same queue.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from emraudit.model import SEVERITIES

SEVERITY_POINTS = 10.0
SPECIAL_POINTS = 6.0
LOOKUP_POINTS = 4.0
OUTPUT_POINTS = 5.0
BREADTH_POINTS, BREADTH_CAP = 2.0, 10.0
VOLUME_POINTS, VOLUME_CAP = 1.0, 10.0
DETECTOR_POINTS = 4.0
HISTORY_POINTS, HISTORY_CAP = 5.0, 15.0

# detectors whose every finding concerns a patient the hospital protects in particular
SPECIAL_DETECTORS = ("snoop.vip", "snoop.coworker", "snoop.family", "snoop.neighbor",
                     "snoop.self", "snoop.deceased", "snoop.watchlist")

_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def _flag(evidence: Any, key: str) -> bool:
    return isinstance(evidence, dict) and bool(evidence.get(key))


def finding_flags(findings: pd.DataFrame) -> pd.DataFrame:
    """Per finding: `special` (patient the hospital protects), `lookup` (name look-up before
    opening) and `output` (records left the system), as booleans."""
    det = findings["detector"].astype(str)
    ev = findings["evidence"] if "evidence" in findings else pd.Series(
        [{}] * len(findings), index=findings.index)
    special = det.isin(SPECIAL_DETECTORS).to_numpy() | np.fromiter(
        (_flag(e, "patient_flags") for e in ev), dtype=bool, count=len(ev))
    lookup = np.fromiter((_flag(e, "query_lookup") for e in ev), dtype=bool, count=len(ev))
    output = (findings["rectification_item"].astype(str) == "8").to_numpy()
    return pd.DataFrame({"special": special, "lookup": lookup, "output": output},
                        index=findings.index)


FLAGS = ("special", "lookup", "output")


def flag_lists(flags: pd.DataFrame) -> list[list[str]]:
    """The flags of each finding as a list of names (how the store keeps them)."""
    arr = flags[list(FLAGS)].to_numpy(dtype=bool)
    return [[FLAGS[j] for j in np.flatnonzero(row)] for row in arr]


def case_risk(severity: str, *, special: bool, lookup: bool, output: bool, n_patients: int,
              n_events: int, n_detectors: int, prior_confirmed: int) -> tuple[float, dict]:
    """(risk, {factor: points}) of one case; only factors that add points are listed."""
    parts = {
        "severity": SEVERITY_POINTS * _RANK.get(severity, 0),
        "special_patient": SPECIAL_POINTS * bool(special),
        "lookup": LOOKUP_POINTS * bool(lookup),
        "output": OUTPUT_POINTS * bool(output),
        "breadth": min(BREADTH_POINTS * float(np.log2(max(n_patients, 1))), BREADTH_CAP),
        "volume": min(VOLUME_POINTS * float(np.log2(1 + max(n_events, 0))), VOLUME_CAP),
        "detectors": DETECTOR_POINTS * max(n_detectors - 1, 0),
        "history": min(HISTORY_POINTS * max(prior_confirmed, 0), HISTORY_CAP),
    }
    parts = {k: round(v, 3) for k, v in parts.items() if v > 0}
    return round(sum(parts.values()), 3), parts


def queue_order(risk: Iterable[float], case_ids: Iterable[str]) -> list[int]:
    """Positions sorted by risk, highest first, ties by case id."""
    r = list(risk)
    ids = list(case_ids)
    return sorted(range(len(r)), key=lambda i: (-float(r[i] or 0.0), ids[i]))
