"""The rights report (`emraudit report rights`): who may read what, and who should not.

What an inspector asks first under item （九）: for each department and role, what its staff
can read; who holds each sensitive class (精神, 传染病/HIV, 生殖 …) and through which grant or
role, approved or not, and when they last used it; what changed since the last report (a
snapshot is kept in the store); and the problems the rights detectors found, as ledger rows
with the four clarities (item, measure, responsible department, deadline). HTML in the
report language with an XLSX workbook beside it. Staff are named (who may read is the point);
patients appear only inside findings and are masked like every report.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from emraudit import dates
from emraudit.config import Config
from emraudit.entitlements import grant_held_at, held_at, holdings, in_post
from emraudit.errors import UserError
from emraudit.lake import Lake
from emraudit.reports import data, files, rights_snapshot
from emraudit.reports.i18n import N_, Lang, make_env
from emraudit.reports.labels import ROLE, SEVERITY, STATUS, detector_info, item_info, label
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _csp, _s, _static
from emraudit.access_rights import PERMISSIONS
from emraudit.reports.rights_text import (CLASS, VIA, classes_text, permissions_text,
                                          right_text)
from emraudit.reports.text import finding_sentence
from emraudit.store import Store, cases, findings, rights_usage

log = logging.getLogger("emraudit.reports")

def parse_as_of(value, tz: str) -> pd.Timestamp:
    """--as-of: a day means the end of that day; a time is taken as it is; none: now."""
    if value is None:
        return pd.Timestamp.now(tz=tz).floor("s")
    return dates.parse(value, "--as-of").end(tz)


def _perm_order(perms) -> list[str]:
    return sorted(perms, key=lambda p: (PERMISSIONS.index(p) if p in PERMISSIONS else 99, p))


def _role_label(code, lang: Lang) -> str:
    return label(ROLE, code, lang) if _s(code) else ""


def _active(users: pd.DataFrame | None, asof) -> pd.DataFrame:
    if users is None or not len(users):
        return pd.DataFrame(columns=["user_id", "name", "role", "department"])
    u = users.drop_duplicates("user_id", keep="last")
    return u[in_post(u, asof)]


def _by_unit(held: pd.DataFrame, users: pd.DataFrame, lang: Lang) -> list[dict]:
    """Per department and role: the accounts, the rights all of them hold, the sensitive
    classes they reach (holders of each), and the rights only some hold."""
    if not len(users):
        return []
    u = users[["user_id", "role", "department"]].rename(columns={"role": "user_role"})
    u = u.assign(department=u["department"].astype("string").fillna("—"),
                 user_role=u["user_role"].astype("string").fillna("other"))
    size = u.groupby(["department", "user_role"]).size()
    h = held.merge(u, on="user_id")
    h = h.assign(scope=h["scope"].fillna("")).drop_duplicates(
        ["user_id", "permission", "record_class", "scope"])
    count = h.groupby(["department", "user_role", "permission", "record_class",
                       "scope"]).size()
    rows = []
    for (dep, role), n in size.sort_index().items():
        try:
            part = count.loc[(dep, role)]
        except KeyError:
            part = pd.Series(dtype=int)
        common, some, classes = {}, {}, {}
        for (perm, cls, scope), k in part.items():
            if cls:
                for c in cls.split(";"):
                    classes[c] = max(classes.get(c, 0), int(k))
            elif k == n:
                common.setdefault(scope, []).append(perm)     # one line per scope
            else:
                some.setdefault((scope, int(k)), []).append(perm)
        common = [right_text({"permission": ";".join(_perm_order(p)), "scope": sc}, lang)
                  for sc, p in sorted(common.items())]
        some = [f"{right_text({'permission': ';'.join(_perm_order(p)), 'scope': sc}, lang)} "
                f"{k}/{n}" for (sc, k), p in sorted(some.items())]
        rows.append({"department": dep, "role": _role_label(role, lang), "accounts": int(n),
                     "common": common, "some": some,
                     "classes": [f"{classes_text(c, lang)} {k}/{n}"
                                 for c, k in sorted(classes.items())]})
    return rows


def _definitions(roles, grants, held, asof, lang: Lang) -> list[dict]:
    """Each role's definition (roles table) and each grant to a role, with its holders."""
    holders = held[held["via"].isin(["role", "role_grant"])].groupby("role")["user_id"] \
        .nunique() if len(held) else pd.Series(dtype=int)
    out = []
    if roles is not None and len(roles):
        for r in roles.to_dict("records"):
            out.append({"role": _role_label(r["role"], lang) or str(r["role"]),
                        "what": right_text({"permission": r.get("permissions"),
                                            "record_class": r.get("record_class"),
                                            "scope": r.get("scope")}, lang),
                        "source": lang.gettext(N_("role definition")),
                        "approved_by": _s(r.get("approved_by")),
                        "sensitive": bool(_s(r.get("record_class"))),
                        "holders": int(holders.get(r["role"], 0))})
    if grants is not None and len(grants) and "user_id" in grants.columns:
        g = grants[grants["user_id"].isna() & grants["permission"].notna()
                   & grant_held_at(grants, asof)]
        for r in g.to_dict("records"):
            out.append({"role": _role_label(r["role"], lang) or str(r["role"]),
                        "what": right_text(r, lang),
                        "source": lang.gettext(N_("grant %(id)s"), id=str(r["grant_id"])),
                        "approved_by": _s(r.get("approved_by")),
                        "sensitive": bool(_s(r.get("record_class"))),
                        "holders": int(holders.get(r["role"], 0))})
    return sorted(out, key=lambda d: (not d["sensitive"], d["role"], d["what"]))


