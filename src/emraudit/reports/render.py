"""The per-scan report folder: dashboard, one page per case, findings.jsonl and the ledger.

`write_scan_reports(config, store, lake, scan_id, unmask=False)` is what the scan pipeline
calls once findings and cases are committed; `emraudit report scan` calls it again to
re-render a stored scan. It reads (never recomputes) the scan's findings, their cases, the
case history and the events behind them, builds plain view models here, and renders them
with the jinja2 templates of this package in the configured language.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from emraudit import progress
from emraudit.config import Config
from emraudit.connectors.provenance import ProfileTrail
from emraudit.detectors.registry import all_detectors
from emraudit.fastops import local_days
from emraudit.forking import Forked, can_fork, forked_map
from emraudit.lake import Lake
from emraudit.reports import charts, data, files, ledger
from emraudit.reports.evidence import group_repeats, render_evidence
from emraudit.reports.findings_jsonl import FindingsFile
from emraudit.reports.i18n import Lang, make_env
from emraudit.reports.labels import (ACTION, DISPOSITION, FEED_DIMENSION, FIELD, HISTORY_ACTION,
                                     KIND, PATIENT_FLAGS, RECTIFICATION, RISK_FACTOR, ROLE,
                                     SCAN_STATUS, SEVERITY, SEVERITY_RANK, STATUS,
                                     USER_STATUS, detector_info, item_info, label)
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _csp, _json_dict, _json_list, _s, _static
from emraudit.reports.text import (HISTORY_FIELD, case_sentence, finding_sentence,
                                   history_note, history_value)
from emraudit.store import Store, scans

log = logging.getLogger("emraudit.reports")

MAX_EVENTS_SHOWN = 300
MAX_PATIENTS_SHOWN = 50
TREND_DAYS = 60
# below this many cases the pages are written in one process (forking costs more)
PARALLEL_MIN_CASES = 200


class _Rows:
    """Rows of a reference table by id, turned into dicts only when asked for: a large
    hospital has hundreds of thousands of patients and a report names a few hundred."""

    def __init__(self, df: pd.DataFrame | None, key: str):
        self._pos: dict[str, int] = {}
        self._df = df
        self._cache: dict[str, dict] = {}
        if df is not None and len(df):
            ids = df[key].astype(str).to_numpy()
            # the last row of an id wins, as in the snapshot
            self._pos = dict(zip(ids, range(len(ids))))

    def get(self, key: str, default=None):
        if key in self._cache:
            return self._cache[key]
        i = self._pos.get(key)
        if i is None:
            return default
        row = self._df.iloc[i].to_dict()
        self._cache[key] = row
        return row

    def __bool__(self) -> bool:
        return bool(self._pos)


@dataclass
class Ref:
    """Reference snapshots indexed by id, with masking applied on the way out."""

    users: pd.DataFrame | None
    patients: pd.DataFrame | None
    lang: Lang
    masker: Masker
    _u: "_Rows" = None
    _p: "_Rows" = None

    def __post_init__(self):
        self._u = _Rows(self.users, "user_id")
        self._p = _Rows(self.patients, "patient_id")

    def user(self, uid) -> dict:
        uid = _s(uid)
        r = self._u.get(uid, {})
        role = _s(r.get("role"))
        status = _s(r.get("status"))
        return {"id": uid, "name": _s(r.get("name")), "role": role,
                "role_label": label(ROLE, role, self.lang), "department": _s(r.get("department")),
                "ward": _s(r.get("ward")), "status": status,
                "status_label": label(USER_STATUS, status, self.lang),
                "known": bool(r)}

    def department(self, uid) -> str:
        return _s(self._u.get(_s(uid), {}).get("department"))

    def patient(self, pid) -> dict:
        pid = _s(pid)
        r = self._p.get(pid, {})
        flags = []
        for key in ("vip", "sensitive", "watch"):
            if bool(r.get(key)) and _s(r.get(key)) not in ("", "False", "0"):
                flags.append({"key": key, "label": label(PATIENT_FLAGS, key, self.lang)})
        if _s(r.get("employee_user_id")):
            flags.insert(1 if flags and flags[0]["key"] == "vip" else 0,
                         {"key": "employee", "label": label(PATIENT_FLAGS, "employee", self.lang)})
        if _s(r.get("deceased_date")):
            flags.append({"key": "deceased", "label": label(PATIENT_FLAGS, "deceased",
                                                            self.lang)})
        return {"id": self.masker.pid(pid), "name": self.masker.name(r.get("name")),
                "sex": _s(r.get("sex")), "flags": flags, "known": bool(r)}


# -- loading ------------------------------------------------------------------------------------
class _Events:
    """The events behind the cases shown, kept as columns. A case of a bulk user's night
    holds hundreds of thousands of events and its page lists MAX_EVENTS_SHOWN of them: the
    choice is made on the key columns (`flagged`), and only the rows a page lists are read
    whole and made dicts (`rows`, by `fetch`: event ids -> their whole rows)."""

    def __init__(self, keys: pd.DataFrame, fetch):
        """`keys`: event_id, ts, patient_id and `_file` (where `fetch` reads the rest of a
        row: fetch(ids, files) -> their whole rows)."""
        ev = keys.reset_index(drop=True)
        ids = ev["event_id"].astype(str).to_numpy(dtype=object)
        if len(ids) and not pd.Index(ids).is_unique:     # an id seen twice: its last row
            keep = ~pd.Index(ids).duplicated(keep="last")
            ev, ids = ev[keep].reset_index(drop=True), ids[keep]
        self.ids = ids
        self._index = pd.Index(ids)
        self.hour, self.day = _local_parts(ev["ts"])
        # local wall-clock seconds: the order of the pages' "YYYY-MM-DD HH:MM:SS" times
        self.sec = ev["ts"].dt.tz_localize(None).to_numpy(dtype="datetime64[s]") \
            .astype(np.int64)
        self._ts = ev["ts"]
        self.patients = ev["patient_id"] if "patient_id" in ev else pd.Series(dtype=object)
        self._files = ev["_file"].astype(object).to_numpy() if "_file" in ev else None
        self._fetch = fetch
        self._whole: dict[str, dict] = {}      # event id -> its row, all columns but ts

    def add_rows(self, df: pd.DataFrame) -> None:
        """Whole rows (with event_id; ts is dropped), kept for `rows`."""
        if df is None or not len(df):
            return
        df = df.drop(columns="ts", errors="ignore")
        names = list(df.columns)
        for vals in zip(*(df[c].tolist() for c in names)):
            r = dict(zip(names, vals))
            self._whole[str(r["event_id"])] = r

    def flagged(self, event_ids) -> np.ndarray:
        """Positions of these event ids that were read, in page order (time to the second,
        then event id)."""
        want = pd.unique(pd.Series(list(event_ids), dtype=object))
        pos = self._index.get_indexer(want)
        pos = pos[pos >= 0]
        return pos[np.lexsort((self.ids[pos].astype(str), self.sec[pos]))] if len(pos) \
            else pos.astype(np.int64)

    def prefetch(self, pos: np.ndarray) -> None:
        """Read the whole rows of these positions not read yet, in one read."""
        pos = np.asarray(pos, dtype=np.int64)
        need = pos[[e not in self._whole for e in self.ids[pos].tolist()]]
        if len(need) and self._files is not None:
            self.add_rows(self._fetch(self.ids[need].tolist(), self._files[need].tolist()))

    def rows(self, pos: np.ndarray) -> list[dict]:
        """The events at these positions as dicts: their columns, `_time` (local, to the
        second), `_hour` (fractional local hour) and `_day` (local day)."""
        pos = np.asarray(pos, dtype=np.int64)
        if not len(pos):
            return []
        self.prefetch(pos)
        times = self._ts.iloc[pos].dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
        out = []
        for e, t, h, d in zip(self.ids[pos].tolist(), times, self.hour[pos].tolist(),
                              self.day[pos].tolist()):
            r = dict(self._whole.get(e) or {"event_id": e})
            r.update(_time=t, _hour=h, _day=d)
            out.append(r)
        return out


class _Times:
    """The "HH:MM:SS" of events by position, made only for the ones asked for (a chart's
    merged ticks name the first and last of each)."""

    def __init__(self, sec: np.ndarray):
        self.sec = sec

    def __len__(self) -> int:
        return len(self.sec)

    def __getitem__(self, i: int) -> str:
        s = int(self.sec[i]) % 86_400
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class Loaded:
    """What one report shows, indexed once so that building a case page is plain Python
    over small lists (no DataFrame filtering per case)."""

    scan: dict
    cases: list[dict]                       # the cases shown, highest risk first
    ref: Ref
    findings_by_case: dict[str, list[dict]] = field(default_factory=dict)
    events: "_Events | None" = None          # the events behind the cases, as columns
    # case id -> positions in `events` of its flagged events that were read, page order
    event_pos: dict[str, np.ndarray] = field(default_factory=dict)
    activity_by_user: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    day_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    earlier_by_user: dict[str, list[dict]] = field(default_factory=dict)
    history_by_case: dict[str, list[dict]] = field(default_factory=dict)
    live_findings: pd.DataFrame | None = None
    trail: ProfileTrail | None = None      # how each source's words were mapped
    n_findings: int = 0                     # this scan's live findings


def _records_by(df: pd.DataFrame, key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    if df is None or not len(df):
        return out
    for r in df.to_dict("records"):
        out.setdefault(str(r[key]), []).append(r)
    return out


def _local_parts(ts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(fractional local hour, local day string) for tz-aware timestamps, vectorized. The day
    is fastops.local_days's; the hour is computed here at second resolution, in the float
    operations the charts were drawn with (hour + minute / 60 + second / 3600), so the
    pictures stay identical."""
    wall = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[s]").astype(np.int64)
    sod = wall % 86_400
    # the same float operations as hour + minute / 60 + second / 3600 (charts stay identical)
    hours = (sod // 3600) + (sod % 3600 // 60) / 60.0 + (sod % 60) / 3600.0
    return hours.astype(float), local_days(ts, ts.dt.tz).to_numpy(dtype=object)


def load_cases(config: Config, store: Store, lake: Lake, case_ids: list[str], lang: Lang,
               masker: Masker, scan: dict | None = None, *,
               patients: pd.DataFrame | None = None) -> Loaded:
    """Everything the pages of these cases show, read from what the scan stored (the
    scan's reports, `emraudit report case`, the review app). `patients`: the patients
    snapshot, when the caller has read it."""
    committed = store.committed_runs()
    stored = data.read_cases(store, case_ids)
    rows = {r["case_id"]: r for r in stored.to_dict("records")}
    cases_list = [rows[c] for c in case_ids if c in rows]
    case_ids = [c["case_id"] for c in cases_list]
    cf = data.case_findings(store, case_ids)
    by_case = _records_by(cf, "case_id")

    event_ids = sorted({str(e) for ids in cf["event_ids"] for e in ids}) if len(cf) else []
    days = set()
    spans = {(_s(s_)[:10], (_s(e) or _s(s_))[:10])          # a night's findings share a few
             for s_, e in zip(cf.get("start", []), cf.get("end", []))}
    for a, b in spans:
        days.update(data.days_between(a, b))
    users = sorted({_s(c["user_id"]) for c in cases_list} - {""})
    chart_days = set()
    for c in cases_list:
        focus = _s(c.get("last_seen"))[:10] or _s(c.get("first_seen"))[:10]
        if focus:
            chart_days.update(pd.date_range(end=focus, periods=30).strftime("%Y-%m-%d"))
    # per-day counts for the 30-day chart come from the stored daily features when the
    # anomaly detectors keep them; raw events are read only for the findings' own days
    counts = data.stored_day_counts(store, users, min(chart_days), max(chart_days)) \
        if users and chart_days else {}
    read_days = (days | {d for c in cases_list for d in [_s(c.get("last_seen"))[:10]] if d}) \
        if counts else chart_days
    # the users' bucket files read once: the events' keys, their days' activity
    keys, elsewhere, activity = data.read_case_events(
        lake, committed, days if event_ids else (), event_ids, users,
        read_days if users else ())
    ev_cols, event_pos = None, {}
    if len(keys) or len(elsewhere):
        parts = [f for f in (keys, elsewhere[[c for c in data.EVENT_KEYS if c in elsewhere]]
                             if len(elsewhere) else elsewhere) if len(f)]
        ev_cols = _Events(pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0],
                          fetch=lambda ids, files_: data.read_event_rows(lake, ids, files_))
        ev_cols.add_rows(elsewhere)
        event_pos = {c["case_id"]: ev_cols.flagged(map(str, chain.from_iterable(
            f["event_ids"] for f in by_case.get(c["case_id"], [])))) for c in cases_list}
        # the rows the pages list, read whole in one go
        shown = [pos[:MAX_EVENTS_SHOWN] for pos in event_pos.values()]
        ev_cols.prefetch(np.concatenate(shown) if shown else np.zeros(0, dtype=np.int64))
    act_by_user: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if len(activity):
        hours, dstr = _local_parts(activity["ts"])
        for uid, idx in activity.groupby(activity["user_id"].astype(str)).indices.items():
            act_by_user[uid] = (hours[idx], dstr[idx])
            per_day = counts.setdefault(uid, {})
            days_u, n_u = np.unique(dstr[idx].astype(str), return_counts=True)
            per_day.update({str(d): int(n) for d, n in zip(days_u, n_u)})

    ref = Ref(data.snapshot(lake, committed, "users"),
              data.snapshot(lake, committed, "patients") if patients is None else patients,
              lang, masker)
    pids = {p for c in cases_list for p in _json_list(c.get("patients"))}
    pids |= {_s(c.get("patient_id")) for c in cases_list} - {""}
    if ev_cols is not None:
        pids |= set(ev_cols.patients.dropna().astype(str))
    masker.learn_patients(ref.patients, pids)
    history = data.read_history(store, case_ids)
    return Loaded(scan or {}, cases_list, ref, findings_by_case=by_case,
                  events=ev_cols, event_pos=event_pos, activity_by_user=act_by_user,
                  day_counts=counts,
                  earlier_by_user=_records_by(data.user_cases(store, users), "user_id"),
                  history_by_case=_records_by(history, "case_id"),
                  trail=ProfileTrail.load(store))


