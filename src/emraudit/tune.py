"""Tuning without touching production: replay stored events with other detector settings.

`sweep` answers "if I set this parameter to X, what would I see?": for each value, the
findings and cases the detector would raise on the last N stored days (allowlisted ones
counted apart), the cases it would stop or start raising compared with the value in force,
and — where reviewers' dispositions or a truth file exist — precision and recall.
`diff_profiles` compares a whole edited profile with the settings in force. Both call the
scan's detection (`detection.build_context` and `run_detectors`), read the allowlist, and
write nothing.

Scoring (documented in `emraudit tune --help` too):

* dispositions (case level): a raised case whose stored case was resolved `confirmed` is a
  true positive, `false_positive` a false one; `justified` and `training` are not counted.
  precision = TP / (TP + FP). recall = TP / the confirmed cases that are relevant to this
  detector: those among the stored cases of the window holding a finding of this detector,
  plus those any tried value raises (pooled relative recall: it can only be compared between
  the values of one sweep).
* truth file (`event_id, violation, case_key`, as `emraudit eval`): a finding is true when
  one of its events is planted; precision = true findings / findings. A planted violation
  (case_key) is found when one of its events is in a finding; recall = found / planted
  violations in the window whose kind (`violation`) this detector finds at any tried value.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from xml.sax.saxutils import escape

import pandas as pd

from emraudit.cases import assign_cases
from emraudit.detectors.base import section_values
from emraudit.detectors.profile import context_args, tunable_params, with_value
from emraudit.errors import UserError

# -- values -----------------------------------------------------------------------------------


def parse_value(param, text: str) -> Any:
    """A command-line word as the parameter's declared type, checked against its range."""
    t = param.type
    try:
        if t is bool:
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"expected true or false, got {text!r}")
            v: Any = low in ("true", "1", "yes")
        elif t is int:
            f = float(text)
            if not f.is_integer():
                raise ValueError(f"expected a whole number, got {text!r}")
            v = int(f)
        elif t is float:
            v = float(text)
        elif t is list:
            v = json.loads(text) if text.strip().startswith("[") else \
                [x.strip() for x in text.split(",") if x.strip()]
        elif t is dict:
            v = json.loads(text)
        else:
            v = text
        return param.check(v)
    except (ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"parameter '{param.name}': {exc}") from None