def _last_used(store: Store, tz: str) -> dict[tuple[str, str], str]:
    """(user, class) -> the day of the last use of any right on the class (rights_usage)."""
    with store.engine.connect() as c:
        rows = c.execute(sa.select(rights_usage.c.user_id, rights_usage.c.record_class,
                                   sa.func.max(rights_usage.c.last_used))
                         .where(rights_usage.c.permission != "*")
                         .group_by(rights_usage.c.user_id, rights_usage.c.record_class)).all()
    out = {}
    for user, cls, last in rows:
        try:
            out[(user, cls)] = pd.Timestamp(last).tz_convert(tz).strftime("%Y-%m-%d")
        except (ValueError, TypeError):
            continue
    return out


def _class_holders(held, users, store, tz, lang: Lang, fmt: Fmt) -> list[dict]:
    cls_rows = held[held["record_class"] != ""]
    if not len(cls_rows):
        return []
    info = users.drop_duplicates("user_id", keep="last").set_index("user_id") \
        if users is not None and len(users) else pd.DataFrame()
    used = _last_used(store, tz)
    out = []
    x = cls_rows.assign(record_class=cls_rows["record_class"].str.split(";")) \
        .explode("record_class")
    for cls, grp in x.groupby("record_class", sort=False):
        rows = []
        for (user, via, role, gid), g in grp.groupby(
                ["user_id", "via", grp["role"].fillna(""), grp["grant_id"].fillna("")],
                sort=True):
            r = g.iloc[0]
            u = info.loc[user] if user in info.index else {}
            how = label(VIA, via, lang)
            if role:
                how += f" {_role_label(role, lang)}"
            rows.append({"user": user, "name": _s(u.get("name")) if len(u) else "",
                         "department": _s(u.get("department")) if len(u) else "",
                         "role": _role_label(u.get("role"), lang) if len(u) else "",
                         "via": how, "grant": gid,
                         "permissions": permissions_text(";".join(_perm_order(
                             set(g["permission"]))), lang),
                         "since": fmt.day(r["start"]) if pd.notna(r["start"]) else "",
                         "until": fmt.day(r["end"]) if pd.notna(r["end"]) else "",
                         "approved": bool(g["approved"].any()),
                         "last_used": used.get((user, cls), "")})
        out.append({"code": cls, "label": classes_text(cls, lang),
                     "known": cls in CLASS, "holders": len({r["user"] for r in rows}),
                     "rows": rows})
    return sorted(out, key=lambda d: (not d["known"], d["code"]))


