"""Score stored findings against the planted truth of a generated hospital.

This is the yardstick of every detector issue. Matching is through event ids only:

- a **finding is true** when at least one of its `event_ids` is a planted event (any row of
  `truth.csv`), or when it rests on a planted reference row: a problem of rights held, not
  of accesses made (a self-granted grant, a grant never used) has no event; its truth rows
  name the row in `ref` ("grants:G…", "roles:…", event_id empty) and the finding lists it in
  `evidence.refs`. False otherwise;
- a **planted case** (one `case_key` of `truth.csv`, i.e. all events of one planted
  violation) **is detected** when at least one finding, of any detector, lists at least one
  of the case's events; it is **detected by the expected detector** when such a finding comes
  from one of the detectors `EXPECTED` names for the case's violation kind;
- recall per kind = detected cases / planted cases; precision per detector = true findings /
  findings; false findings per 100,000 legitimate events = false findings × 100,000 /
  (events in the access log − planted events), where the legitimate events are all logged
  events that are not in the truth.

`score(findings, truth, n_events)` is pure (frames in, dict out); the CLI in
`emraudit.commands.eval` loads the frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emraudit.detectors.registry import all_detectors


def expected_detectors() -> dict[str, tuple[str, ...]]:
    """Violation kind (truth.csv `violation`) -> detectors expected to catch it, the primary
    first: from the detectors' declarations (`catches`, then `also_catches`, each by id)."""
    out: dict[str, list[str]] = {}
    dets = all_detectors()
    for det_id, cls in dets.items():
        for kind in cls.planted_kinds():
            out.setdefault(kind, []).append(det_id)
    for det_id, cls in dets.items():
        for kind in cls.also_catches:
            out.setdefault(kind, []).append(det_id)
    return {kind: tuple(ids) for kind, ids in sorted(out.items())}