def range_values(param, spec: str) -> list[Any]:
    """`START:STOP:STEP`, both ends included (`5:20:5` → 5, 10, 15, 20)."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise UserError(f"--range: expected START:STOP:STEP such as 5:20:5, got {spec!r}")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise UserError(f"--range: expected numbers in START:STOP:STEP, got {spec!r}") from None
    if param.type not in (int, float):
        raise UserError(f"--range needs a numeric parameter; '{param.name}' is "
                        f"{param.type.__name__}")
    if step <= 0 or stop < start:
        raise UserError(f"--range {spec}: STEP must be positive and STOP >= START")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n > 200:
        raise UserError(f"--range {spec}: {n} values is too many (at most 200)")
    vals = [start + i * step for i in range(n)]
    digits = max(0, -int(math.floor(math.log10(step)))) + 3 if step < 1 else 6
    out = [round(v, digits) for v in vals]
    return [parse_value(param, repr(v) if param.type is float else str(int(round(v))))
            for v in out]


# -- scoring ----------------------------------------------------------------------------------
def read_truth(path: str | Path) -> pd.DataFrame:
    """The planted violations (`event_id, violation, case_key`) as written by `demo generate`."""
    p = Path(path)
    if not p.exists():
        raise UserError("truth file not found", file=str(p))
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"not a readable CSV: {exc}", file=str(p)) from None
    missing = [c for c in ("event_id", "violation") if c not in df.columns]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing)} (expected event_id, "
                        "violation, case_key)", file=str(p))
    if "case_key" not in df.columns or (df["case_key"] == "").all():
        df["case_key"] = df["violation"] + "|" + df["event_id"]
    df["case_key"] = df["case_key"].where(df["case_key"] != "", df["violation"] + "|" +
                                          df["event_id"])
    return df[["event_id", "violation", "case_key"]]


def _events_of(findings: pd.DataFrame) -> pd.DataFrame:
    """One row per (finding, event)."""
    if findings.empty:
        return pd.DataFrame({"finding_id": pd.Series(dtype=str),
                             "event_id": pd.Series(dtype=str)})
    ex = findings[["finding_id", "event_ids"]].explode("event_ids").dropna()
    return pd.DataFrame({"finding_id": ex["finding_id"].astype(str),
                         "event_id": ex["event_ids"].astype(str)})


def _active(findings: pd.DataFrame) -> pd.DataFrame:
    if "suppressed_by" in findings and len(findings):
        return findings[findings["suppressed_by"].isna()]
    return findings


@dataclass
class Labels:
    """What is known to be true or false, to score a replay against."""

    confirmed: set[str]            # case ids resolved confirmed
    false_positive: set[str]       # case ids resolved false_positive
    relevant_confirmed: set[str]   # confirmed cases relevant to the tuned detector

    @property
    def any(self) -> bool:
        return bool(self.confirmed or self.false_positive)


def score_cases(case_ids: set[str], labels: Labels) -> dict:
    tp = len(case_ids & labels.confirmed)
    fp = len(case_ids & labels.false_positive)
    rel = len(labels.relevant_confirmed)
    return {"tp": tp, "fp": fp, "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / rel if rel else None}


def score_truth(findings: pd.DataFrame, truth: pd.DataFrame, relevant: set[str]) -> dict:
    """Finding-level precision, violation-level recall over the `relevant` case_keys."""
    f = _active(findings)
    ev = _events_of(f)
    planted = set(truth["event_id"])
    true_f = set(ev.loc[ev["event_id"].isin(planted), "finding_id"])
    found = set(truth.loc[truth["event_id"].isin(set(ev["event_id"])), "case_key"]) & relevant
    n = len(f)
    return {"true_findings": len(true_f), "precision": len(true_f) / n if n else None,
            "found": len(found), "planted": len(relevant),
            "recall": len(found) / len(relevant) if relevant else None}


# -- the sweep --------------------------------------------------------------------------------
@dataclass
class Replay:
    """Runs one detector (or a settings dict) on a fixed context; the pipeline's functions."""

    run: Callable[[dict], pd.DataFrame]     # settings -> findings (with suppressed_by)
    window_event_ids: set[str]
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    tz: str


def replay_window(lake_days: list[str], days: int, tz: str) -> tuple[pd.Timestamp,
                                                                      pd.Timestamp]:
    if not lake_days:
        raise UserError("no stored events to replay: run `emraudit scan` (or `ingest`) first")
    last = pd.Timestamp(lake_days[-1]).tz_localize(tz) + pd.Timedelta(days=1)
    return last - pd.Timedelta(days=days), last


def make_replay(config, settings_for_context: list[dict], days: int) -> Replay:
    """Load the last `days` stored days once (with the longest look-back any of the settings
    needs) and return a function that runs a settings dict on them. Read-only."""
    from emraudit import detection
    from emraudit.allow import active_entries, apply_allowlist
    from emraudit.lake import Lake
    from emraudit.store import Store, now_utc

    import sqlalchemy as sa

    store = Store(config.store_url, create=False)
    lake = Lake(config.lake_dir, config.tz)
    try:
        committed = store.committed_runs()
    except sa.exc.DBAPIError:
        raise UserError("no stored events to replay: the store is empty (run `emraudit "
                        "scan` first)", key="store.url") from None
    ws, we = replay_window(lake.days(committed), days, config.tz)

    def lookback(settings: dict) -> int:
        return max([s.instantiate().effective_lookback_days() for s in settings.values()
                    if s.enabled] or [0])

    widest = max(settings_for_context, key=lookback)
    ctx = detection.build_context(config, store, lake, ws, we, widest)
    try:
        entries = active_entries(store)
    except Exception:  # noqa: BLE001 - a store without the allowlist table: nothing allowed
        entries = None
    now = now_utc()
    base_params = dict(ctx.detector_params)
    window_ids = set(ctx.events.loc[ctx.events["in_window"], "event_id"].astype(str)) \
        if len(ctx.events) else set()

    def run(settings: dict) -> pd.DataFrame:
        ctx.memo.clear()
        ctx.outputs.clear()
        ctx.notes.clear()
        ctx.detector_params = dict(base_params)
        args = context_args(settings)
        ctx.detector_params.update(args["detector_params"])
        ctx.sections = args["sections"]     # [explain] and [schedule]: a sweep may set one
        found, status = detection.run_detectors(ctx, settings)
        failed = [s for s in status.values() if getattr(s, "status", "") == "failed"]
        if failed:
            raise UserError(f"detector {failed[0].id} failed on the replay: "
                            f"{failed[0].message}")
        if entries is not None and len(found):
            found = apply_allowlist(store, found, now, ctx.users,
                                    care_relations=ctx.care_relations, entries=entries)
        elif "suppressed_by" not in found:
            found = found.assign(suppressed_by=None)
        return found

    return Replay(run, window_ids, ws, we, config.tz)