# -- view models --------------------------------------------------------------------------------
def _status(row: dict, lang: Lang) -> dict:
    status = _s(row.get("status")) or "open"
    disp = _s(row.get("disposition"))
    reopened = bool(row.get("reopened")) and status == "open"
    key = "reopened" if reopened else status
    text = label(STATUS, key, lang)
    if status == "resolved" and disp:
        text += " · " + label(DISPOSITION, disp, lang)
    return {"status": status, "key": key, "label": text, "disposition": disp,
            "disposition_label": label(DISPOSITION, disp, lang), "reopened": reopened}


def case_view(row: dict, ld: Loaded, config: Config, lang: Lang, masker: Masker,
              fmt: Fmt, in_report: set[str], scan_id: str) -> dict:
    """Everything a case page (and its ledger row) shows, as plain data."""
    cid = row["case_id"]
    cf = ld.findings_by_case.get(cid, [])
    detectors = [str(d) for d in _json_list(row.get("detectors"))] or \
        sorted({str(f["detector"]) for f in cf})
    det = [detector_info(d, lang) for d in detectors]
    names = {d["id"]: d["name"] for d in det}
    item_codes = [str(i) for i in _json_list(row.get("items"))] or \
        sorted({str(f["rectification_item"]) for f in cf})
    user = ld.ref.user(row.get("user_id"))
    pids = [str(p) for p in _json_list(row.get("patients"))] or \
        ([_s(row.get("patient_id"))] if _s(row.get("patient_id")) else [])
    # only those the page lists: a bulk user's night names tens of thousands
    patients = [ld.ref.patient(p) for p in pids[:MAX_PATIENTS_SHOWN]]
    patient = patients[0] if len(pids) == 1 else None
    sev = _s(row.get("severity")) or "low"
    found_at = row.get("created") or row.get("first_seen")
    view = {
        "id": cid, "href": f"cases/{cid}.html", "kind": _s(row.get("kind")),
        "kind_label": label(KIND, _s(row.get("kind")), lang),
        "severity": sev, "severity_label": label(SEVERITY, sev, lang),
        "severity_rank": SEVERITY_RANK.get(sev, 0),
        "score": float(row["score"]) if _s(row.get("score")) else 0.0,
        "summary": case_sentence(row, cf, lang, masker),
        "detectors": det, "rect_items": [item_info(i, lang) for i in item_codes],
        "user": user, "patient": patient, "patients": patients,
        "n_patients": len(pids), "day": _s(row.get("day")),
        "risk": round(float(row["risk"]), 1) if _s(row.get("risk")) else None,
        "risk_factors": [{"label": label(RISK_FACTOR, k, lang), "points": v}
                         for k, v in sorted(_json_dict(row.get("risk_factors")).items(),
                                            key=lambda kv: -kv[1])],
        "queued": bool(row.get("queued")) if _s(row.get("queued")) else False,
        "feed": _feed_view(row, lang),
        "first_seen": fmt.ts(row.get("first_seen")), "last_seen": fmt.ts(row.get("last_seen")),
        "first_seen_raw": _s(row.get("first_seen")),
        "found": fmt.day(found_at), "found_raw": found_at,
        "n_findings": int(row.get("n_findings") or len(cf)),
        "n_events": int(row.get("n_events") or 0),
        "status": _status(row, lang), "reviewer": _s(row.get("reviewer")),
        "note": masker.scrub(row.get("note")), "resolved_at": fmt.minute(row.get("resolved_at")),
    }
    # what: the events behind the findings, oldest first; only those the page lists
    # become rows (a bulk user's night flags hundreds of thousands)
    flagged = dict.fromkeys(map(str, chain.from_iterable(f["event_ids"] for f in cf)))
    evs = ld.events
    pos = ld.event_pos.get(cid, np.zeros(0, dtype=np.int64))
    shown = evs.rows(pos[:MAX_EVENTS_SHOWN]) if len(pos) else []
    flagged_by: dict[str, set[str]] = {str(r["event_id"]): set() for r in shown}
    for f in cf:                    # which detectors flagged each listed event
        for e in flagged_by.keys() & set(map(str, f["event_ids"])):
            flagged_by[e].add(f["detector"])
    view["events_total"] = len(flagged)
    view["events_missing"] = len(flagged) - len(pos)
    view["events"] = [{
        "time": r["_time"], "action": label(ACTION, _s(r.get("action")), lang),
        "action_raw": _s(r.get("action_raw")), "module": _s(r.get("module")),
        "workstation": _s(r.get("workstation")), "ip": _s(r.get("ip")),
        "source_ref": _s(r.get("_source_ref")), "source": _s(r.get("_source")),
        "patient": masker.pid(r.get("patient_id")), "record_count": _s(r.get("record_count")),
        "reason": masker.scrub(r.get("reason")),
        "by": ", ".join(sorted(names.get(d, d) for d in flagged_by[str(r["event_id"])])),
    } for r in shown]
    view["mappings"] = ld.trail.for_events(shown) if ld.trail else []

    # why: each finding with its evidence, most severe first
    order = sorted(cf, key=lambda f: (-SEVERITY_RANK.get(f["severity"], 0), _s(f["start"]),
                                      f["finding_id"]))
    view["findings"] = [{
        "id": f["finding_id"], "detector": f["detector"],
        "detector_name": names.get(f["detector"], f["detector"]),
        "severity": f["severity"], "severity_label": label(SEVERITY, f["severity"], lang),
        "score": round(float(f.get("score") or 0), 3),
        "summary": finding_sentence(f, lang, masker),
        "start": fmt.ts(f.get("start")), "end": fmt.ts(f.get("end")),
        "n_events": len(f["event_ids"]),
        "item": item_info(_s(f.get("rectification_item")), lang),
        "evidence": render_evidence(f.get("evidence") or {}, lang, masker),
        "suppressed": _s(f.get("suppressed_by")) != "",
        "new": _s(f.get("last_scan")) == scan_id} for f in order]
    view["finding_groups"] = group_repeats(view["findings"])

    # activity charts: the day with most flagged events, and the 30 days up to it
    uid = user["id"]
    hours, days_arr = ld.activity_by_user.get(uid, (np.zeros(0), np.zeros(0, dtype=object)))
    fdays = evs.day[pos].astype(str) if len(pos) else np.zeros(0, dtype=str)
    if len(fdays):       # the day with most flagged events (the earliest of a tie)
        uniq, n_day = np.unique(fdays, return_counts=True)
        focus = str(uniq[int(np.argmax(n_day))])
    else:
        focus = _s(row.get("last_seen"))[:10] or _s(row.get("first_seen"))[:10]
    view["chart_day"] = focus
    if focus:
        on_day = days_arr == focus
        fl = pos[fdays == focus] if len(pos) else pos
        view["day_chart"] = charts.day_chart(
            hours[on_day], evs.hour[fl] if len(fl) else [],
            office_hours=tuple(config.site.office_hours),
            title=lang.gettext("Accesses by %(user)s on %(day)s, by hour", user=uid, day=focus),
            flagged_label=lang.gettext("flagged access"),
            office_label=lang.gettext("office hours"),
            tooltips=_Times(evs.sec[fl]) if len(fl) else [])
        view["day_total"] = int(on_day.sum())
        days = list(pd.date_range(end=focus, periods=30).strftime("%Y-%m-%d"))
        per_day = ld.day_counts.get(uid, {})
        view["days_chart"] = charts.days_chart(
            days, [int(per_day.get(d, 0)) for d in days], set(fdays.tolist()) or {focus},
            title=lang.gettext("Accesses by %(user)s per day, last 30 days", user=uid),
            flagged_label=lang.gettext("day with flagged accesses"),
            median_label=lang.gettext("median"))

    # the user's other cases
    others = [r for r in ld.earlier_by_user.get(uid, []) if r["case_id"] != cid]
    others.sort(key=lambda r: _s(r.get("first_seen")), reverse=True)
    earlier = []
    for r in others[:20]:
        st = _status(r, lang)
        earlier.append({"id": r["case_id"],
                        "href": f"{r['case_id']}.html" if r["case_id"] in in_report else "",
                        "first_seen": fmt.day(r.get("first_seen")),
                        "severity": _s(r.get("severity")),
                        "severity_label": label(SEVERITY, _s(r.get("severity")), lang),
                        "detectors": ", ".join(detector_info(d, lang)["name"]
                                               for d in _json_list(r.get("detectors"))),
                        "patient": ", ".join(masker.pid(p) for p in (
                            _json_list(r.get("patients")) or [r.get("patient_id")])[:5]
                            if _s(p)),
                        "status": st, "reviewer": _s(r.get("reviewer")),
                        "note": masker.scrub(r.get("note"))})
    view["earlier"] = earlier
    view["earlier_confirmed"] = sum(1 for e in earlier
                                    if e["status"]["disposition"] == "confirmed")
    hist = []
    for r in sorted(ld.history_by_case.get(cid, []), key=lambda r: r["id"]):
        fld = _s(r.get("field"))
        old, new = history_value(fld, r.get("old"), lang), history_value(fld, r.get("new"), lang)
        by = _s(r.get("by"))
        hist.append({"at": fmt.minute(r.get("at")),
                     "by": lang.gettext("scan") if by == "scan" else by,
                     "action": label(HISTORY_ACTION, _s(r.get("action")), lang),
                     "field": label(HISTORY_FIELD, fld, lang),
                     "old": masker.scrub(old), "new": masker.scrub(new),
                     "note": history_note(r, lang, masker), "scan": _s(r.get("scan_id"))})
    view["history"] = hist
    return view