def _changes(prev, now_state: dict, users, lang: Lang, fmt: Fmt) -> dict | None:
    """The changes since the last report, labelled (None when there was none)."""
    if prev is None:
        return None
    old, taken = prev
    ch = rights_snapshot.changes(old, now_state)
    names = dict(zip(users["user_id"].astype(str), users["name"].astype("string").fillna(""))) \
        if users is not None and len(users) and "name" in users.columns else {}

    def who(uid):
        return f"{uid} {names.get(uid, '')}".strip() if uid else ""

    def grant_row(g):
        return {"grant": g["grant_id"], "who": who(g["user_id"]) or
                lang.gettext(N_("role %(role)s"), role=_role_label(g["role"], lang)),
                "what": right_text(g, lang) if g["permission"] else
                lang.gettext(N_("role %(role)s"), role=_role_label(g["role"], lang))}
    return {
        "since": fmt.minute(taken), "since_as_of": fmt.minute(old.get("as_of")),
        "grants_added": [grant_row(g) for g in ch["grants_added"]],
        "grants_ended": [grant_row(g) for g in ch["grants_ended"]],
        "class_gained": [{"who": who(r["user_id"]), "cls": classes_text(r["record_class"], lang)}
                         for r in ch["class_gained"]],
        "class_lost": [{"who": who(r["user_id"]), "cls": classes_text(r["record_class"], lang)}
                       for r in ch["class_lost"]],
        "roles_added": [{"role": _role_label(r["role"], lang) or r["role"],
                         "what": right_text({"permission": r["permissions"],
                                             "record_class": r["record_class"],
                                             "scope": r["scope"]}, lang)}
                        for r in ch["roles_added"]],
        "roles_removed": [{"role": _role_label(r["role"], lang) or r["role"],
                           "what": right_text({"permission": r["permissions"],
                                               "record_class": r["record_class"],
                                               "scope": r["scope"]}, lang)}
                          for r in ch["roles_removed"]],
        "count": sum(len(v) for v in ch.values()),
    }


def _ledger(store: Store, users, config: Config, lang: Lang, masker: Masker,
            fmt: Fmt) -> list[dict]:
    """The rights detectors' live findings as ledger rows (四个明确)."""
    f = store.read_findings(findings.c.detector.like("rights.%"))
    if not len(f):
        return []
    status = {}
    ids = [c for c in f["case_id"].dropna().unique()]
    for i in range(0, len(ids), 500):
        with store.engine.connect() as c:
            for cid, st, disp in c.execute(sa.select(cases.c.case_id, cases.c.status,
                                                     cases.c.disposition)
                                           .where(cases.c.case_id.in_(ids[i:i + 500]))):
                status[cid] = (st, disp)
    dept = dict(zip(users["user_id"].astype(str), users["department"].astype("string")
                    .fillna(""))) if users is not None and len(users) else {}
    names = dict(zip(users["user_id"].astype(str), users["name"].astype("string").fillna(""))) \
        if users is not None and len(users) and "name" in users.columns else {}
    item = item_info("9", lang)
    rows = []
    sev_rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    f = f.assign(_r=f["severity"].map(sev_rank).fillna(4)).sort_values(
        ["_r", "detector", "start", "finding_id"], kind="stable")
    for n, r in enumerate(f.to_dict("records"), start=1):       # one per finding
        text = finding_sentence(r, lang, masker)
        det = detector_info(r["detector"], lang)
        found = pd.Timestamp(r["start"]) if _s(r["start"]) else None
        st = status.get(r.get("case_id"), ("open", None))
        user = str(r["user_id"])
        rows.append({
            "no": n, "item": item["zh"], "detector": det["name"],
            "severity": label(SEVERITY, r["severity"], lang), "sev_key": r["severity"],
            "description": text, "who": f"{user} {names.get(user, '')}".strip(),
            "department": dept.get(user, ""), "found": fmt.day(r["start"]),
            "measure": det["measure"],
            "deadline": (found.tz_convert(config.tz) + timedelta(days=config.reports
                                                                  .deadline_days))
            .strftime("%Y-%m-%d") if found is not None else "",
            "responsible": config.reports.responsible or "",
            "status": label(STATUS, st[0], lang), "case_id": _s(r.get("case_id")),
            "finding_id": r["finding_id"]})
    return rows


def build_rights_report(config: Config, store: Store, lake: Lake, *, as_of: str | None = None,
                        lang: Lang, masker: Masker) -> tuple[dict, dict]:
    """The report's model and the state to keep as the next report's baseline."""
    tz = config.tz
    fmt = Fmt(tz)
    asof = parse_as_of(as_of, tz)
    committed = store.committed_runs()
    users = data.snapshot(lake, committed, "users")
    grants = lake.read_snapshot("grants", committed)
    roles = lake.read_snapshot("roles", committed)
    if grants is None and roles is None:
        raise UserError("no grants or roles table has been ingested: add [sources.grants] "
                        "(and [sources.roles]) to the configuration, e.g. with the "
                        "his-grants-zh profile, and run `emraudit ingest`")
    h = holdings(users, grants, roles, tz)
    held = held_at(h, asof)
    active = _active(users, asof)
    held_active = held[held["user_id"].isin(set(active["user_id"].astype(str)))] \
        if users is not None else held
    grants_held = grants[grant_held_at(grants, asof).to_numpy()] \
        if grants is not None and len(grants) else grants
    now_state = rights_snapshot.state(held, grants_held, roles, asof)
    ledger = _ledger(store, users, config, lang, masker, fmt)
    classes = _class_holders(held_active, users, store, tz, lang, fmt)
    model = {
        "as_of": fmt.minute(asof),
        "kpi": {"accounts": int(len(active)),
                "grants": int(len(grants_held)) if grants_held is not None else 0,
                "roles": int(roles["role"].nunique()) if roles is not None else 0,
                "class_holders": int(held_active.loc[held_active["record_class"] != "",
                                                     "user_id"].nunique()),
                "findings": len(ledger)},
        "units": _by_unit(held_active, active, lang),
        "definitions": _definitions(roles, grants, held, asof, lang),
        "classes": classes,
        "changes": _changes(rights_snapshot.last(store), now_state, users, lang, fmt),
        "ledger": ledger, "has_grants": grants is not None,
        "masked": masker.enabled,
    }
    return model, now_state