def stored_labels(config, detector_id: str, ws: pd.Timestamp, we: pd.Timestamp) -> Labels:
    """Case labels from reviewers' dispositions in the store."""
    import sqlalchemy as sa

    from emraudit.store import Store, cases, findings

    store = Store(config.store_url, create=False)
    df = store.read_table(cases, cases.c.disposition.in_(["confirmed", "false_positive"]))
    conf = set(df.loc[df["disposition"] == "confirmed", "case_id"]) if len(df) else set()
    fp = set(df.loc[df["disposition"] == "false_positive", "case_id"]) if len(df) else set()
    # a reopened case keeps its last disposition in the history
    from emraudit.cases import confirmed_cases
    with store.engine.connect() as c:
        users = [r[0] for r in c.execute(sa.select(cases.c.user_id).distinct())]
        for ids in confirmed_cases(c, users).values():
            conf |= ids
        mine = c.execute(sa.select(findings.c.case_id).distinct().where(
            findings.c.detector == detector_id, findings.c.start >= ws.isoformat(),
            findings.c.start < we.isoformat(), findings.c.case_id.is_not(None))).fetchall()
    fp -= conf
    relevant = conf & {r[0] for r in mine}
    return Labels(conf, fp, relevant)


def sweep(detector_id: str, param: str, values: list[Any], settings: dict,
          replay_factory: Callable[[list[dict]], Replay], *,
          labels: Labels | Callable[[Replay], Labels] | None = None,
          truth: pd.DataFrame | None = None) -> dict:
    """Run the detector once per value (plus the value in force) and score each run.

    `settings`: the settings in force (resolve_detectors). `labels`: case labels, or a
    function of the replay (its window) returning them. Returns {"rows": [...], ...}.
    """
    if detector_id not in settings:
        raise UserError(f"unknown detector '{detector_id}' (known: {', '.join(settings)})")
    base = settings[detector_id]
    declared = tunable_params(base.cls)
    if param not in declared:
        raise UserError(f"detector {detector_id} has no parameter '{param}' (known: "
                        f"{', '.join(declared) or 'none'})")
    if param in base.params or param not in base.cls.moved:
        current = base.params.get(param, declared[param].default)
    else:                                   # a moved key: its section's value in force
        section, pname = base.cls.moved[param].split(".", 1)
        current = section_values(section, base.sections)[pname]
    tried = list(dict.fromkeys([*values]))
    runs_for = tried if current in tried else [*tried, current]

    def settings_for(value) -> dict:
        st = with_value(base, param, value)
        st.enabled = True
        return {detector_id: st}

    variants = [settings_for(v) for v in runs_for]
    rp = replay_factory(variants)
    if callable(labels):
        labels = labels(rp)
    results = {}
    for v, s in zip(runs_for, variants):
        results[_key(v)] = rp.run(s)

    # pools for recall
    if labels is not None:
        raised_any = set()
        for f in results.values():
            raised_any |= _case_ids(_active(f), rp.tz)
        labels = Labels(labels.confirmed, labels.false_positive,
                        labels.relevant_confirmed | (labels.confirmed & raised_any))
    relevant_truth: set[str] = set()
    kinds: set[str] = set()
    if truth is not None:
        t = truth[truth["event_id"].isin(rp.window_event_ids)]
        for f in results.values():
            ev = set(_events_of(_active(f))["event_id"])
            kinds |= set(t.loc[t["event_id"].isin(ev), "violation"])
        relevant_truth = set(t.loc[t["violation"].isin(kinds), "case_key"])
        truth = t

    cur_cases = _case_ids(_active(results[_key(current)]), rp.tz)
    rows = []
    for v in runs_for:
        f = results[_key(v)]
        act = _active(f)
        cids = _case_ids(act, rp.tz)
        row = {"value": v, "current": v == current, "tried": v in tried,
               "findings": int(len(act)), "suppressed": int(len(f) - len(act)),
               "cases": len(cids), "cases_gone": len(cur_cases - cids),
               "cases_new": len(cids - cur_cases)}
        if labels is not None and labels.any:
            s = score_cases(cids, labels)
            row.update({"tp": s["tp"], "fp": s["fp"], "precision": s["precision"],
                        "recall": s["recall"]})
        if truth is not None:
            s = score_truth(f, truth, relevant_truth)
            row.update({"truth_precision": s["precision"], "truth_recall": s["recall"],
                        "true_findings": s["true_findings"], "found": s["found"],
                        "planted": s["planted"]})
        rows.append(row)
    rows.sort(key=lambda r: _sort_key(r["value"]))
    return {"detector": detector_id, "param": param, "current": current,
            "enabled_in_force": bool(base.enabled),
            "window_start": rp.window_start.isoformat(), "window_end": rp.window_end.isoformat(),
            "rows": rows, "kinds": sorted(kinds),
            "confirmed_relevant": len(labels.relevant_confirmed) if labels else 0,
            "labelled": bool(labels is not None and labels.any),
            "truth": truth is not None}


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _sort_key(v: Any):
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) \
        else (1, 0.0, _key(v))