def _feed_view(row: dict, lang: Lang) -> dict | None:
    """The figures of a feed-gap case (emraudit.cases.update_feed_gap_cases), for reading."""
    if _s(row.get("kind")) != "feed_gap":
        return None
    facts = next((r for r in _json_list(row.get("severity_reasons"))
                  if isinstance(r, dict) and r.get("reason") == "feed_gap"), {})
    dim = str(facts.get("dimension", ""))
    return {"dimension": dim, "dimension_label": label(FEED_DIMENSION, dim, lang),
            "value": facts.get("value", ""), "share": _pct(facts.get("share")),
            "others_share": _pct(facts.get("others_share")), "held": facts.get("held", 0),
            "users": facts.get("users", 0), "patients": facts.get("patients", 0),
            "top_users": facts.get("top_users") or []}


def _pct(v) -> str:
    try:
        return f"{100 * float(v):.0f}"
    except (TypeError, ValueError):
        return "—"


def feed_rows(store: Store, scan_id: str | None, lang: Lang) -> list[dict]:
    """The units the latest scan (or `scan_id`) found explained far less than the rest."""
    df = data.feed_health_rows(store, scan_id)
    if not len(df):
        return []
    df = df[df["gap"].astype(bool)]
    return [{"dimension": r["dimension"],
             "dimension_label": label(FEED_DIMENSION, r["dimension"], lang),
             "value": r["value"], "accesses": int(r["accesses"]), "share": _pct(r["share"]),
             "others_share": _pct(r["others_share"]), "users": int(r["users"] or 0)}
            for r in df.to_dict("records")]


