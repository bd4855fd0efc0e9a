"""snoop.*: VIP, coworker, family (surname weighed by rarity, never alone), neighbour, self,
deceased, sealed records; the explanation engine gates all but self and watchlist; a look-up
by name followed by opening the record raises the severity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, make_ctx, run
from emraudit.detectors.surnames import is_common, surname, surname_bits

WINDOW = ("2025-07-22", "2025-07-23")


def stub_explain(ctx, explained=()):
    e = ctx.events[ctx.events["patient_id"].notna()]
    df = e[["event_id", "user_id", "patient_id", "ts", "in_window"]].copy()
    df["explained"] = df["event_id"].isin(list(explained)).to_numpy()
    df["explanation"] = np.where(df["explained"], "own_relation", "")
    df["detail"] = ""
    ctx.memo["explain"] = df
    return ctx


STAFF = [
    {"user_id": "u1", "name": "王伟", "role": "nurse", "department": "ICU",
     "address": "北京市朝阳区建国路 1号 2-301", "phone": "138-0000-0001"},
    {"user_id": "u2", "name": "欧阳明", "role": "physician", "department": "ICU",
     "address": "北京市海淀区中关村大街5号101", "phone": "13900000002", "patient_id": "P_SELF"},
    {"user_id": "u3", "name": "李娜", "role": "physician", "department": "ER"},
]


def ctx_with(events, patients, explained=(), contacts=None, users=STAFF, window=WINDOW):
    ctx = make_ctx(events, window=window, users=users, patients=patients,
                   patient_contacts=contacts)
    return stub_explain(ctx, explained)


# --------------------------------------------------------------------------- surnames
def test_surname_table_and_compound_names():
    assert surname("王伟") == "王" and surname("欧阳明") == "欧阳"
    assert surname("Smith, John") == "smith" and surname("John Smith") == "smith"
    assert is_common("王") and not is_common("欧阳")
    assert surname_bits("欧阳") > surname_bits("王") + 5


# --------------------------------------------------------------------------- vip
def test_vip_unexplained_fires_explained_does_not():
    pats = [{"patient_id": "V1", "vip": True}, {"patient_id": "N1"}]
    e1 = ev("u3", "V1", "2025-07-22 10:00")
    e2 = ev("u3", "N1", "2025-07-22 10:05")
    f = run("snoop.vip", ctx_with([e1, e2], pats))
    assert list(f["patient_id"]) == ["V1"] and f.iloc[0]["severity"] == "high"
    assert f.iloc[0]["rectification_item"] == "8"
    assert run("snoop.vip", ctx_with([e1, e2], pats, explained=[e1["event_id"]])).empty


def test_lookup_by_name_then_open_raises_severity():
    pats = [{"patient_id": "V1", "vip": True}]
    q = ev("u3", "V1", "2025-07-22 10:00", action="query")
    o = ev("u3", "V1", "2025-07-22 10:03")
    f = run("snoop.vip", ctx_with([q, o], pats))
    assert f.iloc[0]["severity"] == "critical"
    assert f.iloc[0]["evidence"]["name_lookup_then_open"] is True
    late = ev("u3", "V1", "2025-07-22 11:00")
    f = run("snoop.vip", ctx_with([ev("u3", "V1", "2025-07-22 10:00", action="query"), late],
                                  pats))
    assert f.iloc[0]["severity"] == "high"
    assert f.iloc[0]["evidence"]["name_lookup_then_open"] is False


def test_lookback_only_access_gives_no_finding():
    pats = [{"patient_id": "V1", "vip": True}]
    f = run("snoop.vip", ctx_with([ev("u3", "V1", "2025-07-20 10:00")], pats))
    assert f.empty


# --------------------------------------------------------------------------- coworker / self
def test_coworker_and_self():
    pats = [{"patient_id": "P_U1", "employee_user_id": "u1"}, {"patient_id": "P_SELF"}]
    evs = [ev("u2", "P_U1", "2025-07-22 10:00", event_id="cw"),   # u2 reads u1's record
           ev("u1", "P_U1", "2025-07-22 10:10", event_id="own"),  # u1 reads own record
           ev("u2", "P_SELF", "2025-07-22 10:20", event_id="own2")]  # via users.patient_id
    ctx = ctx_with(evs, pats, explained=["own", "own2"])
    cw = run("snoop.coworker", ctx)
    assert list(cw["user_id"]) == ["u2"] and list(cw["patient_id"]) == ["P_U1"]
    assert cw.iloc[0]["severity"] == "high"            # same department
    assert cw.iloc[0]["evidence"]["same_department"] is True
    me = run("snoop.self", ctx)                        # fires although explained
    assert sorted(zip(me["user_id"], me["patient_id"])) == [("u1", "P_U1"), ("u2", "P_SELF")]
    ctx = ctx_with(evs, pats, explained=["cw", "own", "own2"])
    assert run("snoop.coworker", ctx).empty


# --------------------------------------------------------------------------- family / neighbour
def test_common_surname_alone_is_not_family():
    pats = [{"patient_id": "F1", "name": "王芳", "address": "上海市浦东新区世纪大道100号"}]
    ctx = ctx_with([ev("u1", "F1", "2025-07-22 10:00")], pats)
    assert run("snoop.family", ctx).empty
    assert run("snoop.neighbor", ctx).empty


def test_same_surname_and_address_is_family_weighted_by_rarity():
    pats = [{"patient_id": "F1", "name": "王芳", "address": "北京市朝阳区建国路1号2-301"},
            {"patient_id": "F2", "name": "欧阳娟", "address": "北京市海淀区 中关村大街 5号 101"}]
    evs = [ev("u1", "F1", "2025-07-22 10:00"), ev("u2", "F2", "2025-07-22 11:00")]
    f = run("snoop.family", ctx_with(evs, pats)).set_index("user_id")
    assert set(f.index) == {"u1", "u2"}
    assert f.loc["u1", "severity"] == "medium"         # 王: common
    assert f.loc["u2", "severity"] == "high"           # 欧阳: rare
    assert f.loc["u2", "score"] > f.loc["u1", "score"]
    assert f.loc["u1", "evidence"]["surname_common"] is True
    assert run("snoop.neighbor", ctx_with(evs, pats)).empty   # family, not neighbour


def test_same_address_other_surname_is_neighbour():
    pats = [{"patient_id": "N1", "name": "赵敏", "address": "北京市朝阳区建国路1号2－301"}]
    ctx = ctx_with([ev("u1", "N1", "2025-07-22 10:00")], pats)
    assert run("snoop.family", ctx).empty
    f = run("snoop.neighbor", ctx)
    assert list(f["patient_id"]) == ["N1"]


def test_declared_contact_matching_staff_name_and_phone_is_family():
    pats = [{"patient_id": "C1", "name": "赵敏"}]
    contacts = [{"patient_id": "C1", "name": "王伟", "relation": "spouse",
                 "phone": "+86 13800000001"}]
    ctx = ctx_with([ev("u1", "C1", "2025-07-22 10:00")], pats, contacts=contacts)
    f = run("snoop.family", ctx)
    assert len(f) == 1 and f.iloc[0]["severity"] == "high"
    assert f.iloc[0]["evidence"]["declared_relation"] == "spouse"
    # same name, different phone: a namesake, not the staff member
    contacts[0]["phone"] = "13700000009"
    ctx = ctx_with([ev("u1", "C1", "2025-07-22 10:00")], pats, contacts=contacts)
    assert run("snoop.family", ctx).empty


def test_address_shared_by_many_patients_is_not_evidence():
    addr = "北京市朝阳区建国路1号2-301"
    pats = [{"patient_id": f"X{i}", "name": "赵敏", "address": addr} for i in range(6)]
    ctx = ctx_with([ev("u1", "X0", "2025-07-22 10:00")], pats)
    assert run("snoop.neighbor", ctx).empty
    f = run("snoop.neighbor", ctx_with([ev("u1", "X0", "2025-07-22 10:00")], pats[:5]))
    assert len(f) == 1


def test_explained_family_access_is_not_reported():
    pats = [{"patient_id": "F1", "name": "王芳", "address": "北京市朝阳区建国路1号2-301"}]
    e = ev("u1", "F1", "2025-07-22 10:00")
    assert run("snoop.family", ctx_with([e], pats, explained=[e["event_id"]])).empty


# --------------------------------------------------------------------------- deceased
@pytest.mark.parametrize("ts,fires", [("2025-07-20 23:59", False), ("2025-07-21 00:00", True)])
def test_deceased_after_n_days(ts, fires):
    pats = [{"patient_id": "D1", "deceased_date": "2025-06-21"}]
    f = run("snoop.deceased", ctx_with([ev("u3", "D1", ts)], pats,
                                       window=("2025-07-20", "2025-07-23")))
    assert (len(f) == 1) is fires
    if fires:
        assert f.iloc[0]["evidence"]["days_after_death"] == 30


def test_deceased_explained_access_is_not_reported():
    pats = [{"patient_id": "D1", "deceased_date": "2025-01-01"}]
    e = ev("u3", "D1", "2025-07-22 10:00")
    assert run("snoop.deceased", ctx_with([e], pats, explained=[e["event_id"]])).empty


# --------------------------------------------------------------------------- watchlist
def test_watchlist_team_member_vs_outsider():
    pats = [{"patient_id": "S1", "watch": True, "watch_team": "u1; u2"}]
    evs = [ev("u1", "S1", "2025-07-22 10:00", event_id="team"),
           ev("u3", "S1", "2025-07-22 10:05", event_id="out_explained"),
           ev("u3", "S1", "2025-07-23 09:00", event_id="out_next_day")]
    ctx = ctx_with(evs, pats, explained=["team", "out_explained"],
                   window=("2025-07-22", "2025-07-24"))
    f = run("snoop.watchlist", ctx).sort_values("start")
    assert list(f["user_id"]) == ["u3", "u3"]
    assert list(f["severity"]) == ["high", "critical"]
    assert f.iloc[0]["evidence"]["watch_team"] == ["u1", "u2"]
    assert [a["unexplained"] for a in f["message_args"]] == [False, True]
    assert f.iloc[1]["summary"].endswith("without being on its team and with no care relation")


MINIMAL = {
    "events only": {},
    "bare patients": {"patients": [{"patient_id": "p1"}]},
    "bare users and flagged patient": {"users": [{"user_id": "u1"}],
                                       "patients": [{"patient_id": "p1", "vip": "1",
                                                     "watch": "1"}]},
    "bare roster, relations, contacts": {
        "shifts": [{"user_id": "u1", "start": "2025-07-21 08:00", "end": "2025-07-21 17:00"}],
        "care_relations": [{"patient_id": "p1", "kind": "admission", "start": "2025-07-20"}],
        "patient_contacts": [{"patient_id": "p1"}], "patients": [{"patient_id": "p1"}],
        "users": [{"user_id": "u1"}]},
}
MINE = ("bulk.off_hours", "bulk.volume", "copy.bulk_export", "snoop.vip", "snoop.coworker",
        "snoop.family", "snoop.neighbor", "snoop.self", "snoop.deceased", "snoop.watchlist",
        "btg.unjustified")


@pytest.mark.parametrize("variant", list(MINIMAL))
def test_every_detector_runs_on_minimal_tables(variant):
    """Optional columns absent, optional tables absent: each detector runs or is skipped by
    its `needs`, never crashes."""
    from emraudit.detectors.registry import get
    evs = [ev("u1", f"p{i}", f"2025-07-22 02:{i:02d}") for i in range(15)] + [
        ev("u1", "p1", "2025-07-22 03:00", action="break_glass"),
        ev("u1", "p2", "2025-07-22 03:05", action="print", record_count=60),
        ev("u1", "p3", "2025-07-22 03:06", action="export", record_count=60),
        ev("u1", "p4", "2025-07-22 03:07", action="copy", record_count=60),
        ev("u1", None, "2025-07-22 03:08", action="login")]
    for det_id in MINE:
        ctx = make_ctx(evs, window=("2025-07-22", "2025-07-24"), **MINIMAL[variant])
        if any(ctx.table(t) is None for t in get(det_id).needs):
            continue
        f = run(det_id, ctx)
        assert set(f.columns) >= {"finding_id", "event_ids", "summary"}


def test_same_surname_and_phone_is_family_and_a_switchboard_is_not():
    pats = [{"patient_id": "F1", "name": "王芳", "phone": "010-13800000001"}]
    # digits differ only by a leading 010: not the same number
    assert run("snoop.family", ctx_with([ev("u1", "F1", "2025-07-22 10:00")], pats)).empty
    pats = [{"patient_id": "F1", "name": "王芳", "phone": "13800000001"}]
    f = run("snoop.family", ctx_with([ev("u1", "F1", "2025-07-22 10:00")], pats))
    assert len(f) == 1 and f.iloc[0]["severity"] == "high"
    assert "same_phone" in f.iloc[0]["evidence"]["family_basis"]
    assert f.iloc[0]["message_args"]["family"] == f.iloc[0]["evidence"]["family_basis"]
    from emraudit.reports.masking import Masker
    from emraudit.reports.text import finding_sentence
    assert "亲属依据：同姓、同一电话" in finding_sentence(f.iloc[0].to_dict(), "zh", Masker())
    many = [{"patient_id": f"F{i}", "name": "王芳", "phone": "13800000001"} for i in range(6)]
    assert run("snoop.family", ctx_with([ev("u1", "F1", "2025-07-22 10:00")], many)).empty


def test_name_and_address_normalizing_in_bulk_matches_one_by_one():
    import unicodedata
    from emraudit.detectors.snoop import nfkc, normalize_names
    from emraudit.detectors.surnames import normalize_name
    values = ["北京市 朝阳区 1号", "ＡＢＣ１２３", "上海市，徐汇区", None, "", "Ｍａｒｙ  Smith",
              "欧阳　小明", "①号楼", "\u2028x", "王 小明"]
    s = pd.Series(values, dtype="string")
    assert nfkc(s.fillna("")).tolist() == \
        [unicodedata.normalize("NFKC", v or "") for v in values]
    assert normalize_names(s).tolist() == [normalize_name(v) for v in values]
    assert normalize_name(pd.NA) == ""      # not "<na>": missing names never match each other


def test_address_pattern_strips_what_pythons_would():
    import re
    from emraudit.detectors.snoop import PY_SPACES, normalize_address
    py = re.compile(r"[\s,，.。、;；:：\-—_#＃()（）\[\]【】/\\'\"“”]+")
    assert set(PY_SPACES) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    values = ["北京市 朝阳区 1号", "a\u3000b\u2028c\x85d\x1ce", "上海市，徐汇区（东）[2]-3#", "x'y\"z“w”",
              "路/巷\\弄", "A—B_C；D：E", "  ", None, "ＡＢ Ｃ"]
    s = pd.Series(values, dtype="string")
    got = normalize_address(s)
    import unicodedata
    ref = [py.sub("", unicodedata.normalize("NFKC", v or "").lower()) or None for v in values]
    assert [None if pd.isna(v) else v for v in got] == ref
