"""Findings against the planted truth: per detector and per planted kind.

A finding is true when it cites at least one planted event. Rates are per 100,000 *real*
events (the converted accesses, planted ones not counted). A planted case is found when any
finding cites one of its events; `by` lists the detectors that did.
"""

from __future__ import annotations

import pandas as pd


def score(findings: list[dict], truth: pd.DataFrame, real_events: int) -> dict:
    planted = set(truth["event_id"])
    case_of = dict(zip(truth["event_id"], truth["case_key"]))
    per: dict[str, dict] = {}
    found_by: dict[str, set[str]] = {}
    for f in findings:
        d = per.setdefault(f["detector"], {"findings": 0, "true": 0, "false": 0})
        d["findings"] += 1
        hit = planted.intersection(f["event_ids"])
        d["true" if hit else "false"] += 1
        for e in hit:
            found_by.setdefault(case_of[e], set()).add(f["detector"])
    for d in per.values():
        d["precision"] = round(d["true"] / d["findings"], 3) if d["findings"] else None
        d["false_per_100k"] = round(d["false"] * 1e5 / max(real_events, 1), 1)
    kinds: dict[str, dict] = {}
    for case, grp in truth.groupby("case_key"):
        kind = grp["violation"].iloc[0]
        k = kinds.setdefault(kind, {"cases": 0, "found": 0, "by": set()})
        k["cases"] += 1
        if case in found_by:
            k["found"] += 1
            k["by"] |= found_by[case]
    for k in kinds.values():
        k["recall"] = round(k["found"] / k["cases"], 3)
        k["by"] = sorted(k["by"])
    total_false = sum(d["false"] for d in per.values())
    return {"detectors": dict(sorted(per.items())), "kinds": dict(sorted(kinds.items())),
            "real_events": real_events, "false_total": total_false,
            "false_per_100k": round(total_false * 1e5 / max(real_events, 1), 1)}


def table(result: dict, title: str) -> str:
    """The per-detector and per-kind tables as Markdown (printed and pasted in RESULTS.md)."""
    lines = [f"### {title}", "",
             f"{result['real_events']:,} real events; false findings of all detectors: "
             f"{result['false_total']} ({result['false_per_100k']} per 100k real events)", "",
             "| detector | findings | true | false | precision | false per 100k real |",
             "|---|---:|---:|---:|---:|---:|"]
    for det, d in result["detectors"].items():
        prec = "-" if d["precision"] is None else f"{d['precision']:.3f}"
        lines.append(f"| {det} | {d['findings']} | {d['true']} | {d['false']} | {prec} | "
                     f"{d['false_per_100k']} |")
    lines += ["", "| planted kind | cases | found | recall | found by |", "|---|---:|---:|---:|---|"]
    for kind, k in result["kinds"].items():
        lines.append(f"| {kind} | {k['cases']} | {k['found']} | {k['recall']:.2f} | "
                     f"{', '.join(k['by']) or '-'} |")
    return "\n".join(lines)