# -- dashboard aggregates -----------------------------------------------------------------------
def _totals(views: list[dict], key, label_of) -> list[dict]:
    counts: dict[str, dict] = {}
    for v in views:
        for k in key(v):
            c = counts.setdefault(k, {"key": k, "label": label_of(k), "cases": 0,
                                      "people": set()})
            c["cases"] += 1
            c["people"].add(v["user"]["id"])
    out = sorted(counts.values(), key=lambda c: (-c["cases"], str(c["key"])))
    top = max([c["cases"] for c in out] or [1])
    for c in out:
        c["people"] = len(c["people"])
        c["pct"] = round(100.0 * c["cases"] / top, 1)
    return out


def dashboard_model(views: list[dict], ld: Loaded, config: Config, store: Store,
                    lang: Lang, fmt: Fmt) -> dict:
    sev_order = ["critical", "high", "medium", "low"]
    by_sev = {s: 0 for s in sev_order}
    for v in views:
        by_sev[v["severity"]] = by_sev.get(v["severity"], 0) + 1
    det_names = {}
    for v in views:
        for d in v["detectors"]:
            det_names[d["id"]] = d["name"]
    items = {}
    for v in views:
        for i in v["rect_items"]:
            items[i["code"]] = i
    totals = {
        "item": _totals(views, lambda v: [i["code"] for i in v["rect_items"]],
                        lambda k: items[k]["zh"] if lang.code == "zh" else items[k]["short"]),
        "detector": _totals(views, lambda v: [d["id"] for d in v["detectors"]],
                            lambda k: det_names.get(k, k)),
        "severity": [{"key": s, "label": label(SEVERITY, s, lang), "cases": by_sev[s],
                      "pct": round(100.0 * by_sev[s] / max(1, max(by_sev.values())), 1)}
                     for s in sev_order],
        "department": _totals(views, lambda v: [v["user"]["department"] or "—"], lambda k: k),
    }
    rows = [{"id": v["id"], "href": v["href"], "sev": v["severity"],
             "sevRank": v["severity_rank"], "sevLabel": v["severity_label"],
             "score": round(v["score"], 3),
             "user": v["user"]["id"], "userName": v["user"]["name"],
             "role": v["user"]["role_label"], "dept": v["user"]["department"],
             "patient": (v["patient"]["name"] + " " + v["patient"]["id"]).strip()
             if v["patient"] else "",
             "flags": [f["label"] for f in v["patient"]["flags"]] if v["patient"] else [],
             "detectors": ", ".join(d["name"] for d in v["detectors"]),
             "item": ", ".join(i["code"] for i in v["rect_items"]),
             "first": v["first_seen"][:16], "firstSort": v["first_seen_raw"],
             "events": v["n_events"], "status": v["status"]["key"],
             "statusLabel": v["status"]["label"], "summary": v["summary"]}
            for v in views]
    rows.sort(key=lambda r: (-r["sevRank"], -r["score"], r["id"]))
    # trend: live cases per incident day, across every scan (counted in the database)
    per_day = data.cases_per_day(store, TREND_DAYS)
    trend = None
    if len(per_day):
        last = per_day.index.max()
        span = (pd.Timestamp(last) - pd.Timestamp(per_day.index.min())).days + 1
        days = list(pd.date_range(end=last, periods=min(TREND_DAYS, max(14, span)))
                    .strftime("%Y-%m-%d"))
        this = set(_json_list((_json_dict(ld.scan.get("summary")) or {}).get("days")))
        trend = charts.trend_chart(days, [int(per_day.get(d, 0)) for d in days], this,
                                   title=lang.gettext("Cases per day"),
                                   highlight_label=lang.gettext("days in this scan"),
                                   median_label=lang.gettext("median"))
    people = {v["user"]["id"] for v in views}
    patients = {v["patient"]["id"] for v in views if v["patient"]}
    kpi = {"cases": len(views), "open": sum(1 for v in views if v["status"]["status"] == "open"),
           "findings": ld.n_findings, "people": len(people), "patients": len(patients),
           "urgent": by_sev["critical"] + by_sev["high"]}
    return {"totals": totals, "rows": rows, "trend": trend, "kpi": kpi,
            "feeds": feed_rows(store, ld.scan.get("scan_id"), lang),
            "coverage": _coverage(store, config, lang), "scans": _recent_scans(store, fmt, lang),
            "top": [v for v in sorted(views, key=lambda v: (-v["severity_rank"], -v["score"],
                                                            v["id"]))[:5]]}