def _xlsx(model: dict, lang: Lang, title: str) -> bytes:
    from openpyxl import Workbook
    from emraudit.reports.ledger import write_sheet

    _ = lang.gettext
    wb = Workbook()
    ws = wb.active
    ws.title = _("Departments and roles")[:31]
    write_sheet(ws, [_("department"), _("role"), _("accounts"), _("what all of them can read"),
                     _("sensitive classes (holders)"), _("held by some")],
                [[u["department"], u["role"], u["accounts"], "\n".join(u["common"]),
                  "\n".join(u["classes"]), "\n".join(u["some"])] for u in model["units"]],
                [16, 14, 8, 40, 30, 40])
    write_sheet(wb.create_sheet(_("Sensitive-class holders")[:31]),
                [_("class"), _("account"), _("name"), _("department"), _("through"),
                 _("grant"), _("permissions"), _("since"), _("until"), _("approved"),
                 _("last used")],
                [[c["label"], r["user"], r["name"], r["department"], r["via"], r["grant"],
                  r["permissions"], r["since"], r["until"],
                  _("yes") if r["approved"] else _("no"), r["last_used"]]
                 for c in model["classes"] for r in c["rows"]],
                [14, 10, 10, 14, 20, 12, 16, 11, 11, 8, 11])
    write_sheet(wb.create_sheet(_("Rights problem ledger")[:31]),
                [_("No."), _("Rectification item"), _("Problem description"),
                 _("Staff involved (ID / name / department)"), _("Found"),
                 _("Rectification measure"), _("Responsible department"),
                 _("Responsible person"), _("Deadline"), _("Rectification status")],
                [[r["no"], r["item"], r["description"], f"{r['who']} / {r['department']}",
                  r["found"], r["measure"], r["department"], r["responsible"], r["deadline"],
                  r["status"]] for r in model["ledger"]],
                [6, 22, 50, 26, 11, 40, 14, 12, 11, 10])
    wb.properties.title = title
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_rights_report(config: Config, store: Store, lake: Lake, *, out: Path | None = None,
                        lang: str | None = None, as_of: str | None = None,
                        unmask: bool = False) -> tuple[Path, Path]:
    """Write the HTML report and the XLSX beside it; keep this state as the next report's
    baseline. Returns both paths."""
    lg = Lang(lang or config.reports.lang)
    masker = Masker(enabled=config.reports.mask_patients and not unmask)
    model, now_state = build_rights_report(config, store, lake, as_of=as_of, lang=lg,
                                           masker=masker)
    day = model["as_of"][:10]
    if out is None:
        folder = files.private_dir(files.private_dir(config.reports_dir) / "rights")
        out = folder / f"rights-{day}.html"
    else:
        out = Path(out)
        if not out.parent.exists():
            files.private_dir(out.parent)
    env = make_env(lg)
    js = _static("report.js")
    html = env.get_template("rights.html").render(
        site=config.site.name, css=_static("report.css"), csp=_csp(js),
        masked=model["masked"], scan={}, window=("", ""), generated=Fmt(config.tz).now(),
        r=model)
    files.write_text(out, html)
    xlsx = out.with_suffix(".xlsx")
    files.write_bytes(xlsx, _xlsx(model, lg, f"{config.site.name} {day}"))
    rights_snapshot.save(store, now_state, unmasked=not masker.enabled)
    log.info("rights report written: %d units, %d findings", len(model["units"]),
             len(model["ledger"]))
    return out, xlsx


__all__ = ["write_rights_report", "build_rights_report"]