def _case_ids(findings: pd.DataFrame, tz: str | None) -> set[str]:
    if findings.empty:
        return set()
    return set(assign_cases(findings, tz)["case_id"])


# -- presentation -----------------------------------------------------------------------------
def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_sweep(res: dict) -> str:
    lines = [f"{res['detector']} {res['param']}: replay of {res['window_start'][:10]} .. "
             f"{res['window_end'][:10]} (exclusive); value in force: "
             f"{_fmt(res['current'])}"
             + ("" if res.get("enabled_in_force", True) else
                " (the detector is disabled in force; replayed as if enabled)"), ""]
    heads = ["value", "findings", "suppressed", "cases", "gone", "new"]
    if res["labelled"]:
        heads += ["precision", "recall"]
    if res["truth"]:
        heads += ["truth prec.", "truth recall"]
    table = []
    for r in res["rows"]:
        cells = [_fmt(r["value"]) + (" *" if r["current"] else ""), str(r["findings"]),
                 str(r["suppressed"]), str(r["cases"]), str(r["cases_gone"]),
                 str(r["cases_new"])]
        if res["labelled"]:
            cells += [_pct(r.get("precision")), _pct(r.get("recall"))]
        if res["truth"]:
            cells += [_pct(r.get("truth_precision")), _pct(r.get("truth_recall"))]
        table.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(heads)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(heads, widths)))
    for c in table:
        lines.append("  ".join(x.rjust(w) for x, w in zip(c, widths)))
    lines += ["", "* the value in force. gone/new: cases no longer / newly raised compared "
                  "with it."]
    if res["labelled"]:
        lines.append(f"precision/recall from reviewers' dispositions (confirmed vs "
                     f"false_positive; recall over {res['confirmed_relevant']} confirmed "
                     "cases relevant to this detector).")
    if res["truth"]:
        kinds = ", ".join(res["kinds"]) or "none found"
        lines.append(f"truth: finding precision; recall over planted violations of the "
                     f"kinds this detector finds ({kinds}).")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def write_csv(res: dict, path: Path) -> None:
    cols = list(dict.fromkeys(k for r in res["rows"] for k in r))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows(res["rows"])