def _coverage(store: Store, config: Config, lang: Lang) -> list[dict]:
    try:
        from emraudit.coverage import coverage_report
        rep = coverage_report(store, config)
    except Exception:  # noqa: BLE001 - coverage is informative; never sink the report
        log.warning("coverage not available", exc_info=True)
        return []
    out = []
    if rep is None or rep.empty:
        return out
    for src, part in rep.groupby("source", sort=True):
        shares: dict[str, list[float]] = {}
        for f in part["fields"]:
            for k, v in (f or {}).items():
                shares.setdefault(k, []).append(float(v))
        low_fields = sorted(k for k, v in shares.items()
                            if k in ("workstation", "ip", "module") and np.mean(v) < 0.5)
        out.append({"source": src, "first": part["day"].min(), "last": part["day"].max(),
                    "days": int((part["events"] > 0).sum()),
                    "events": int(part["events"].sum()),
                    "gaps": list(part.loc[part["status"] == "gap", "day"])[:10],
                    "n_gaps": int((part["status"] == "gap").sum()),
                    "n_low": int((part["status"] == "low").sum()),
                    # the share of events with each field filled, by the field's label
                    "fields": {label(FIELD, k, lang): round(100 * float(np.mean(v)))
                               for k, v in shares.items()
                               if k in ("module", "workstation", "ip", "session_id")},
                    "low_fields": low_fields})
    return out