EXPECTED: dict[str, tuple[str, ...]] = expected_detectors()
# kinds whose primary detector is a rule (issue 4's recall bar applies to these)
RULE_KINDS = tuple(k for k, d in EXPECTED.items() if not d[0].startswith("anomaly."))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score(findings: pd.DataFrame, truth: pd.DataFrame, n_events: int) -> dict:
    """Recall per violation kind, precision and false findings per detector, and totals.

    `findings`: columns `finding_id`, `detector`, `event_ids` (a list of event ids per row),
    optionally `evidence` (a dict whose `refs` lists the reference rows it rests on);
    `truth`: columns `event_id`, `violation`, `case_key`, optionally `ref`; `n_events`:
    events in the access log.
    """
    cols = ["event_id", "violation", "case_key"] + (["ref"] if "ref" in truth.columns else [])
    truth = truth[cols].fillna("").astype(str).drop_duplicates()
    if "ref" not in truth.columns:
        truth = truth.assign(ref="")
    planted = pd.Index(truth.loc[truth.event_id != "", "event_id"].unique())
    refs = truth[truth.ref != ""]
    legit_events = max(int(n_events) - len(planted), 0)
    f = findings.reset_index(drop=True)
    if "finding_id" not in f.columns:
        f = f.assign(finding_id=[str(i) for i in range(len(f))])
    f = f.assign(_row=np.arange(len(f)))
    ex = f[["_row", "detector", "event_ids"]].explode("event_ids").dropna(subset=["event_ids"])
    ex = ex.assign(event_id=ex.event_ids.astype(str))
    hit = ex[ex.event_id.isin(planted)]
    f_refs = pd.DataFrame({"_row": f["_row"], "detector": f["detector"],
                           "ref": [list((e or {}).get("refs") or []) if isinstance(e, dict)
                                   else [] for e in (f["evidence"] if "evidence" in f.columns
                                                     else [None] * len(f))]})
    f_refs = f_refs.explode("ref").dropna(subset=["ref"])
    ref_hit = f_refs[f_refs.ref.astype(str).isin(set(refs.ref))]
    true_rows = set(hit._row.tolist()) | set(ref_hit._row.tolist())
    f["true"] = f._row.isin(true_rows)

    # cases covered by any finding / by an expected detector
    cov = pd.concat([hit[["detector", "event_id"]].merge(truth[truth.event_id != ""],
                                                         on="event_id"),
                     ref_hit[["detector", "ref"]].assign(ref=ref_hit.ref.astype(str))
                     .merge(refs, on="ref")], ignore_index=True)
    cov["expected"] = [d in EXPECTED.get(v, ()) for d, v in zip(cov.detector, cov.violation)]
    detected = set(cov.case_key)
    detected_exp = set(cov.loc[cov.expected, "case_key"])
    cases = truth.drop_duplicates("case_key")[["violation", "case_key"]]
    kinds = []
    for kind, grp in cases.groupby("violation", sort=True):
        keys = grp.case_key
        n = len(keys)
        d = int(keys.isin(detected).sum())
        de = int(keys.isin(detected_exp).sum())
        by = cov[cov.violation == kind].groupby("detector").case_key.nunique()
        kinds.append({"violation": kind, "planted": n, "detected": d, "recall": _ratio(d, n),
                      "detected_expected": de, "recall_expected": _ratio(de, n),
                      "expected_detectors": list(EXPECTED.get(kind, ())),
                      "by_detector": {k: int(v) for k, v in by.sort_index().items()},
                      "missed": sorted(set(keys) - detected)})
    dets = []
    for det, grp in f.groupby("detector", sort=True):
        n = len(grp)
        t = int(grp["true"].sum())
        dets.append({"detector": det, "findings": n, "true": t, "false": n - t,
                     "precision": _ratio(t, n),
                     "false_per_100k": (round((n - t) * 100_000 / legit_events, 3)
                                        if legit_events else None)})
    n_f = len(f)
    n_t = int(f["true"].sum())
    n_cases = len(cases)
    rule_cases = cases[cases.violation.isin(RULE_KINDS)]
    overall = {
        "events": int(n_events), "planted_events": len(planted),
        "legitimate_events": legit_events, "planted_cases": n_cases,
        "detected_cases": int(cases.case_key.isin(detected).sum()),
        "recall": _ratio(int(cases.case_key.isin(detected).sum()), n_cases),
        "recall_expected": _ratio(int(cases.case_key.isin(detected_exp).sum()), n_cases),
        "rule_recall_expected": _ratio(int(rule_cases.case_key.isin(detected_exp).sum()),
                                       len(rule_cases)),
        "findings": n_f, "true_findings": n_t, "false_findings": n_f - n_t,
        "precision": _ratio(n_t, n_f),
        "false_per_100k": (round((n_f - n_t) * 100_000 / legit_events, 3)
                           if legit_events else None),
    }
    return {"overall": overall, "kinds": kinds, "detectors": dets}


def _fmt(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def format_text(result: dict, show_missed: bool = False) -> str:
    """The scores as plain-text tables."""
    o = result["overall"]
    lines = [f"events {o['events']}  planted events {o['planted_events']}  legitimate "
             f"{o['legitimate_events']}",
             "",
             f"{'violation':26} {'planted':>7} {'detected':>8} {'recall':>7} "
             f"{'by expected':>11} {'recall':>7}  expected detectors"]
    for k in result["kinds"]:
        lines.append(f"{k['violation']:26} {k['planted']:>7} {k['detected']:>8} "
                     f"{_fmt(k['recall']):>7} {k['detected_expected']:>11} "
                     f"{_fmt(k['recall_expected']):>7}  {', '.join(k['expected_detectors'])}")
        if show_missed and k["missed"]:
            lines.append("    missed: " + ", ".join(k["missed"]))
    lines += ["", f"{'detector':26} {'findings':>8} {'true':>6} {'false':>6} {'precision':>9} "
                  f"{'false/100k':>10}"]
    for d in result["detectors"]:
        lines.append(f"{d['detector']:26} {d['findings']:>8} {d['true']:>6} {d['false']:>6} "
                     f"{_fmt(d['precision']):>9} {_fmt(d['false_per_100k']):>10}")
    lines += ["", f"all cases: {o['detected_cases']}/{o['planted_cases']} detected "
                  f"(recall {_fmt(o['recall'])}, by the expected detector "
                  f"{_fmt(o['recall_expected'])}, rule kinds {_fmt(o['rule_recall_expected'])})",
              f"all findings: {o['findings']}, true {o['true_findings']}, precision "
              f"{_fmt(o['precision'])}, false findings per 100,000 legitimate events "
              f"{_fmt(o['false_per_100k'])}"]
    return "\n".join(lines)