def chart_svg(res: dict) -> str:
    """A self-contained SVG: findings and cases (left axis) and precision/recall (right
    axis, 0-100%) against the parameter's values; the value in force is marked."""
    rows = res["rows"]
    W, H, L, R, T, B = 720, 450, 70, 70, 50, 90
    pw, ph = W - L - R, H - T - B
    numeric = all(isinstance(r["value"], (int, float)) and not isinstance(r["value"], bool)
                  for r in rows)
    if numeric and len(rows) > 1:
        lo, hi = float(rows[0]["value"]), float(rows[-1]["value"])
        span = (hi - lo) or 1.0
        xs = [L + pw * (float(r["value"]) - lo) / span for r in rows]
    else:
        xs = [L + pw * (i + 0.5) / max(len(rows), 1) for i in range(len(rows))]
    ymax = max([r["findings"] for r in rows] + [r["cases"] for r in rows] + [1])
    ymax = max(4, math.ceil(_nice(ymax) / 4) * 4)   # whole-number ticks

    def yc(v):
        return T + ph * (1 - v / ymax)

    def yp(v):
        return T + ph * (1 - v)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<title>{escape(res["detector"])} {escape(res["param"])}</title>',
           f'<rect width="{W}" height="{H}" fill="#fff"/>',
           f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">'
           f'{escape(res["detector"])}: {escape(res["param"])}</text>']
    for i in range(5):   # grid and left axis
        v = ymax * i / 4
        y = yc(v)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{L + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        if res["labelled"] or res["truth"]:
            out.append(f'<text x="{L + pw + 6}" y="{y + 4:.1f}">{25 * i}%</text>')
    out.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" stroke="#333"/>')
    out.append(f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="#333"/>')
    for x, r in zip(xs, rows):
        out.append(f'<text x="{x:.1f}" y="{T + ph + 18}" text-anchor="middle">'
                   f'{escape(_fmt(r["value"]))}</text>')
        if r["current"]:
            out.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{T + ph}" '
                       'stroke="#999" stroke-dasharray="4 3"/>')
            out.append(f'<text x="{x:.1f}" y="{T - 6}" text-anchor="middle" fill="#555">'
                       'in force</text>')
    out.append(f'<text x="{L + pw / 2}" y="{T + ph + 40}" text-anchor="middle">'
               f'{escape(res["param"])}</text>')
    out.append(f'<text x="18" y="{T + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {T + ph / 2})">findings / cases</text>')
    series = [("findings", "#1f77b4", yc, "findings"), ("cases", "#ff7f0e", yc, "cases")]
    if res["labelled"]:
        series += [("precision", "#2ca02c", yp, "precision"), ("recall", "#d62728", yp,
                                                                "recall")]
    if res["truth"]:
        series += [("truth_precision", "#2ca02c", yp, "precision (truth)"),
                   ("truth_recall", "#d62728", yp, "recall (truth)")]
    for n, (key, color, yf, label) in enumerate(series):
        pts = [(x, yf(r[key])) for x, r in zip(xs, rows) if r.get(key) is not None]
        dash = ' stroke-dasharray="6 3"' if key.startswith("truth_") else ""
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} '
                       f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>')
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        lx = L + 150 * (n % 4)
        ly = H - 22 + 16 * (n // 4) - 16 * ((len(series) - 1) // 4)
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="12" height="4" fill="{color}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly - 3}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _nice(v: float) -> float:
    if v <= 0:
        return 1
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


# -- profile diff -----------------------------------------------------------------------------
def param_differences(cur: dict, new: dict) -> list[dict]:
    out = []
    for det_id in cur:
        a, b = cur[det_id], new[det_id]
        if a.enabled != b.enabled:
            out.append({"detector": det_id, "param": "enabled", "current": a.enabled,
                        "new": b.enabled})
        sa_, sb = a.severity or a.cls.severity, b.severity or b.cls.severity
        if sa_ != sb:
            out.append({"detector": det_id, "param": "severity", "current": sa_, "new": sb})
        for p in a.cls.params:
            va, vb = a.params.get(p.name), b.params.get(p.name)
            if va != vb:
                out.append({"detector": det_id, "param": p.name, "current": va, "new": vb})
    for name in sorted(set(getattr(cur, "sections", {})) | set(getattr(new, "sections", {}))):
        a, b = section_values(name, cur.sections), section_values(name, new.sections)
        out += [{"detector": name, "param": k, "current": a[k], "new": b[k]}
                for k in a if a[k] != b[k]]
    return out


def diff_profiles(config, profile: str, *, days: int = 30,
                  replay_factory: Callable[[list[dict]], Replay] | None = None) -> dict:
    """Replay the settings in force and those with `profile` instead of the configured one
    (the config's own overrides still applied on top) and compare."""
    from emraudit.detectors.profile import resolve_detectors

    section = dict(config.detectors)
    current = resolve_detectors(section, config.path)
    overrides = {k: v for k, v in section.items() if k != "profile"}
    edited = resolve_detectors({**overrides, "profile": profile}, config.path)
    without = resolve_detectors({"profile": profile}, config.path)
    masked = param_differences(edited, without)
    params = param_differences(current, edited)
    factory = replay_factory or (lambda v: make_replay(config, v, days))
    rp = factory([current, edited])
    fa, fb = rp.run(current), rp.run(edited)
    aa, ab = _active(fa), _active(fb)
    per = []
    for det_id in current:
        ia = set(aa.loc[aa["detector"] == det_id, "finding_id"]) if len(aa) else set()
        ib = set(ab.loc[ab["detector"] == det_id, "finding_id"]) if len(ab) else set()
        ca = _case_ids(aa[aa["detector"] == det_id], rp.tz) if len(aa) else set()
        cb = _case_ids(ab[ab["detector"] == det_id], rp.tz) if len(ab) else set()
        if ia or ib or not (current[det_id].enabled == edited[det_id].enabled):
            per.append({"detector": det_id, "current_findings": len(ia), "new_findings": len(ib),
                        "findings_added": len(ib - ia), "findings_removed": len(ia - ib),
                        "current_cases": len(ca), "new_cases": len(cb),
                        "cases_added": len(cb - ca), "cases_removed": len(ca - cb),
                        "enabled": [current[det_id].enabled, edited[det_id].enabled]})
    ca_all, cb_all = _case_ids(aa, rp.tz), _case_ids(ab, rp.tz)
    return {"profile": profile, "window_start": rp.window_start.isoformat(),
            "window_end": rp.window_end.isoformat(), "params": params,
            "masked_by_config": masked, "detectors": per,
            "cases": {"current": len(ca_all), "new": len(cb_all),
                      "added": len(cb_all - ca_all), "removed": len(ca_all - cb_all)},
            "findings": {"current": len(aa), "new": len(ab),
                         "added": len(set(ab["finding_id"]) - set(aa["finding_id"]))
                         if len(ab) else 0,
                         "removed": len(set(aa["finding_id"]) - set(ab["finding_id"]))
                         if len(aa) else 0}}


def format_diff(res: dict) -> str:
    lines = [f"profile {res['profile']} against the settings in force, replayed on "
             f"{res['window_start'][:10]} .. {res['window_end'][:10]} (exclusive)", ""]
    if res["params"]:
        lines.append("settings that differ:")
        for d in res["params"]:
            lines.append(f"  {d['detector']}.{d['param']}: {_fmt(d['current'])} -> "
                         f"{_fmt(d['new'])}")
    else:
        lines.append("no setting differs from the one in force")
    if res["masked_by_config"]:
        lines.append("")
        lines.append("changed in the profile but overridden by emraudit.toml (no effect):")
        for d in res["masked_by_config"]:
            lines.append(f"  {d['detector']}.{d['param']}: profile {_fmt(d['new'])}, "
                         f"config {_fmt(d['current'])}")
    lines.append("")
    heads = ["detector", "findings", "+", "-", "cases", "+", "-"]
    changed = [d for d in res["detectors"] if d["findings_added"] or d["findings_removed"]
               or d["cases_added"] or d["cases_removed"] or d["enabled"][0] != d["enabled"][1]]
    rows = [[d["detector"], f"{d['current_findings']}->{d['new_findings']}",
             str(d["findings_added"]), str(d["findings_removed"]),
             f"{d['current_cases']}->{d['new_cases']}", str(d["cases_added"]),
             str(d["cases_removed"])] for d in changed]
    c, f = res["cases"], res["findings"]
    rows.append(["all", f"{f['current']}->{f['new']}", str(f["added"]), str(f["removed"]),
                 f"{c['current']}->{c['new']}", str(c["added"]), str(c["removed"])])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                           for i, (h, w) in enumerate(zip(heads, widths))))
    for r in rows:
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                               for i, (x, w) in enumerate(zip(r, widths))))
    same = len(res["detectors"]) - len(changed)
    lines += ["", (f"{same} other detector{'s' if same != 1 else ''} with findings: "
                   "unchanged. " if same else "")
              + "+ added, - removed by the edited profile. Nothing was written to the store."]
    return "\n".join(lines)