def _recent_scans(store: Store, fmt: Fmt, lang: Lang, n: int = 10) -> list[dict]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(scans).order_by(scans.c.started.desc()).limit(n)) \
            .mappings().all()
    out = []
    for r in rows:
        summ = {}
        try:
            summ = json.loads(r["summary"]) if r["summary"] else {}
        except json.JSONDecodeError:
            pass
        days = summ.get("days") or []
        out.append({"id": r["scan_id"], "started": fmt.minute(r["started"]),
                    "status": label(SCAN_STATUS, r["status"], lang),
                    "findings": summ.get("findings", ""),
                    "cases": summ.get("cases", ""),
                    "days": f"{days[0]} … {days[-1]}" if days else "",
                    "unmasked": bool(r["unmasked"])})
    return out


# -- writing ------------------------------------------------------------------------------------
def _page_globals(config: Config, lang: Lang, masker: Masker, scan: dict, fmt: Fmt) -> dict:
    js = _static("report.js")
    return {"site": config.site.name, "css": _static("report.css"), "js": js,
            "csp": _csp(js), "masked": masker.enabled, "scan": scan,
            "generated": Fmt(config.tz).now(),
            "window": (fmt.day(scan.get("window_start")), fmt.day(
                pd.Timestamp(scan["window_end"]) - pd.Timedelta(seconds=1)))
            if scan.get("window_start") is not None and scan.get("window_end") is not None
            else ("", "")}


