"""`emraudit cases list|show|resolve|rectify`: the review queue, reviewers' dispositions and
the rectification of confirmed problems."""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime

import click
import pandas as pd

from emraudit.commands._common import config_option, get_config
from emraudit.dates import ISO_DATE, ISO_TIME


# -- small output helpers (shared by allow, tune and detectors commands) --------------------
def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
        return ""
    return str(v).replace("\n", " ")


def echo_table(df: pd.DataFrame, cols: list[tuple[str, str]], max_width: int = 60) -> None:
    """Print a plain aligned table (CJK-aware widths); long cells are cut with '…'."""
    rows = [[_cell(r.get(c)) for c, _ in cols] for r in df.to_dict("records")]
    rows = [[v if _width(v) <= max_width else v[:max_width - 1] + "…" for v in r]
            for r in rows]
    heads = [h for _, h in cols]
    widths = [max([_width(h)] + [_width(r[i]) for r in rows]) for i, h in enumerate(heads)]

    def line(vals):
        return "  ".join(v + " " * (w - _width(v)) for v, w in zip(vals, widths)).rstrip()

    click.echo(line(heads))
    click.echo(line(["-" * w for w in widths]))
    for r in rows:
        click.echo(line(r))


def when(v) -> str:
    """A stored time (UTC; SQLite returns it without its zone) as 'YYYY-MM-DD HH:MM UTC'."""
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return ""
    t = pd.Timestamp(v)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _jsonable(v):
    if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, datetime)):
        t = pd.Timestamp(v)   # stored in UTC; SQLite returns it without its zone
        return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).isoformat()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


unmask_option = click.option("--unmask", is_flag=True,
                             help="Show patient ids and names in full (masked by default when "
                                  "[reports] mask_patients is on); recorded in the audit "
                                  "trail.")


def _case_masker(cfg, store, unmask: bool, command: str, rows: list[dict], target=None,
                 texts=()):
    """The masker for these case rows: their patients learned, so that their ids and names
    are scrubbed from every free text printed (summaries, notes, history)."""
    from emraudit.commands._common import masker_for, teach_patients
    from emraudit.reports.masking import case_patient_ids
    masker = masker_for(cfg, store, unmask=unmask, command=command, target=target)
    ids = [p for r in rows for p in case_patient_ids(r)]
    teach_patients(masker, cfg, store, ids, [*texts, *(r.get("summary") for r in rows),
                                             *(r.get("note") for r in rows)])
    return masker


def _rectification(df: pd.DataFrame) -> list:
    from emraudit.rectification import status_of
    return [status_of(r) for r in df.to_dict("records")]


def _sentences(cfg, masker):
    """(case sentence, finding sentence) in the reports' language, patients masked by
    `masker` (emraudit.reports.text: one wording everywhere). They take the raw rows."""
    from emraudit.reports.text import case_sentence, finding_sentence
    lang = cfg.reports.lang

    def case(row, fnd, in_lang=lang):
        return case_sentence(row, fnd, in_lang, masker)

    def finding(row, in_lang=lang):
        return finding_sentence(row, in_lang, masker)
    return case, finding


def _sentence_fields(out: dict, text, lang: str) -> None:
    """`summary` in English and, for a Chinese configuration, `summary_zh` beside it."""
    out["summary"] = text("en")
    if lang != "en":
        out["summary_" + lang] = text(lang)


# -- verbs --------------------------------------------------------------------------------
@click.group("cases")
def cases_group() -> None:
    """Review cases: list the queue, show one, record a disposition."""


@cases_group.command("list")
@config_option
@click.option("--status", type=click.Choice(["open", "resolved", "suppressed", "retracted",
                                             "all"]), default="open", show_default=True)
@click.option("--detector", help="Only cases with a finding of this detector.")
@click.option("--user", help="Only cases of this account.")
@click.option("--site", help="Only cases of this site (hospital): the site of their earliest "
              "finding.")
@click.option("--since", type=ISO_TIME,
              help="Only cases seen on or after this day (ISO), e.g. 2026-09-01.")