@dataclass
class _CasePages:
    """What rendering case pages needs: built once, inherited by forked workers."""

    ld: Loaded
    config: Config
    lang: Lang
    masker: Masker
    fmt: Fmt
    scan_id: str
    page_globals: dict
    case_dir: Path

    def render(self, lo: int, hi: int) -> list[dict]:
        """Build the views of cases[lo:hi], write their pages, return the views."""
        tpl = make_env(self.lang).get_template("case.html")
        in_report = {c["case_id"] for c in self.ld.cases}
        views = []
        for row in self.ld.cases[lo:hi]:          # one per case page
            v = case_view(row, self.ld, self.config, self.lang, self.masker, self.fmt,
                          in_report, self.scan_id)
            files.write_text(self.case_dir / f"{v['id']}.html",
                             tpl.render(**self.page_globals, c=v))
            views.append(v)
        return views


def _render_slice(job: _CasePages, bounds: tuple[int, int]) -> list[dict]:
    return job.render(*bounds)


def _render_all(job: _CasePages) -> list[dict]:
    return _render_case_pages(job, 1)


def _render_case_pages(job: _CasePages, workers: int) -> list[dict]:
    """Case pages are independent of one another (masking is a pure function of the value,
    the charts of the case's own data), so with `workers` > 1 they are written by forked
    processes, each taking contiguous slices; views come back in case order."""
    n = len(job.ld.cases)
    bar = progress.current()
    if workers <= 1 or n < 2 or not can_fork():
        views = []
        for lo in range(0, n, 20):
            views += job.render(lo, min(lo + 20, n))
            bar.track("case pages", len(views), n, unit="pages")
        return views
    # what every page needs and each worker would otherwise build again after the fork
    all_detectors()
    job.masker.pattern()
    step = max(1, -(-n // (workers * 4)))      # a few slices a worker evens out slow cases
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    views = []
    for part in forked_map(_render_slice, job, bounds, workers):   # in order, as they finish
        views += part
        bar.track("case pages", len(views), n, unit="pages")
    return views


def write_scan_reports(config: Config, store: Store, lake: Lake, scan_id: str, *,
                       unmask: bool = False, workers: int | None = None) -> Path:
    """Write reports/<scan_id>/ and point reports/latest at it. Returns the folder.

    The dashboard covers the open review queue, whatever scan found its cases, and the
    ledger every open problem (`emraudit.reports.ledger`); a page is written for each case in the queue (at most `[review] max_pages`, highest
    risk first); the other cases are counted and rendered on demand (`emraudit report case`).
    findings.jsonl holds this scan's findings. Case pages are written by `workers` forked
    processes (default: the scan's `workers` when there are at least PARALLEL_MIN_CASES
    cases), findings.jsonl by as many (default: the scan's `workers`) when it holds at
    least findings_jsonl.PARALLEL_MIN_FINDINGS, and then the pages (when one process writes
    them) by a process of their own meanwhile; the output is the same either way."""
    from emraudit.cases import queue_counts, review_queue

    lang = Lang(config.reports.lang)
    masker = Masker(enabled=config.reports.mask_patients and not unmask)
    # an unmasked report is recorded on the scan by whoever asked for it (the scan, or
    # `report scan --unmask`, results.mark_unmasked): reports only read the store
    fmt = Fmt(config.tz)
    scan = data.scan_row(store, scan_id) or {"scan_id": scan_id}
    queue = review_queue(store)
    # the queue, then the cases of this scan's findings that reviewers already resolved
    # (context: what was decided about this night); open cases below the budget get none
    decided = data.resolved_cases_of(store, data.scan_case_ids(store, scan_id))
    shown = (queue + [c for c in decided if c not in set(queue)])[:config.review.max_pages]
    pool = config.scan.workers if workers is None else workers
    patients = data.snapshot(lake, store.committed_runs(), "patients")

    root = files.private_dir(config.reports_dir)
    tmp = files.temp_dir(root, scan_id)
    jsonl = None
    try:
        # findings.jsonl's workers find the file's patients while the cases load
        jsonl = FindingsFile(tmp / "findings.jsonl", store, scan_id, lang, masker, patients,
                             workers=pool)
        jsonl.start()
        ld = load_cases(config, store, lake, shown, lang, masker, scan, patients=patients)
        ld.n_findings = jsonl.count
        if ld.ref.users is not None and "name" in ld.ref.users:
            masker.keep(ld.ref.users["name"])      # staff names stay whole in scrubbed text
        env = make_env(lang)
        g = _page_globals(config, lang, masker, ld.scan, fmt)
        if workers is None:
            workers = pool if len(ld.cases) >= PARALLEL_MIN_CASES else 1
        jsonl.collect()         # their lists, not learned yet: the pages must not see them
        case_dir = tmp / "cases"
        case_dir.mkdir(mode=files.DIR_MODE)
        job = _CasePages(ld, config, lang, masker, fmt, scan_id, g, case_dir)
        if workers == 1 and jsonl.parallel:
            # the pages in a process of their own, forked before findings.jsonl teaches the
            # masker this scan's patients (the pages see what they always saw), while the
            # file's workers write it: the pages fill the core the file's serial parts leave
            pages = Forked(_render_all, job, tmp)
            try:
                jsonl.learn()
                jsonl.write()
                views = pages.result()
            finally:
                pages.cancel()
            progress.current().track("case pages", len(views), len(views), unit="pages")
        else:
            views = _render_case_pages(job, workers)
            jsonl.learn()
            jsonl.write()
        dash = dashboard_model(views, ld, config, store, lang, fmt)
        dash["queue"] = dict(queue_counts(store), shown=len(views),
                             not_shown=len(queue) - len(views))
        files.write_text(tmp / "index.html",
                         env.get_template("index.html").render(**g, d=dash, cases=views))
        # the ledger covers every open problem, not only this scan's; the events loaded
        # for this scan's cases give their rows source references. Written while the
        # file's workers write (they have the masker as it was; the ledger teaches it more)
        ledger.write_ledger(config, store, lake, tmp, masker=masker,
                            evidence={v["id"]: v["events"] for v in views})
        jsonl.finish()
    except BaseException:
        import shutil
        if jsonl is not None:
            jsonl.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = files.swap_into_place(tmp, root / scan_id)
    files.point_latest(root, final)
    log.info("report written: %s (%d case pages)", final, len(views))
    return final


def write_case_page(config: Config, store: Store, lake: Lake, case_id: str, out: Path, *,
                    unmask: bool = False) -> Path:
    """One case's page, for a case without one in the latest report (below the budget,
    resolved, or past `max_pages`): the same page, written to `out`."""
    from emraudit.cases import find_case

    lang = Lang(config.reports.lang)
    masker = Masker(enabled=config.reports.mask_patients and not unmask)
    fmt = Fmt(config.tz)
    with store.engine.connect() as c:
        row = find_case(c, case_id)
    ld = load_cases(config, store, lake, [row["case_id"]], lang, masker)
    g = _page_globals(config, lang, masker, {}, fmt)
    view = case_view(ld.cases[0], ld, config, lang, masker, fmt, set(), "")
    html = make_env(lang).get_template("case.html").render(**g, c=view)
    out = Path(out)
    files.write_text(out, html)
    return out


__all__ = ["write_scan_reports", "write_case_page", "load_cases", "Fmt", "Ref"]