@click.option("--below-budget", is_flag=True,
              help="Only the open cases the nightly review budget left out of the queue.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@unmask_option
def list_cmd(config_path, status, detector, user, site, since, below_budget, fmt,
             unmask) -> None:
    """Cases: the review queue first (feed gaps, then highest risk), then the rest."""
    from emraudit.cases import list_cases
    from emraudit.store import Store

    cfg = get_config(config_path)
    if detector:
        from emraudit.detectors.registry import check_id
        detector = check_id(detector, "--detector")
    if since:   # stored times are ISO text in the site's timezone
        since = since.day.isoformat() if since.time is None else \
            since.start(cfg.tz).strftime("%Y-%m-%dT%H:%M:%S")
    store = Store(cfg.store_url)
    df = list_cases(store, status=status, detector=detector, user=user, since=since,
                    below_budget=below_budget)
    if site is not None and len(df):
        from emraudit.reports.sites import site_case_ids
        df = df[df["case_id"].isin(site_case_ids(store, site, cfg.site.id))]
    masker = _case_masker(cfg, store, unmask, "cases list", df.to_dict("records"),
                          target=f"cases list --status {status}")
    mask = masker.pid
    if fmt == "json":
        from emraudit.reports.data import case_findings
        case_text, _ = _sentences(cfg, masker)
        found = case_findings(store, df["case_id"].tolist()) if len(df) else None
        by_case: dict = {}
        for f in found.to_dict("records") if found is not None and len(found) else []:
            by_case.setdefault(f["case_id"], []).append(f)
        out = []
        for r in df.to_dict("records"):
            fnd = by_case.get(r["case_id"], [])
            raw = dict(r)
            r = masker.case({k: _jsonable(v) for k, v in r.items()})
            _sentence_fields(r, lambda lang, raw=raw, fnd=fnd: case_text(raw, fnd, lang),
                             cfg.reports.lang)
            r["detectors"] = json.loads(r["detectors"] or "[]")
            r["items"] = json.loads(r["items"] or "[]")
            r["patients"] = json.loads(r.get("patients") or "[]")
            out.append(r)
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    if df.empty:
        click.echo(f"no cases ({'any status' if status == 'all' else status})")
        return
    df = df.assign(
        whom=[_whom(k, p, d, ps, mask) for k, p, d, ps in zip(
            df["kind"], df["patient_id"], df["day"], df["patients"])],
        queue=["yes" if q is True or q == 1 else "" for q in df["queued"]],
        dets=df["detectors"].map(lambda s: ", ".join(json.loads(s or "[]"))),
        seen=df["last_seen"].map(lambda s: _cell(s)[:16].replace("T", " ")),
        state=[s + (" (reopened)" if r is True and s == "open" else "")
               + (f": {d}" if isinstance(d, str) and d else "")
               + (f", rectification {x}" if x else "")
               for s, r, d, x in zip(df["status"], df["reopened"].fillna(False).astype(bool),
                                     df["disposition"], _rectification(df))])
    echo_table(df, [("case_id", "case"), ("severity", "severity"), ("risk", "risk"),
                    ("queue", "queued"), ("user_id", "user"), ("whom", "patients/day"),
                    ("dets", "detectors"), ("n_findings", "findings"), ("seen", "last seen"),
                    ("state", "status")])
    click.echo(f"\n{len(df)} case{'s' if len(df) != 1 else ''}")


def _whom(kind, patient, day, patients, mask) -> str:
    """What a case is about, for a table cell: its patients (masked), or its day/unit."""
    if kind == "feed_gap":
        return "feed gap"
    pids = json.loads(patients) if isinstance(patients, str) and patients else []
    if not pids and isinstance(patient, str) and patient:
        pids = [patient]
    if not pids:
        return f"day {day}"
    more = f" +{len(pids) - 2}" if len(pids) > 2 else ""
    return ", ".join(mask(p) for p in pids[:2]) + more + f" ({day})" * bool(day)


@cases_group.command("show")
@config_option
@click.argument("case")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@unmask_option
def show_cmd(config_path, case, fmt, unmask) -> None:
    """One case: its findings, the user's other cases, and the full history."""
    from emraudit.cases import case_history_of, find_case, user_history
    from emraudit.store import Store, findings

    cfg = get_config(config_path)
    store = Store(cfg.store_url)
    with store.engine.connect() as c:
        row = find_case(c, case)
    cid = row["case_id"]
    fnd = store.read_findings(findings.c.case_id == cid)
    hist = case_history_of(store, cid)
    others = user_history(store, row["user_id"]) if row["user_id"] else pd.DataFrame(
        columns=["case_id"])
    others = others[others["case_id"] != cid]
    raw_row, records = dict(row), fnd.to_dict("records")
    texts = [*hist.get("note", []), *hist.get("old", []), *hist.get("new", [])]
    masker = _case_masker(cfg, store, unmask, "cases show", [row, *records],
                          target=cid, texts=[t for t in texts if isinstance(t, str)])
    case_text, finding_text = _sentences(cfg, masker)
    scrub = masker.scrub
    row = masker.case(row)
    fnd = pd.DataFrame([masker.finding(f) for f in records], columns=fnd.columns)
    hist = hist.assign(**{k: hist[k].map(lambda v: scrub(v) if isinstance(v, str) else v)
                          for k in ("old", "new", "note") if k in hist})
    if fmt == "json":
        out = {k: _jsonable(v) for k, v in row.items()}
        _sentence_fields(out, lambda lang: case_text(raw_row, records, lang),
                         cfg.reports.lang)
        out["detectors"] = json.loads(out["detectors"] or "[]")
        out["items"] = json.loads(out["items"] or "[]")
        out["patients"] = json.loads(out.get("patients") or "[]")
        out["findings"] = []
        for f in records:
            item = {"finding_id": f["finding_id"], "detector": f["detector"],
                    "severity": f["severity"], "start": f["start"], "end": f["end"],
                    "patient_id": masker.pid(f["patient_id"]) or None,
                    "event_ids": f["event_ids"], "suppressed_by": _jsonable(f["suppressed_by"])}
            _sentence_fields(item, lambda lang, f=f: finding_text(f, lang), cfg.reports.lang)
            out["findings"].append(item)
        out["history"] = [{k: _jsonable(v) for k, v in h.items() if k != "id"}
                          for h in hist.to_dict("records")]
        out["user_cases"] = [{"case_id": o["case_id"], "status": o["status"],
                              "disposition": o["disposition"], "severity": o["severity"],
                              "last_seen": o["last_seen"]} for o in others.to_dict("records")]
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    whom = _whom(row["kind"], row.get("patient_id"), row.get("day"), row.get("patients"),
                 _cell)                      # the row is masked already
    click.echo(f"case {cid}  [{row['severity']}]  {row['status']}"
               + (" (reopened)" if row["reopened"] else ""))
    click.echo(f"user {row['user_id']}, {whom}")
    click.echo(f"seen {row['first_seen']} .. {row['last_seen']}; {row['n_findings']} "
               f"finding(s), {row['n_events']} event(s); items "
               f"{', '.join(json.loads(row['items'] or '[]'))}")
    click.echo(f"summary: {case_text(raw_row, records)}")
    if row["disposition"]:
        click.echo(f"disposition: {row['disposition']} by {row['reviewer']} at "
                   f"{when(row['resolved_at'])}: {row['note'] or ''}")
    from emraudit.rectification import status_of
    rect = status_of(row)
    if rect:
        click.echo(f"rectification: {rect}" + (
            f" ({_cell(row.get('rectification_date'))}, by "
            f"{_cell(row.get('rectification_by'))}): {_cell(row.get('rectification_measure'))}"
            if _cell(row.get("rectification_by")) else ""))
    click.echo("")
    if len(fnd):
        fnd = fnd.assign(n=fnd["event_ids"].map(len),
                         sup=fnd["suppressed_by"].map(lambda s: f"#{int(s)}" if pd.notna(s)
                                                      else ""),
                         summary=[finding_text(f) for f in records])
        echo_table(fnd, [("detector", "detector"), ("severity", "severity"),
                         ("start", "start"), ("n", "events"), ("sup", "allowlisted"),
                         ("summary", "summary")], max_width=90)
    click.echo("\nhistory:")
    for h in hist.to_dict("records"):
        change = f" {h['field']}: {_cell(h['old']) or '-'} -> {_cell(h['new'])}" \
            if _cell(h["field"]) else ""
        scan = f" (scan {h['scan_id']})" if _cell(h["scan_id"]) else ""
        note = f" — {h['note']}" if _cell(h["note"]) else ""
        click.echo(f"  {when(h['at'])}  {h['action']:9} by {_cell(h['by']) or '-'}"
                   f"{change}{scan}{note}")
    if len(others):
        confirmed = int((others["disposition"] == "confirmed").sum())
        click.echo(f"\nother cases of {row['user_id']}: {len(others)} "
                   f"({confirmed} confirmed)")
        for o in others.head(20).to_dict("records"):
            click.echo(f"  {o['case_id']}  {o['severity']:8} {o['status']:9} "
                       f"{_cell(o['disposition']):14} {_cell(o['last_seen'])[:10]}")


@cases_group.command("resolve")
@config_option
@click.argument("case")
@click.option("--disposition", required=True,
              type=click.Choice(["confirmed", "false_positive", "justified", "training"]))
@click.option("--note", required=True, help="What the review found.")
@click.option("--by", "by", required=True, help="The reviewer's name.")
@click.option("--expect-version", type=int, default=None,
              help="Fail instead of applying on top when the case changed since this "
                   "version (shown by `cases show --format json`).")
def resolve_cmd(config_path, case, disposition, note, by, expect_version) -> None:
    """Record a disposition (kept with time and reviewer in the case's history).

    Safe with several reviewers at once: a case changed by someone else meanwhile is read
    again and the disposition recorded on top (both stay in the history). Exit code 4 when
    the case changed since --expect-version, or a running scan holds it (try again).
    """
    from emraudit.cases import resolve_case
    from emraudit.store import Store

    cfg = get_config(config_path)
    row = resolve_case(Store(cfg.store_url), case, disposition, note, by,
                       expected_version=expect_version)
    click.echo(f"case {row['case_id']} resolved: {disposition} by {by} "
               f"(version {row['version']})")


@cases_group.command("rectify")
@config_option
@click.argument("case")
@click.option("--status", required=True,
              help="pending | in_progress | done (or 待整改 | 整改中 | 已整改).")
@click.option("--measure", help="The measure actually taken (required with done).")
@click.option("--by", "by", required=True, help="Who records it.")
@click.option("--date", "day", type=ISO_DATE,
              help="The day the measure was taken (ISO; default today).")
@click.option("--note", help="Anything else worth keeping with it.")
@click.option("--expect-version", type=int, default=None,
              help="Fail instead of applying on top when the case changed since this version.")
def rectify_cmd(config_path, case, status, measure, by, day, note, expect_version) -> None:
    """Record the rectification (整改) of a confirmed case: its status, the measure actually
    taken and the day. Confirming a case is not rectifying it: the ledger and the summary
    count a problem as rectified only from here. Kept in the case's history; exit 2 for a
    case that is not a confirmed problem, 4 when it changed since --expect-version."""
    from emraudit.rectification import rectify_case
    from emraudit.store import Store

    cfg = get_config(config_path)
    row = rectify_case(Store(cfg.store_url), case, status, by=by, measure=measure,
                       day=day.day if day else None, note=note, tz=cfg.tz,
                       expected_version=expect_version)
    click.echo(f"case {row['case_id']} rectification: {row['rectification_status']} "
               f"({row['rectification_date']}) by {by} (version {row['version']})")


def register(group: click.Group) -> None:
    group.add_command(cases_group)
