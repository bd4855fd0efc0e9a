"""cred.* findings as data (issue 23, from every mutant of detectors/cred.py): what each of the
seven credential detectors writes for given input (severity, event ids, message arguments,
evidence and the thresholds in force), their threshold and window edges on both sides, empty
and one-row inputs, and the helpers the detectors share (addresses, shared hosts, terminals
and their places, campus spellings, the per-account order), checked against direct counts."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from detector_frames import ev, frame, make_ctx, run
from emraudit.detectors import cred as C
from emraudit.detectors.registry import all_detectors

W = ("2025-07-07", "2025-07-14")            # Monday to Monday, Asia/Shanghai
WS = [{"workstation": "A1", "ip": "10.1.1.11", "department": "心内科", "campus": "本部",
       "location": "心内科护士站"},
      {"workstation": "A2", "ip": "10.1.1.12", "department": "心内科", "campus": "本部",
       "location": "心内科医生办"},
      {"workstation": "B1", "ip": "10.1.2.11", "department": "骨科", "campus": "本部",
       "location": "骨科护士站"},
      {"workstation": "C1", "ip": "10.1.3.11", "department": "儿科", "campus": "本部",
       "location": "儿科护士站"},
      {"workstation": "D1", "ip": "10.1.4.11", "department": "眼科", "campus": "本部",
       "location": "眼科护士站"},
      {"workstation": "E1", "ip": "10.2.1.11", "department": "骨科", "campus": "东院",
       "location": "东院骨科"},
      {"workstation": "OR1", "ip": "10.1.9.11", "department": "手术室", "campus": "本部",
       "location": "手术室3"},
      {"workstation": "VDI-01", "ip": "10.9.0.5", "department": "信息科", "campus": "本部",
       "location": "机房"}]
IP = {w["workstation"]: w["ip"] for w in WS}


def at(user, ts, ws, action="view", patient="p1", **kw):
    """An event of `user` at workstation `ws` (its address too)."""
    return ev(user, patient if action not in ("login", "logout") else None, ts, action,
              workstation=ws, ip=IP[ws], **kw)


def cred(det, events, over=None, **kw):
    kw.setdefault("window", W)
    kw.setdefault("workstations", WS)
    return run(det, make_ctx(events, **kw), **(over or {}))


def ids(events):
    return [e["event_id"] for e in events]


def ctx_of(events=(), **kw):
    kw.setdefault("window", W)
    return make_ctx(list(events), **kw)


# =========================================================================== shared helpers

def test_ip_ints_are_ipv4_numbers_and_minus_one_for_anything_else():
    ip = pd.Series(["10.0.0.1", " 10.0.0.2 ", None, "fd00::1", "bad", "10.0.0.1",
                    "0.0.0.0", "255.255.255.255"], dtype="string")
    assert C._ip_ints(ip).tolist() == [167772161, 167772162, -1, -1, -1, 167772161,
                                       0, 4294967295]
    assert C._ip_ints(pd.Series([], dtype="string")).tolist() == []


def _mask(rows, ranges=(), names=()):
    return C._shared_mask(frame("access_log", rows), list(ranges), list(names)).tolist()


def test_shared_mask_ranges_include_both_ends_of_the_network():
    rows = [ev("u", "p1", "2025-07-08 10:00", ip=a) for a in
            ("10.9.0.255", "10.9.1.0", "10.9.1.1", "10.9.1.255", "10.9.2.0", None, "x",
             "fd00::5")]
    assert _mask(rows, ["10.9.1.0/24"]) == [False, True, True, True, False, False, False,
                                            False]
    # host bits set are accepted (strict=False); an IPv6 range matches no IPv4 address and
    # no IPv6 one either (shared hosts are IPv4)
    assert _mask(rows, ["10.9.1.7/24"]) == [False, True, True, True, False, False, False,
                                            False]
    assert _mask(rows, ["fd00::/8"]) == [False] * 8
    assert _mask(rows, ["fd00::/8", "10.9.2.0/32"]) == [False] * 4 + [True] + [False] * 3
    assert _mask(rows, ["10.9.0.255/32", "10.9.2.0/31"]) == \
        [True, False, False, False, True, False, False, False]
    assert _mask(rows) == [False] * 8


def test_shared_mask_names_are_shell_patterns_case_sensitive_and_a_missing_name_is_none():
    rows = [ev("u", "p1", "2025-07-08 10:00", workstation=w) for w in
            ("CITRIX-01", "citrix-02", "WARD-1", "CITRIX-01")] + \
        [ev("u", "p1", "2025-07-08 10:00")]
    assert _mask(rows, names=["CITRIX-*"]) == [True, False, False, True, False]
    assert _mask(rows, names=["WARD-?", "citrix*"]) == [False, True, True, False, False]
    assert _mask(rows, names=[]) == [False] * 5
    # without an address column a range shares nothing
    assert _mask(rows, ["0.0.0.0/0"]) == [False] * 5
    # without the column nothing is shared by name; a range still applies
    rows = [ev("u", "p1", "2025-07-08 10:00", ip="10.9.0.5"), ev("u", "p1", "2025-07-08 10:00")]
    assert _mask(rows, ["10.9.0.0/24"], ["*"]) == [True, False]


def test_shared_mask_names_and_ranges_add_up():
    rows = [ev("u", "p1", "2025-07-08 10:00", workstation="VDI-1", ip="10.1.1.1"),
            ev("u", "p1", "2025-07-08 10:00", workstation="A1", ip="10.9.0.5"),
            ev("u", "p1", "2025-07-08 10:00", workstation="A1", ip="10.1.1.1")]
    assert _mask(rows, ["10.9.0.0/24"], ["VDI-*"]) == [True, True, False]


def test_check_ranges_returns_the_values_or_names_the_bad_one():
    # host bits set are accepted, as the shared-host mask reads them
    assert C._check_ranges(["10.0.0.0/8", "fd00::/8", "10.1.1.1", "10.9.1.7/24"]) == \
        ["10.0.0.0/8", "fd00::/8", "10.1.1.1", "10.9.1.7/24"]
    assert C._check_ranges([]) == []
    with pytest.raises(ValueError, match=r"^not an IP range: '10\.300\.0\.0/16' \(expected "
                                         r"CIDR such as 10\.9\.0\.0/24\)$"):
        C._check_ranges(["10.0.0.0/8", "10.300.0.0/16"])


@pytest.mark.parametrize("det", ["cred.concurrent_use", "cred.impossible_travel",
                                 "cred.off_duty_use", "cred.external_access"])
def test_every_detector_with_shared_hosts_refuses_a_bad_range(det):
    cls = all_detectors()[det]
    with pytest.raises(ValueError, match="not an IP range: 'x'"):
        cls(shared_ip_ranges=["x"])
    cls(shared_ip_ranges=["10.9.0.0/24"])


def test_distinct_terminals_give_each_event_its_workstation_and_address():
    rows = [ev("u", "p1", "2025-07-08 10:00", workstation="A1", ip="10.1.1.11"),
            ev("u", "p1", "2025-07-08 10:01", workstation="A1", ip="10.1.1.12"),
            ev("u", "p1", "2025-07-08 10:02", ip="10.1.1.12"),
            ev("u", "p1", "2025-07-08 10:03", workstation="A1", ip="10.1.1.11"),
            ev("u", "p1", "2025-07-08 10:04", workstation="B1"),
            ev("u", "p1", "2025-07-08 10:05")]
    evs = frame("access_log", rows)
    inv, small = C._distinct_terminals(evs)
    assert len(small) == 5 and list(small.columns) == ["workstation", "ip"]
    assert small.index.tolist() == list(range(5))
    assert (small["workstation"].dtype, small["ip"].dtype) == ("string", "string")
    per_event = [(None if pd.isna(w) else w, None if pd.isna(i) else i)
                 for w, i in zip(small["workstation"].to_numpy()[inv], small["ip"].to_numpy()[inv])]
    assert per_event == [("A1", "10.1.1.11"), ("A1", "10.1.1.12"), (None, "10.1.1.12"),
                         ("A1", "10.1.1.11"), ("B1", None), (None, None)]
    assert inv[0] == inv[3] and len(set(inv.tolist())) == 5


def test_distinct_terminals_with_only_addresses():
    evs = frame("access_log", [ev("u", "p1", "2025-07-08 10:00", ip="10.0.0.1"),
                               ev("u", "p1", "2025-07-08 10:01", ip="10.0.0.2"),
                               ev("u", "p1", "2025-07-08 10:02", ip="10.0.0.1")])
    evs = evs.drop(columns=[c for c in ("workstation",) if c in evs.columns])
    inv, small = C._distinct_terminals(evs)
    assert list(small.columns) == ["ip"]
    assert small["ip"].to_numpy()[inv].tolist() == ["10.0.0.1", "10.0.0.2", "10.0.0.1"]


TERM_WS = [{"workstation": "A1", "ip": "10.1.1.11", "department": "心内科", "campus": "本部",
            "location": "护士站"},
           {"workstation": "A1", "ip": "10.1.1.99", "department": "心内科二", "campus": "本部"},
           {"workstation": "N1", "ip": "10.1.5.5", "department": "神经科"},
           {"workstation": "X9", "ip": "10.7.7.7", "campus": "西院", "location": "门诊"}]


def test_workstation_info_by_name_then_by_address_the_last_row_of_a_name_wins():
    rows = [ev("u", "p1", "2025-07-08 10:00", workstation="A1", ip="10.7.7.7"),   # by name
            ev("u", "p1", "2025-07-08 10:01", workstation="ZZ", ip="10.7.7.7"),   # by address
            ev("u", "p1", "2025-07-08 10:02", ip="10.1.5.5"),                      # by address
            ev("u", "p1", "2025-07-08 10:03", workstation="ZZ", ip="10.0.0.1"),   # unknown
            ev("u", "p1", "2025-07-08 10:04", workstation="N1"),                   # no campus
            ev("u", "p1", "2025-07-08 10:05", ip="10.1.1.11")]                    # first A1 row
    ctx = ctx_of(rows, workstations=TERM_WS)
    evs = ctx.events

    def info(col):
        s = C._workstation_info(ctx, evs, col)
        assert s.dtype == "string" and s.index.equals(evs.index)
        return [None if pd.isna(v) else v for v in s]

    assert info("department") == ["心内科二", None, "神经科", None, "神经科", "心内科"]
    assert info("campus") == ["本部", "西院", None, None, None, "本部"]
    assert info("location") == ["门诊", "门诊", None, None, None, "护士站"]
    # a column the table does not have, no table, no events: all unknown
    assert info("ward") == [None] * 6
    assert C._workstation_info(ctx_of(rows), evs, "campus").isna().tolist() == [True] * 6
    empty = C._workstation_info(ctx, evs.iloc[:0], "campus")
    assert len(empty) == 0 and empty.dtype == "string"
    # a subset of the events keeps their labels (the caller aligns on them)
    part = C._workstation_info(ctx, evs.iloc[[5, 2, 0]], "department")
    assert part.index.tolist() == [5, 2, 0] and part.dtype == "string"
    assert part.tolist() == ["心内科", "神经科", "心内科二"]


def test_terminal_info_by_address_the_last_row_of_an_address_wins():
    ws = [{"workstation": "P1", "ip": "10.3.3.3", "campus": "本部"},
          {"workstation": "P2", "ip": "10.3.3.3", "campus": "东院"}]
    ctx = ctx_of([ev("u", "p1", "2025-07-08 10:00", workstation="ZZ", ip="10.3.3.3"),
                  ev("u", "p1", "2025-07-08 10:01", workstation="P1", ip="10.3.3.3")],
                 workstations=ws)
    assert C._workstation_info(ctx, ctx.events, "campus").tolist() == ["东院", "本部"]


def test_terminal_info_with_an_empty_workstations_table_is_unknown():
    ctx = ctx_of([ev("u", "p1", "2025-07-08 10:00", workstation="A1")], workstations=[])
    assert C._workstation_info(ctx, ctx.events, "campus").isna().tolist() == [True]


def _places(rows, level, workstations=TERM_WS):
    ctx = ctx_of(rows, workstations=workstations)
    inv, small = C._distinct_terminals(ctx.events)
    p = C._terminal_place(ctx, small, level)
    assert p.dtype == "string"
    return [None if pd.isna(v) else v for v in p.to_numpy()[inv]]


PLACE_ROWS = [ev("u", "p1", "2025-07-08 10:00", workstation="A1", ip="10.1.1.11"),
              ev("u", "p1", "2025-07-08 10:01", workstation="N1"),
              ev("u", "p1", "2025-07-08 10:02", workstation="X9"),
              ev("u", "p1", "2025-07-08 10:03", workstation="ZZ", ip="172.16.4.20"),
              ev("u", "p1", "2025-07-08 10:04", workstation="ZZ"),
              ev("u", "p1", "2025-07-08 10:05", workstation="unknown"),
              ev("u", "p1", "2025-07-08 10:06", workstation="Unknow"),
              ev("u", "p1", "2025-07-08 10:07", workstation="-"),
              ev("u", "p1", "2025-07-08 10:08", workstation="-", ip="fd00::1"),
              ev("u", "p1", "2025-07-08 10:09", workstation="-", ip="192.168.0.300x"),
              ev("u", "p1", "2025-07-08 10:10")]


def test_place_is_campus_slash_department_then_the_address_network_then_the_name():
    assert _places(PLACE_ROWS, "department") == [
        "本部/心内科二", "/神经科", "ws X9", "net 172.16.4", "ws ZZ", None, None, None, None,
        None, None]


def test_place_at_location_and_campus_level():
    assert _places(PLACE_ROWS, "location") == [
        "本部/护士站", "ws N1", "西院/门诊", "net 172.16.4",
        "ws ZZ", None, None, None, None, None, None]
    assert _places(PLACE_ROWS, "campus") == [
        "本部", "ws N1", "西院", "net 172.16.4", "ws ZZ", None, None, None, None, None, None]


def test_place_without_a_workstations_table():
    assert _places(PLACE_ROWS, "department", workstations=None) == [
        "net 10.1.1", "ws N1", "ws X9", "net 172.16.4", "ws ZZ", None, None, None, None,
        None, None]


def test_event_rows_are_the_successful_events_the_frame_itself_when_all_are():
    rows = [ev("u", "p1", "2025-07-08 10:00", event_id="ok"),
            ev("u", "p1", "2025-07-08 10:01", outcome="failure", event_id="denied"),
            ev("u", None, "2025-07-08 10:02", "logout", event_id="out"),
            ev("u", "p1", "2025-07-08 10:03", outcome="success", event_id="ok2")]
    ctx = ctx_of(rows)
    assert C._event_rows(ctx)["event_id"].tolist() == ["ok", "out", "ok2"]
    ctx = ctx_of([rows[0], rows[3]])
    assert C._event_rows(ctx) is ctx.events
    # presence: successes that are not a logout
    assert C._presence_mask(ctx_of(rows).events).tolist() == [True, False, False, True]
    no_outcome = ctx_of(rows[:1] + rows[2:3]).events.drop(columns="outcome")
    assert C._presence_mask(no_outcome).tolist() == [True, False]


def test_per_event_codes_and_names():
    code, names = C._per_event(pd.Series(["b", None, "a", "b"], dtype="string"),
                               np.array([3, 0, 1, 2, 2]))
    assert code.dtype == np.int64 and code.tolist() == [0, 0, -1, 1, 1]
    assert names.dtype == object and names.tolist() == ["b", "a"]


def test_sorted_by_user_orders_kept_events_by_account_then_time():
    evs = frame("access_log", [ev("b", "p1", "2025-07-08 09:00"),
                               ev("a", "p1", "2025-07-08 09:30"),
                               ev("b", "p1", "2025-07-08 10:00"),
                               ev("a", "p1", "2025-07-08 10:30"),
                               ev("b", "p1", "2025-07-08 11:00")])
    idx, u, t = C._sorted_by_user(evs, np.array([True, True, False, True, True]))
    assert idx.tolist() == [0, 4, 1, 3]            # b's, then a's (first seen first)
    assert u.dtype == np.int64 and u.tolist() == [0, 0, 1, 1]
    assert t.tolist() == [1751936400000000, 1751943600000000, 1751938200000000,
                          1751941800000000]
    # out of time order: still by account, then time
    evs = frame("access_log", [ev("b", "p1", "2025-07-08 11:00"),
                               ev("a", "p1", "2025-07-08 10:30"),
                               ev("b", "p1", "2025-07-08 09:00"),
                               ev("a", "p1", "2025-07-08 09:30")])
    idx, u, t = C._sorted_by_user(evs, np.ones(4, dtype=bool))
    assert idx.tolist() == [2, 0, 3, 1] and u.tolist() == [0, 0, 1, 1]
    # the first event the earliest, the rest out of order
    evs2 = frame("access_log", [ev("b", "p1", "2025-07-08 09:00"),
                                ev("a", "p1", "2025-07-08 10:30"),
                                ev("b", "p1", "2025-07-08 11:00"),
                                ev("a", "p1", "2025-07-08 10:00")])
    assert C._sorted_by_user(evs2, np.ones(4, dtype=bool))[0].tolist() == [0, 2, 3, 1]
    idx, u, t = C._sorted_by_user(evs, np.zeros(4, dtype=bool))
    assert (idx.tolist(), u.tolist(), t.tolist()) == ([], [], [])


def test_presence_sorted_is_shared_and_filtered_by_keep():
    rows = [ev("b", "p1", "2025-07-08 09:00"), ev("a", None, "2025-07-08 09:10", "logout"),
            ev("a", "p1", "2025-07-08 09:20"), ev("b", "p1", "2025-07-08 09:30")]
    ctx = ctx_of(rows)
    idx, u, t = C._presence_sorted(ctx, np.array([True, True, True, False]))
    assert idx.tolist() == [0, 2] and u.tolist() == [0, 1]
    assert "cred.presence_sorted" in ctx.memo
    idx, _, _ = C._presence_sorted(ctx, np.ones(4, dtype=bool))
    assert idx.tolist() == [0, 3, 2]


def test_campus_codes_terminal_first_then_facility_and_spellings_merged():
    terminal = pd.Series(["本部", None, "Site.org", "东院"], dtype="string")
    facility = pd.Series(["x", "http://site.org/", "东院", None, "西院"], dtype="string")
    code, names = C._campus_codes(terminal, np.array([0, 1, 2, 3, 1]), facility)
    assert code.tolist() == [0, 1, 1, 2, 4]
    assert names.tolist() == ["本部", "Site.org", "东院", "x", "西院"]
    assert names.dtype == "string"
    code, names = C._campus_codes(terminal, np.array([0, 1, 2, 3, 1]), None)
    assert code.tolist() == [0, -1, 1, 2, -1] and names.tolist() == ["本部", "Site.org", "东院"]
    # no terminal knows its campus: the facility alone
    code, names = C._campus_codes(pd.Series([], dtype="string"), np.array([0, 0, 0]),
                                  pd.Series(["a", None, "b"], dtype="string"))
    assert code.tolist() == [0, -1, 1] and names.tolist() == ["a", "b"]
    code, names = C._campus_codes(pd.Series([None], dtype="string"), np.array([0, 0]), None)
    assert code.tolist() == [-1, -1] and names.tolist() == []


def test_campus_codes_an_event_with_neither_terminal_campus_nor_facility_has_none():
    terminal = pd.Series(["本部", None], dtype="string")
    code, names = C._campus_codes(terminal, np.array([0, 1, 1]),
                                  pd.Series(["本部", None, "东院"], dtype="string"))
    assert code.tolist() == [0, -1, 1] and names.tolist() == ["本部", "东院"]
    # the same when two spellings are merged
    code, names = C._campus_codes(terminal, np.array([0, 1, 1]),
                                  pd.Series([None, None, "本部 "], dtype="string"))
    assert code.tolist() == [0, -1, 0] and names.tolist() == ["本部"]


def test_campus_codes_facility_spellings_keep_the_first_seen():
    terminal = pd.Series(["本部", None], dtype="string")
    code, names = C._campus_codes(terminal, np.array([0, 1, 1, 1]),
                                  pd.Series([None, "http://b.org", "B.org", "a.org"],
                                            dtype="string"))
    assert code.tolist() == [0, 1, 1, 2]
    assert names.tolist() == ["本部", "http://b.org", "a.org"]


@pytest.mark.parametrize("name,key", [
    ("server.example.com", "server.example.com"),
    ("  HTTP://Server.Example.COM/ ", "server.example.com"),
    ("https://user:pw@server.example.com:443/", "server.example.com"),
    ("fhir+https://server.example.com:80", "server.example.com"),
    ("server.example.com:8080/", "server.example.com:8080"),
    ("server.example.com:4430", "server.example.com:4430"),
    ("server.example.com:443/r4//", "server.example.com/r4"),
    ("a@b@c", "b@c"),
    ("x/y@z", "x/y@z"),
    ("1http://a", "1http://a"),
    ("本部", "本部"),
    (42, "42"),
])
def test_place_key_one_spelling_per_place(name, key):
    assert C.place_key(name) == key


def test_same_places_merges_spellings_onto_the_first():
    code, names = C._same_places(np.array([0, 1, 2, -1, 1, 3]),
                                 pd.Index(["a", "A ", "b", "http://B/"], dtype="string"))
    assert code.tolist() == [0, 0, 1, -1, 0, 1]
    assert names.tolist() == ["a", "b"] and names.dtype == "string"
    code, names = C._same_places(np.array([1, 0, -1]), pd.Index(["x", "y"], dtype="string"))
    assert code.tolist() == [1, 0, -1] and names.tolist() == ["x", "y"]
    code, names = C._same_places(np.array([-1]), pd.Index([], dtype="string"))
    assert code.tolist() == [-1] and names.tolist() == []


def test_small_helpers_ids_one_patient_and_get():
    df = pd.DataFrame({"event_id": ["e2", "e10", "e1"], "patient_id": ["p1", None, "p1"],
                       "ws": ["A", None, "B"]})
    assert C._ids(df) == ["e1", "e10", "e2"]
    assert C._one_patient(df) == "p1"
    assert C._one_patient(df.assign(patient_id=["p1", "p2", None])) == ""
    assert C._one_patient(df.assign(patient_id=[None, None, None])) == ""
    assert C._one_patient(df.drop(columns="patient_id")) == ""
    assert [C._get(df, i, "ws") for i in range(3)] == ["A", None, "B"]
    assert C._get(df, 0, "nope") is None


def test_outside_is_a_valid_address_in_none_of_the_networks():
    ip = pd.Series(["10.1.2.3", "11.0.0.0", "9.255.255.255", None, "bad", "fd00::1",
                    "fe80::1", " 8.8.8.8 ", "::ffff:10.0.0.1", "10.255.255.255"],
                   dtype="string")
    assert C._outside(ip, ["10.0.0.0/8", "fd00::/8"]).tolist() == \
        [False, True, True, False, False, False, True, True, True, False]
    # an IPv4 address is never inside an IPv6 network, and the reverse
    assert C._outside(ip, ["::/0"]).tolist() == \
        [True, True, True, False, False, False, False, True, False, True]
    # a network written with host bits is its whole network
    assert C._outside(ip, ["10.1.2.3/8", "fd00::1/8"]).tolist() == \
        [False, True, True, False, False, False, True, True, True, False]
    assert C._outside(ip, []).tolist() == \
        [True, True, True, False, False, True, True, True, True, True]


# =========================================================================== concurrent_use

CU = "cred.concurrent_use"
CU_THRESHOLDS = {"window_minutes": 10.0, "move_minutes": 2.0, "place_level": "department",
                 "min_interleavings": 1}


def test_concurrent_use_finding_written_out():
    from emraudit.detectors.base import finding_id
    events = [at("u", "2025-07-08 10:00", "A1", session_id="s1"),
              at("v", "2025-07-08 10:01", "E1"),                  # another account
              at("u", "2025-07-08 10:02", "E1", session_id="s2", patient="p2"),
              at("u", "2025-07-08 10:04", "A1", session_id="s1"),
              at("u", "2025-07-08 10:05", "B1"),
              at("u", "2025-07-08 10:06", "A1", "login")]
    f = cred(CU, events)
    assert len(f) == 1
    r = f.iloc[0]
    u = [e for e in events if e["user_id"] == "u"]
    places = ["东院/骨科", "本部/心内科", "本部/骨科"]
    assert (r["user_id"], r["patient_id"], r["severity"]) == ("u", "", "high")
    assert r["finding_id"] == finding_id(CU, "u|2025-07-08")
    assert r["event_ids"] == ids(u)
    assert (r["start"], r["end"]) == ("2025-07-08T10:00:00+08:00", "2025-07-08T10:06:00+08:00")
    assert r["score"] == 5.0                         # 2 interleavings + 3 places
    assert r["message_id"] == CU
    assert r["message_args"] == {"user": "u", "n_places": 3, "day": "2025-07-08",
                                 "places": places, "minutes": 4, "count": 2}
    e = r["evidence"]
    assert e == {"day": "2025-07-08", "places": places, "interleavings": 2,
                 "first_pattern": [
                     {"place": "本部/心内科", "at": "2025-07-08T10:00:00+08:00",
                      "workstation": "A1", "ip": "10.1.1.11", "session_id": "s1",
                      "event_id": u[0]["event_id"]},
                     {"place": "东院/骨科", "at": "2025-07-08T10:02:00+08:00",
                      "workstation": "E1", "ip": "10.2.1.11", "session_id": "s2",
                      "event_id": u[1]["event_id"]},
                     {"place": "本部/心内科", "at": "2025-07-08T10:04:00+08:00",
                      "workstation": "A1", "ip": "10.1.1.11", "session_id": "s1",
                      "event_id": u[2]["event_id"]}],
                 "thresholds": CU_THRESHOLDS,
                 "shared_hosts_excluded": {"ip_ranges": [], "workstations": []}}
    assert r["summary"] == ("account u was active in 3 places at once on 2025-07-08: 东院/骨科, "
                            "本部/心内科, 本部/骨科 interleaved within 4 min (2 times)")


def test_concurrent_use_thresholds_and_shared_hosts_in_the_evidence_follow_the_parameters():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "A2"),
              at("u", "2025-07-08 10:02", "A1")]
    over = {"window_minutes": 5.0, "move_minutes": 1.5, "place_level": "location",
            "min_interleavings": 1, "shared_ip_ranges": ["10.9.0.0/24"],
            "shared_workstations": ["VDI-*"]}
    (e,) = cred(CU, events, over=over)["evidence"].tolist()
    assert e["thresholds"] == {"window_minutes": 5.0, "move_minutes": 1.5,
                               "place_level": "location", "min_interleavings": 1}
    assert e["shared_hosts_excluded"] == {"ip_ranges": ["10.9.0.0/24"],
                                          "workstations": ["VDI-*"]}
    assert e["places"] == ["本部/心内科医生办", "本部/心内科护士站"]


@pytest.mark.parametrize("back,found", [("10:04:59", True), ("10:05", True),
                                        ("10:05:01", False)])
def test_concurrent_use_window_parameter_edge(back, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:02", "E1"),
              at("u", f"2025-07-08 {back}", "A1")]
    f = cred(CU, events, over={"window_minutes": 5.0})
    assert (len(f) == 1) is found


@pytest.mark.parametrize("back,found", [("10:19:59", True), ("10:20", True),
                                        ("10:20:01", False)])
def test_concurrent_use_window_runs_from_the_last_event_in_a_to_the_first_back(back, found):
    # A 09:50 and 10:10 are one run; the window is counted from 10:10
    events = [at("u", "2025-07-08 09:50", "A1"), at("u", "2025-07-08 10:10", "A1"),
              at("u", "2025-07-08 10:12", "E1"), at("u", f"2025-07-08 {back}", "A1"),
              at("u", "2025-07-08 10:40", "A1")]
    f = cred(CU, events)
    assert (len(f) == 1) is found
    if found:
        assert f.iloc[0]["event_ids"] == ids(events[1:4])
        assert f.iloc[0]["message_args"]["minutes"] == 10


@pytest.mark.parametrize("b0,b1,back,found", [
    ("10:03", "10:05", "10:07", True),            # each switch 2 min: run end to run start
    ("10:03:01", "10:05", "10:07", False),        # A to B too slow
    ("10:03", "10:05", "10:07:01", False),        # B back to A too slow
    ("10:02:59", "10:05", "10:06:59", True),
])
def test_concurrent_use_move_minutes_between_runs(b0, b1, back, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "A1"),
              at("u", f"2025-07-08 {b0}", "B1"), at("u", f"2025-07-08 {b1}", "B1"),
              at("u", f"2025-07-08 {back}", "A1"), at("u", "2025-07-08 10:08", "A1")]
    f = cred(CU, events)
    assert (len(f) == 1) is found
    if found:
        assert f.iloc[0]["event_ids"] == ids(events[1:5])


@pytest.mark.parametrize("move,found", [(3.0, True), (2.9, False)])
def test_concurrent_use_move_minutes_parameter(move, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:03", "B1"),
              at("u", "2025-07-08 10:06", "A1")]
    assert (len(cred(CU, events, over={"move_minutes": move})) == 1) is found


def test_concurrent_use_other_campus_needs_both_campuses_known():
    # B only has an address (its place is the /24 network, its campus unknown): a slow
    # interleaving is walkable; E1 on the other campus is not
    slow_unknown = [at("u", "2025-07-08 10:00", "A1"),
                    ev("u", "p1", "2025-07-08 10:04", ip="172.16.1.1"),
                    at("u", "2025-07-08 10:08", "A1")]
    assert cred(CU, slow_unknown).empty
    fast_unknown = [at("u", "2025-07-08 10:00", "A1"),
                    ev("u", "p1", "2025-07-08 10:01", ip="172.16.1.1"),
                    at("u", "2025-07-08 10:02", "A1")]
    assert cred(CU, fast_unknown).iloc[0]["evidence"]["places"] == ["net 172.16.1",
                                                                  "本部/心内科"]
    # A unknown, B known: walkable too
    a_unknown = [ev("u", "p1", "2025-07-08 10:00", ip="172.16.1.1"),
                 at("u", "2025-07-08 10:04", "E1"),
                 ev("u", "p1", "2025-07-08 10:08", ip="172.16.1.1")]
    assert cred(CU, a_unknown).empty
    slow_known = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:04", "E1"),
                  at("u", "2025-07-08 10:08", "A1")]
    assert len(cred(CU, slow_known)) == 1
    slow_known = [at("u", "2025-07-08 10:00", "E1"), at("u", "2025-07-08 10:04", "A1"),
                  at("u", "2025-07-08 10:08", "E1")]
    assert len(cred(CU, slow_known)) == 1
    # whichever campus is listed first
    ws = [{"workstation": "0E", "department": "骨科", "campus": "东院"}] + WS
    slow_known = [ev("v", "p1", "2025-07-08 09:00", workstation="0E"),
                  at("u", "2025-07-08 10:00", "A1"),
                  ev("u", "p1", "2025-07-08 10:04", workstation="0E"),
                  at("u", "2025-07-08 10:08", "A1")]
    assert cred(CU, slow_known, workstations=ws)["user_id"].tolist() == ["u"]


def test_concurrent_use_same_campus_slow_is_walkable():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:04", "B1"),
              at("u", "2025-07-08 10:08", "A1")]
    assert cred(CU, events).empty


def test_concurrent_use_a_b_c_is_no_pattern_and_three_accounts_do_not_mix():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "E1"),
              at("u", "2025-07-08 10:02", "B1")]
    assert cred(CU, events).empty
    # A by u, B by v, A by u: v's event is not u's; u's A-A is one run
    events = [at("u", "2025-07-08 10:00", "A1"), at("v", "2025-07-08 10:01", "E1"),
              at("u", "2025-07-08 10:02", "A1")]
    assert cred(CU, events).empty
    # u ends in A, v starts in E and ends in ... A: no account switches in between
    events = [at("u", "2025-07-08 10:00", "E1"), at("u", "2025-07-08 10:01", "A1"),
              at("v", "2025-07-08 10:02", "E1"), at("v", "2025-07-08 10:03", "A1")]
    assert cred(CU, events).empty
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "E1"),
              at("v", "2025-07-08 10:02", "A1"), at("v", "2025-07-08 10:03", "E1")]
    assert cred(CU, events).empty
    # one place three times in a row is one run, whoever's account it is
    events = [at("u", "2025-07-08 09:00", "E1")] + \
        [at("v", f"2025-07-08 10:0{i}", "A1") for i in range(3)]
    assert cred(CU, events).empty


@pytest.mark.parametrize("minimum,found", [(1, True), (2, True), (3, False)])
def test_concurrent_use_min_interleavings_counts_patterns_in_a_day(minimum, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "E1"),
              at("u", "2025-07-08 10:02", "A1"), at("u", "2025-07-08 10:03", "E1"),
              # the next day's pattern is another finding's
              at("u", "2025-07-09 10:00", "A1"), at("u", "2025-07-09 10:01", "E1"),
              at("u", "2025-07-09 10:02", "A1")]
    f = cred(CU, events, over={"min_interleavings": minimum})
    # A-E-A and E-A-E on the 8th, A-E-A on the 9th
    days = [r["evidence"]["day"] for r in f.to_dict("records")]
    assert days == (["2025-07-08", "2025-07-09"] if minimum == 1 else
                    ["2025-07-08"] if found else [])
    if found:
        r = f.iloc[0]
        assert r["event_ids"] == ids(events[:4])
        assert (r["message_args"]["count"], r["evidence"]["interleavings"]) == (2, 2)
        assert r["score"] == 4.0
    if minimum == 1:
        assert f.iloc[1]["event_ids"] == ids(events[4:])
        assert [x["event_id"] for x in f.iloc[1]["evidence"]["first_pattern"]] == \
            ids(events[4:])
    # a day left out does not hide the next one
    f = cred(CU, events[4:] + [at("u", "2025-07-10 10:00", "A1"),
                               at("u", "2025-07-10 10:01", "E1"),
                               at("u", "2025-07-10 10:02", "A1"),
                               at("u", "2025-07-10 10:03", "E1")],
             over={"min_interleavings": minimum})
    assert len(f) == {1: 2, 2: 1, 3: 0}[minimum]


def test_concurrent_use_days_are_site_local():
    events = [at("u", "2025-07-09 07:00", "A1"), at("u", "2025-07-09 07:02", "E1"),
              at("u", "2025-07-09 07:04", "A1")]              # 23:00 UTC the day before
    f = cred(CU, events)
    assert f["evidence"].iloc[0]["day"] == "2025-07-09"


def test_concurrent_use_a_pattern_belongs_to_the_day_of_its_last_event_in_a():
    events = [at("u", "2025-07-08 23:59", "A1"), at("u", "2025-07-09 00:01", "E1"),
              at("u", "2025-07-09 00:03", "A1")]
    f = cred(CU, events)
    assert f["evidence"].iloc[0]["day"] == "2025-07-08"
    assert f["message_args"].iloc[0]["day"] == "2025-07-08"
    assert f["message_args"].iloc[0]["minutes"] == 4


@pytest.mark.parametrize("first,found", [("2025-07-06 23:55", True),
                                         ("2025-07-06 23:50", False)])
def test_concurrent_use_a_pattern_needs_an_event_in_the_window(first, found):
    # the window starts 07-07 00:00; the return to A at 00:00 is in it, at 23:59 not
    t0 = pd.Timestamp(first)
    back = t0 + pd.Timedelta(minutes=5)
    events = [at("u", str(t0), "A1"), at("u", str(t0 + pd.Timedelta(minutes=2)), "E1"),
              at("u", str(back), "A1")]
    f = cred(CU, events)
    assert (len(f) == 1) is found
    # a pattern before the window does not hide a later one
    later = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "E1"),
             at("u", "2025-07-08 10:02", "A1")]
    f = cred(CU, events + later)
    assert [r["evidence"]["day"] for r in f.to_dict("records")] == \
        (["2025-07-06", "2025-07-08"] if found else ["2025-07-08"])


def test_concurrent_use_events_without_a_place_are_left_out():
    events = [at("u", "2025-07-08 10:00", "A1"),
              ev("u", "p1", "2025-07-08 10:01", workstation="-"),      # no place: skipped
              at("u", "2025-07-08 10:02", "E1"),
              ev("u", "p1", "2025-07-08 10:03", workstation="UNKNOWN"),
              at("u", "2025-07-08 10:04", "A1")]
    f = cred(CU, events)
    assert f["event_ids"].tolist() == [ids([events[0], events[2], events[4]])]
    events = [at("u", "2025-07-08 10:00", "A1"),
              ev("u", "p1", "2025-07-08 10:01", workstation="-"),
              at("u", "2025-07-08 10:02", "A1")]
    assert cred(CU, events).empty


def test_concurrent_use_empty_one_row_and_nothing_present():
    assert cred(CU, []).empty
    assert cred(CU, [at("u", "2025-07-08 10:00", "A1")]).empty
    assert cred(CU, [ev("u", "p1", "2025-07-08 10:00", workstation="-")]).empty
    outs = [at("u", "2025-07-08 10:00", "A1", "logout"), at("u", "2025-07-08 10:01", "E1",
                                                            "logout")]
    assert cred(CU, outs).empty
    shared = [at("u", "2025-07-08 10:00", "VDI-01")]
    assert cred(CU, shared, over={"shared_workstations": ["VDI-*"]}).empty


def test_concurrent_use_shared_hosts_by_name():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "VDI-01"),
              at("u", "2025-07-08 10:02", "A1")]
    assert len(cred(CU, events)) == 1
    assert cred(CU, events, over={"shared_workstations": ["VDI-*"]}).empty


def test_concurrent_use_shared_host_in_b_leaves_the_a_run_whole():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "VDI-01"),
              at("u", "2025-07-08 10:02", "E1"), at("u", "2025-07-08 10:03", "A1")]
    f = cred(CU, events, over={"shared_ip_ranges": ["10.9.0.5/32"]})
    assert f["event_ids"].tolist() == [ids([events[0], events[2], events[3]])]
    assert f["evidence"].iloc[0]["shared_hosts_excluded"] == {
        "ip_ranges": ["10.9.0.5/32"], "workstations": []}


def test_concurrent_use_message_lists_three_places_and_the_evidence_all():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "B1"),
              at("u", "2025-07-08 10:02", "A1"), at("u", "2025-07-08 10:03", "C1"),
              at("u", "2025-07-08 10:04", "A1"), at("u", "2025-07-08 10:05", "D1"),
              at("u", "2025-07-08 10:06", "A1")]
    r = cred(CU, events).iloc[0]
    allp = ["本部/儿科", "本部/心内科", "本部/眼科", "本部/骨科"]
    assert r["evidence"]["places"] == allp
    assert r["message_args"]["places"] == allp[:3]
    assert (r["message_args"]["n_places"], r["message_args"]["count"]) == (4, 3)
    assert r["score"] == 7.0
    assert r["message_args"]["minutes"] == 2


def test_concurrent_use_first_pattern_shows_at_most_20_events_and_minutes_are_rounded():
    b = [at("u", f"2025-07-08 10:00:{s:02d}", "E1") for s in range(30, 30 + 25)]
    events = [at("u", "2025-07-08 10:00", "A1")] + b + [at("u", "2025-07-08 10:05:40", "A1")]
    r = cred(CU, events).iloc[0]
    fp = r["evidence"]["first_pattern"]
    assert len(fp) == 20
    assert [x["event_id"] for x in fp] == ids(events[:20])
    assert len(r["event_ids"]) == 27
    assert r["message_args"]["minutes"] == 6               # 5 min 40 s
    events[-1] = at("u", "2025-07-08 10:05:20", "A1")
    assert cred(CU, events).iloc[0]["message_args"]["minutes"] == 5


def test_concurrent_use_first_pattern_fields_missing_are_none():
    events = [ev("u", "p1", "2025-07-08 10:00", ip="10.1.1.11"),
              ev("u", "p1", "2025-07-08 10:01", ip="10.2.1.11"),
              ev("u", "p1", "2025-07-08 10:02", ip="10.1.1.11")]
    r = cred(CU, events).iloc[0]
    assert [(x["workstation"], x["ip"], x["session_id"]) for x in
            r["evidence"]["first_pattern"]] == [(None, "10.1.1.11", None),
                                                (None, "10.2.1.11", None),
                                                (None, "10.1.1.11", None)]
    assert r["evidence"]["places"] == ["东院/骨科", "本部/心内科"]


def test_concurrent_use_place_level_campus_makes_departments_one_place():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "B1"),
              at("u", "2025-07-08 10:02", "A1")]
    assert cred(CU, events, over={"place_level": "campus"}).empty
    events[1] = at("u", "2025-07-08 10:01", "E1")
    f = cred(CU, events, over={"place_level": "campus"})
    assert f["evidence"].iloc[0]["places"] == ["东院", "本部"]


# =========================================================================== impossible_travel

IT = "cred.impossible_travel"


def test_impossible_travel_finding_written_out():
    from emraudit.detectors.base import finding_id
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:10", "B1"),
              at("u", "2025-07-08 10:20", "E1"),              # 本部 -> 东院 in 10 min
              at("v", "2025-07-08 10:25", "A1"),
              at("u", "2025-07-08 10:32:30", "A1"),           # back in 12.5 min
              at("u", "2025-07-08 11:10", "E1")]              # 37.5 min later: possible
    f = cred(IT, events)
    assert len(f) == 1
    r = f.iloc[0]
    assert (r["user_id"], r["patient_id"], r["severity"]) == ("u", "", "high")
    assert r["finding_id"] == finding_id(IT, "u|2025-07-08")
    assert r["event_ids"] == ids([events[1], events[2], events[4]])
    assert (r["start"], r["end"]) == ("2025-07-08T10:10:00+08:00", "2025-07-08T10:32:30+08:00")
    assert r["score"] == 2.0
    assert r["message_id"] == IT
    assert r["message_args"] == {"user": "u", "from": "本部", "to": "东院", "minutes": 10.0,
                                 "day": "2025-07-08", "needed": 30.0, "hops": 2}
    assert r["evidence"] == {
        "day": "2025-07-08",
        "hops": [{"from": "本部", "to": "东院", "from_at": "2025-07-08T10:10:00+08:00",
                  "to_at": "2025-07-08T10:20:00+08:00", "minutes": 10.0,
                  "needed_minutes": 30.0, "from_workstation": "B1", "to_workstation": "E1",
                  "event_ids": ids([events[1], events[2]])},
                 {"from": "东院", "to": "本部", "from_at": "2025-07-08T10:20:00+08:00",
                  "to_at": "2025-07-08T10:32:30+08:00", "minutes": 12.5,
                  "needed_minutes": 30.0, "from_workstation": "E1", "to_workstation": "A1",
                  "event_ids": ids([events[2], events[4]])}],
        "thresholds": {"default_travel_minutes": 30.0, "campus_travel_minutes": {}}}
    assert r["summary"] == ("account u moved from 本部 to 东院 in 10 min on 2025-07-08 (at "
                            "least 30 min needed), 2 such hops")


def test_impossible_travel_one_hop_says_no_count_and_minutes_keep_a_decimal():
    events = [at("u", "2025-07-08 10:00", "E1"), at("u", "2025-07-08 10:07:20", "A1")]
    r = cred(IT, events, over={"default_travel_minutes": 20.0}).iloc[0]
    assert r["message_args"] == {"user": "u", "from": "东院", "to": "本部", "minutes": 7.3,
                                 "day": "2025-07-08", "needed": 20.0, "hops": 0}
    assert r["evidence"]["thresholds"] == {"default_travel_minutes": 20.0,
                                           "campus_travel_minutes": {}}
    assert r["score"] == 1.0 and r["event_ids"] == ids(events)
    assert r["summary"] == ("account u moved from 东院 to 本部 in 7.3 min on 2025-07-08 (at "
                            "least 20 min needed)")


@pytest.mark.parametrize("arrive,found", [("10:19:59", True), ("10:20", False),
                                          ("10:20:01", False)])
def test_impossible_travel_default_minutes_edge(arrive, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", f"2025-07-08 {arrive}", "E1")]
    f = cred(IT, events, over={"default_travel_minutes": 20.0})
    assert (len(f) == 1) is found


@pytest.mark.parametrize("arrive,found", [("10:44:59", True), ("10:45", False)])
@pytest.mark.parametrize("pair", ["本部|东院", "东院|本部", " 东院 | 本部 "])
def test_impossible_travel_a_campus_pair_either_order(pair, arrive, found):
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", f"2025-07-08 {arrive}", "E1"),
              at("w", "2025-07-08 10:00", "E1"), at("w", f"2025-07-08 {arrive}", "A1")]
    f = cred(IT, events, over={"campus_travel_minutes": {pair: 45}})
    assert f["user_id"].tolist() == (["u", "w"] if found else [])
    if found:
        assert [r["evidence"]["hops"][0]["needed_minutes"] for r in f.to_dict("records")] == \
            [45.0, 45.0]
        assert f.iloc[0]["evidence"]["thresholds"]["campus_travel_minutes"] == {pair: 45}


def test_impossible_travel_a_pair_of_unknown_campuses_changes_nothing():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:25", "E1")]
    for pair in ("本部|西院", "西院|东院", "北院|南院"):
        f = cred(IT, events, over={"campus_travel_minutes": {pair: 5}})
        assert f.iloc[0]["evidence"]["hops"][0]["needed_minutes"] == 30.0
    # a shorter pair time clears the hop
    assert cred(IT, events, over={"campus_travel_minutes": {"本部|东院": 25}}).empty


def test_impossible_travel_pairs_each_apply_whatever_their_order():
    events = [at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:40", "E1")]
    f = cred(IT, events, over={"campus_travel_minutes": {"北院|南院": 5, "本部|东院": 45}})
    assert f.iloc[0]["evidence"]["hops"][0]["needed_minutes"] == 45.0


def test_impossible_travel_a_pair_splits_at_its_first_bar():
    events = [ev("u", "p1", "2025-07-08 10:00", facility="本部"),
              ev("u", "p1", "2025-07-08 10:40", facility="东院|二部")]
    f = cred(IT, events, workstations=None, over={"campus_travel_minutes": {"本部|东院|二部": 45}})
    assert [(h["to"], h["needed_minutes"]) for h in f.iloc[0]["evidence"]["hops"]] == \
        [("东院|二部", 45.0)]


def test_impossible_travel_pair_applies_only_between_its_two_campuses():
    events = [ev("u", "p1", "2025-07-08 10:00", facility="西院"),
              ev("u", "p1", "2025-07-08 10:40", facility="本部"),
              ev("u", "p1", "2025-07-08 11:20", facility="东院")]
    f = cred(IT, events, workstations=None, over={"campus_travel_minutes": {"西院|东院": 60}})
    assert f.empty
    f = cred(IT, events, workstations=None, over={"campus_travel_minutes": {"西院|本部": 60}})
    assert [(h["from"], h["to"], h["needed_minutes"]) for h in f.iloc[0]["evidence"]["hops"]] \
        == [("西院", "本部", 60.0)]


def test_impossible_travel_bad_pairs_are_refused():
    cls = all_detectors()[IT]
    with pytest.raises(ValueError, match=r"^campus_travel_minutes: expected 'A\|B' = minutes, "
                                         r"got '本部东院' = 10\.0$"):
        cls(campus_travel_minutes={"本部东院": 10})
    with pytest.raises(ValueError, match=r"^campus_travel_minutes: expected 'A\|B' = minutes, "
                                         r"got 'a\|b' = -0\.5$"):
        cls(campus_travel_minutes={"a|b": -0.5})
    for bad in ({"本部|东院": True}, {"本部|东院": "10"}):
        with pytest.raises(ValueError):
            cls(campus_travel_minutes=bad)
    assert cls(campus_travel_minutes={"本部|东院": 0}).p.campus_travel_minutes == {"本部|东院": 0}
    cls(campus_travel_minutes={"本部|东院": 12.5})


def test_impossible_travel_events_without_a_campus_and_shared_hosts_are_skipped():
    events = [at("u", "2025-07-08 10:00", "A1"),
              ev("u", "p1", "2025-07-08 10:05", ip="172.16.0.1"),      # no campus
              at("u", "2025-07-08 10:06", "VDI-01"),
              at("u", "2025-07-08 10:10", "E1")]
    f = cred(IT, events, over={"shared_workstations": ["VDI-*"]})
    assert f["event_ids"].tolist() == [ids([events[0], events[3]])]
    assert f.iloc[0]["evidence"]["hops"][0]["minutes"] == 10.0
    # the VDI host (本部) is a place when not shared: 本部 -> 本部 -> 东院 in 4 min
    f = cred(IT, events)
    assert f["event_ids"].tolist() == [ids([events[2], events[3]])]


def test_impossible_travel_shared_address_ranges_are_skipped():
    events = [at("u", "2025-07-08 10:00", "E1"), at("u", "2025-07-08 10:05", "VDI-01"),
              at("u", "2025-07-08 10:06", "E1")]
    assert len(cred(IT, events)) == 1
    assert cred(IT, events, over={"shared_ip_ranges": ["10.9.0.0/16"]}).empty


def test_impossible_travel_logouts_and_failures_are_not_presence():
    events = [at("u", "2025-07-08 10:00", "A1", "logout"),
              at("u", "2025-07-08 10:01", "A1", outcome="failure"),
              at("u", "2025-07-08 10:05", "E1")]
    assert cred(IT, events).empty


def test_impossible_travel_terminal_campus_wins_over_the_facility():
    events = [at("u", "2025-07-08 10:00", "A1", facility="东院"),
              at("u", "2025-07-08 10:05", "E1", facility="东院")]
    f = cred(IT, events)
    assert [(h["from"], h["to"]) for h in f.iloc[0]["evidence"]["hops"]] == [("本部", "东院")]


def test_impossible_travel_hop_belongs_to_the_arrivals_day_and_needs_the_window():
    events = [at("u", "2025-07-08 23:55", "A1"), at("u", "2025-07-09 00:05", "E1")]
    r = cred(IT, events).iloc[0]
    assert r["evidence"]["day"] == "2025-07-09" and r["message_args"]["day"] == "2025-07-09"
    # before the window: nothing; its arrival at the window start: reported
    assert cred(IT, [at("u", "2025-07-06 23:40", "A1"),
                     at("u", "2025-07-06 23:59:59", "E1")]).empty
    f = cred(IT, [at("u", "2025-07-06 23:40", "A1"), at("u", "2025-07-07 00:00", "E1")])
    assert f["evidence"].iloc[0]["day"] == "2025-07-07"
    # a hop whose departure is before the window and arrival in it
    f = cred(IT, [at("u", "2025-07-06 23:59", "A1"), at("u", "2025-07-07 00:01", "E1")])
    assert len(f) == 1
    # a day before the window does not hide the next
    f = cred(IT, [at("u", "2025-07-06 10:00", "A1"), at("u", "2025-07-06 10:01", "E1"),
                  at("u", "2025-07-08 10:00", "A1"), at("u", "2025-07-08 10:01", "E1")])
    assert f["evidence"].apply(lambda e: e["day"]).tolist() == ["2025-07-08"]


def test_impossible_travel_empty_one_row_and_no_campus():
    assert cred(IT, []).empty
    assert cred(IT, [at("u", "2025-07-08 10:00", "A1")]).empty
    assert cred(IT, [ev("u", "p1", "2025-07-08 10:00"), ev("u", "p1", "2025-07-08 10:01")],
                workstations=None).empty


def test_impossible_travel_lists_at_most_20_hops():
    events = [at("u", f"2025-07-08 10:{m:02d}", "A1" if m % 2 == 0 else "E1")
              for m in range(23)]
    r = cred(IT, events).iloc[0]
    assert len(r["evidence"]["hops"]) == 20
    assert r["message_args"]["hops"] == 22 and r["score"] == 22.0
    assert len(r["event_ids"]) == 23
    assert r["evidence"]["hops"][19]["to_at"] == "2025-07-08T10:20:00+08:00"


# =========================================================================== off_duty_use

OD = "cred.off_duty_use"
LEAVE = {"user_id": "u", "start": "2025-07-08 00:00", "end": "2025-07-10 00:00",
         "kind": "leave"}
SURG = {"user_id": "s", "start": "2025-07-08 09:00", "end": "2025-07-08 12:00",
        "kind": "surgery", "location": "手术室3"}
OFFS = {"user_id": "o", "start": "2025-07-08 08:00", "end": "2025-07-08 17:00",
        "kind": "offsite", "location": "市卫健委"}


def test_off_duty_use_findings_written_out_per_block():
    from emraudit.detectors.base import finding_id
    events = [at("u", "2025-07-08 10:00", "A1", "view"),
              at("u", "2025-07-08 10:05", "B1", "print"),
              at("u", "2025-07-09 11:00", "A1", "view", patient="p2"),
              ev("u", "p3", "2025-07-09 12:00", "view"),                 # no terminal
              at("s", "2025-07-08 10:00", "A1", "update"),
              at("s", "2025-07-08 10:10", "OR1", "sign"),                # in the theatre
              at("o", "2025-07-08 12:00", "E1", "view"),
              at("x", "2025-07-08 12:00", "E1", "view")]                 # no block
    f = cred(OD, events, shifts=[LEAVE, SURG, OFFS])
    rows = {r["user_id"]: r for r in f.to_dict("records")}
    assert sorted(rows) == ["o", "s", "u"]

    r = rows["u"]
    assert r["finding_id"] == finding_id(OD, "u|leave|2025-07-08T00:00:00+08:00")
    assert (r["severity"], r["patient_id"], r["score"]) == ("high", "", 4.0)
    assert r["event_ids"] == ids(events[:4])
    assert (r["start"], r["end"]) == ("2025-07-08T10:00:00+08:00", "2025-07-09T12:00:00+08:00")
    assert r["message_id"] == "cred.off_duty_use.leave"
    assert r["message_args"] == {"user": "u", "count": 4, "start": "2025-07-08T00:00:00+08:00",
                                 "end": "2025-07-10T00:00:00+08:00",
                                 "places": ["A1", "B1", "心内科护士站"]}
    assert r["evidence"] == {
        "block": {"kind": "leave", "start": "2025-07-08T00:00:00+08:00",
                  "end": "2025-07-10T00:00:00+08:00", "location": None},
        "places": ["A1", "B1", "心内科护士站", "骨科护士站"], "events": 4,
        "actions": {"view": 3, "print": 1},
        "thresholds": {"edge_minutes": 15.0, "min_events": 1}}
    assert r["summary"] == ("account u was used 4 times while its owner was on leave "
                            "(2025-07-08 00:00 – 2025-07-10 00:00) from A1, "
                            "B1, 心内科护士站")

    r = rows["s"]
    assert (r["severity"], r["patient_id"], r["score"]) == ("high", "p1", 1.0)
    assert r["event_ids"] == ids(events[4:5])
    assert r["message_id"] == "cred.off_duty_use.surgery"
    assert r["evidence"]["block"] == {"kind": "surgery", "start": "2025-07-08T09:00:00+08:00",
                                      "end": "2025-07-08T12:00:00+08:00", "location": "手术室3"}
    assert r["evidence"]["actions"] == {"update": 1}
    assert r["message_args"]["places"] == ["A1", "心内科护士站"]

    r = rows["o"]
    assert (r["severity"], r["message_id"]) == ("medium", "cred.off_duty_use.offsite")
    assert r["evidence"]["block"]["location"] == "市卫健委"
    assert r["message_args"] == {"user": "o", "count": 1, "start": "2025-07-08T08:00:00+08:00",
                                 "end": "2025-07-08T17:00:00+08:00",
                                 "places": ["E1", "东院骨科"]}
    assert r["summary"] == ("account o was used 1 time while its owner was offsite "
                            "(2025-07-08 08:00 – 2025-07-08 17:00) from E1, "
                            "东院骨科")


@pytest.mark.parametrize("ts,found", [("09:29:59", False), ("09:30", True), ("11:30", True),
                                      ("11:30:01", False)])
def test_off_duty_use_edge_minutes_parameter(ts, found):
    f = cred(OD, [at("s", f"2025-07-08 {ts}", "A1")], shifts=[SURG],
             over={"edge_minutes": 30.0})
    assert (len(f) == 1) is found
    if found:
        assert f.iloc[0]["evidence"]["thresholds"] == {"edge_minutes": 30.0, "min_events": 1}


@pytest.mark.parametrize("ts,found", [("08:59:59", False), ("09:00", True), ("12:00", True),
                                      ("12:00:01", False)])
def test_off_duty_use_without_edge_the_block_bounds_count(ts, found):
    f = cred(OD, [at("s", f"2025-07-08 {ts}", "A1")], shifts=[SURG],
             over={"edge_minutes": 0.0})
    assert (len(f) == 1) is found


@pytest.mark.parametrize("ts,found", [("09:29:59", False), ("09:30", True),
                                      ("09:30:01", False)])
def test_off_duty_use_block_just_twice_the_edge_is_one_instant(ts, found):
    short = {**SURG, "end": "2025-07-08 10:00"}
    f = cred(OD, [at("s", f"2025-07-08 {ts}", "A1")], shifts=[short],
             over={"edge_minutes": 30.0})
    assert (len(f) == 1) is found


def test_off_duty_use_block_shorter_than_twice_the_edge_is_ignored():
    short = {**SURG, "end": "2025-07-08 09:59"}
    events = [at("s", f"2025-07-08 09:{m:02d}", "A1") for m in range(0, 60, 5)]
    assert cred(OD, events, shifts=[short], over={"edge_minutes": 30.0}).empty


def test_off_duty_use_kinds_parameter_and_duty_blocks():
    events = [at("u", "2025-07-08 10:00", "A1"), at("s", "2025-07-08 10:00", "A1")]
    duty = {"user_id": "u", "start": "2025-07-08 00:00", "end": "2025-07-10 00:00",
            "kind": "duty"}
    assert cred(OD, events, shifts=[duty]).empty
    f = cred(OD, events, shifts=[LEAVE, SURG], over={"kinds": ["surgery"]})
    assert f["user_id"].tolist() == ["s"]
    f = cred(OD, events, shifts=[LEAVE, SURG], over={"kinds": ["leave"]})
    assert f["user_id"].tolist() == ["u"]
    assert cred(OD, events, shifts=[LEAVE, SURG], over={"kinds": ["offsite"]}).empty


def test_off_duty_use_surgery_allowed_places_by_location_department_or_name():
    events = [at("s", "2025-07-08 10:00", "OR1"),                       # department 手术室
              ev("s", "p1", "2025-07-08 10:01", workstation="MZ-麻醉-2"),
              ev("s", "p1", "2025-07-08 10:02", workstation="OR-9"),
              ev("s", "p1", "2025-07-08 10:03", workstation="door-1"),   # "or" inside a word
              ev("s", "p1", "2025-07-08 10:04", workstation="theatre 2"),
              ev("s", "p1", "2025-07-08 10:05", workstation="Theatre 3"),  # case is ignored
              at("s", "2025-07-08 10:06", "B1")]
    f = cred(OD, events, shifts=[SURG])
    assert f["event_ids"].tolist() == [ids([events[3], events[6]])]
    # the allowed words are the parameter's (OR1 is the block's own location 手术室3)
    f = cred(OD, events, shifts=[SURG], over={"surgery_allowed_places": ["骨科"]})
    assert f["event_ids"].tolist() == [ids(events[1:6])]
    # by location only, by department only, by a workstation known only by its address
    ws = WS + [{"workstation": "L1", "location": "一号麻醉间", "department": "X"},
               {"workstation": "D9", "location": "三楼", "department": "麻醉间管理"}]
    for e in (ev("s", "p1", "2025-07-08 10:00", workstation="L1"),
              ev("s", "p1", "2025-07-08 10:00", workstation="D9"),
              ev("s", "p1", "2025-07-08 10:00", ip="10.1.9.11")):       # OR1's address
        other = at("x", "2025-07-08 10:00", "A1")       # the workstation column is there
        f = cred(OD, [e, other], shifts=[SURG], workstations=ws,
                 over={"surgery_allowed_places": ["麻醉间", "手术室3"]})
        assert f.empty
    # an allowed word is text, not a pattern
    f = cred(OD, [at("s", "2025-07-08 10:00", "B1")], shifts=[SURG],
             over={"surgery_allowed_places": ["."]})
    assert len(f) == 1


def test_off_duty_use_a_latin_place_word_is_a_word_not_part_of_one():
    # "OR" in CORRIDOR-PC, WORKSTATION-12 or ORTHO is not the operating room; OR2, OR-3 and
    # "main or" are (case is ignored); 手术 inside 手术室 is (Chinese has no word boundary)
    names = ["CORRIDOR-PC", "WORKSTATION-12", "ORTHO-1", "OR2", "OR-3", "main or", "手术室PC",
             "Theatre5", "theatres"]
    events = [ev("s", "p1", f"2025-07-08 10:{i:02d}", workstation=n)
              for i, n in enumerate(names)]
    f = cred(OD, events, shifts=[SURG])
    assert f["event_ids"].tolist() == [ids(events[:3] + events[8:])]
    assert f["message_args"].iloc[0]["count"] == 4
    f = cred(OD, events, shifts=[SURG], over={"surgery_allowed_places": ["", "术室"]})
    assert f["event_ids"].tolist() == [ids(events[:6] + events[7:])]


def test_place_words_pattern_bounds_latin_ends_only():
    from emraudit.detectors.cred import place_words_pattern
    assert place_words_pattern(["OR", "手术", "", "C3", "3C", "a.b"]) == (
        r"(?<![A-Za-z])OR(?![A-Za-z])|手术|(?<![A-Za-z])C3|3C(?![A-Za-z])"
        r"|(?<![A-Za-z])a\.b(?![A-Za-z])")
    assert place_words_pattern(["手", "A"]) == r"手|(?<![A-Za-z])A(?![A-Za-z])"
    assert place_words_pattern([]) == ""
    # a Chinese word right after Latin letters still matches (ICU手术室)
    events = [ev("s", "p1", "2025-07-08 10:00", workstation="ICU手术室"),
              ev("s", "p1", "2025-07-08 10:01", workstation="ICU-9")]
    f = cred(OD, events, shifts=[SURG])
    assert f["event_ids"].tolist() == [ids(events[1:])]


def test_off_duty_use_surgery_in_the_blocks_own_location():
    block = {**SURG, "location": "骨科护士站"}
    events = [at("s", "2025-07-08 10:00", "B1"), at("s", "2025-07-08 10:01", "A1")]
    f = cred(OD, events, shifts=[block], over={"surgery_allowed_places": []})
    assert f["event_ids"].tolist() == [ids(events[1:])]
    # no location on the block: nothing is its own place
    f = cred(OD, events, shifts=[{**SURG, "location": None}],
             over={"surgery_allowed_places": []})
    assert f["event_ids"].tolist() == [ids(events)]


def test_off_duty_use_leave_and_offsite_have_no_theatre_exemption():
    events = [at("u", "2025-07-08 10:00", "OR1"), at("o", "2025-07-08 10:00", "OR1")]
    f = cred(OD, events, shifts=[LEAVE, OFFS])
    assert sorted(f["user_id"]) == ["o", "u"]


@pytest.mark.parametrize("minimum,found", [(2, True), (3, True), (4, False)])
def test_off_duty_use_min_events_counts_one_block(minimum, found):
    second = {**LEAVE, "start": "2025-07-11 00:00", "end": "2025-07-12 00:00"}
    events = [at("u", f"2025-07-08 10:0{i}", "A1") for i in range(3)] + \
        [at("u", "2025-07-11 10:00", "A1"), at("u", "2025-07-11 10:01", "A1")]
    f = cred(OD, events, shifts=[LEAVE, second], over={"min_events": minimum})
    assert f["evidence"].apply(lambda e: e["events"]).tolist() == \
        ([3, 2] if minimum == 2 else [3] if found else [])
    if found:
        assert f.iloc[0]["evidence"]["thresholds"]["min_events"] == minimum
    # a block left out does not hide the next one
    f = cred(OD, events, shifts=[second, LEAVE], over={"min_events": minimum})
    assert sorted(f["evidence"].apply(lambda e: e["events"])) == \
        ([2, 3] if minimum == 2 else [3] if found else [])


def test_off_duty_use_a_block_needs_an_event_in_the_window():
    before = {**LEAVE, "start": "2025-07-05 00:00", "end": "2025-07-07 12:00"}
    events = [at("u", "2025-07-06 10:00", "A1")]
    assert cred(OD, events, shifts=[before]).empty
    events.append(at("u", "2025-07-07 10:00", "A1"))
    f = cred(OD, events, shifts=[before])
    assert f["event_ids"].tolist() == [ids(events)]


def test_off_duty_use_blocks_are_the_accounts_own_and_places_without_workstations():
    events = [ev("u", "p1", "2025-07-08 10:00"), ev("v", "p1", "2025-07-08 10:00")]
    f = cred(OD, events, shifts=[LEAVE, {**LEAVE, "user_id": "nobody"}])
    assert f["user_id"].tolist() == ["u"]
    r = f.iloc[0]
    assert r["message_args"]["places"] == [] and r["evidence"]["places"] == []
    assert r["summary"] == ("account u was used 1 time while its owner was on leave "
                            "(2025-07-08 00:00 – 2025-07-10 00:00)")
    assert r["patient_id"] == "p1"


def test_off_duty_use_without_a_patient_names_none():
    events = [at("u", "2025-07-08 10:00", "A1", "login"), at("u", "2025-07-08 10:01", "A1",
                                                             "logout")]
    r = cred(OD, events, shifts=[LEAVE]).iloc[0]
    assert (r["patient_id"], r["evidence"]["actions"]) == ("", {"login": 1, "logout": 1})
    events.append(at("u", "2025-07-08 10:02", "A1", patient="p7"))
    assert cred(OD, events, shifts=[LEAVE]).iloc[0]["patient_id"] == "p7"


def test_off_duty_use_places_at_most_20_in_the_evidence():
    names = [f"T{i:02d}" for i in range(25)]
    events = [ev("u", "p1", f"2025-07-08 10:{i:02d}", workstation=n) for i, n in enumerate(names)]
    r = cred(OD, events, shifts=[LEAVE]).iloc[0]
    assert r["evidence"]["places"] == names[:20]
    assert r["message_args"]["places"] == names[:3]
    assert r["evidence"]["events"] == 25


def test_off_duty_use_overlapping_blocks_the_longest_running_one_holds_the_event():
    events = [at("u", "2025-07-08 10:00", "A1")]
    short = {"user_id": "u", "start": "2025-07-08 09:00", "end": "2025-07-08 12:00",
             "kind": "offsite"}
    f = cred(OD, events, shifts=[short, LEAVE])
    assert f["message_id"].tolist() == ["cred.off_duty_use.leave"]


def test_off_duty_use_empty_inputs_and_shared_hosts():
    assert cred(OD, [], shifts=[LEAVE]).empty
    assert cred(OD, [at("u", "2025-07-08 10:00", "A1")]).empty                 # no roster
    assert cred(OD, [at("u", "2025-07-08 10:00", "A1")], shifts=[]).empty
    assert cred(OD, [at("u", "2025-07-08 10:00", "A1", outcome="failure")],
                shifts=[LEAVE]).empty
    assert cred(OD, [at("u", "2025-07-08 10:00", "VDI-01")], shifts=[LEAVE],
                over={"shared_ip_ranges": ["10.9.0.0/24"]}).empty
    assert len(cred(OD, [at("u", "2025-07-08 10:00", "VDI-01")], shifts=[LEAVE])) == 1
    assert cred(OD, [at("u", "2025-07-08 10:00", "VDI-01")], shifts=[LEAVE],
                over={"shared_workstations": ["VDI-*"]}).empty
    assert cred(OD, [at("u", "2025-07-11 10:00", "A1")], shifts=[LEAVE]).empty


# =========================================================================== inactive_account

IA = "cred.inactive_account"
STAFF = [{"user_id": "gone", "role": "nurse", "status": "terminated",
          "end_date": "2025-07-08"},
         {"user_id": "left", "role": "nurse", "end_date": "2025-07-08"},        # active
         {"user_id": "term", "role": "nurse", "status": "离职"},
         {"user_id": "later", "role": "nurse", "status": "terminated",
          "end_date": "2025-07-20"},
         {"user_id": "ok", "role": "nurse", "start_date": "2020-01-01"},
         {"user_id": "new", "role": "nurse", "start_date": "2025-07-07"}]


def test_inactive_account_departed_findings_written_out():
    from emraudit.detectors.base import finding_id
    events = [ev("gone", "p1", "2025-07-10 09:00", "view"),
              ev("gone", "p2", "2025-07-10 10:00", "print"),
              ev("gone", "p2", "2025-07-10 11:00", "view"),
              ev("gone", "p1", "2025-07-11 09:00", "view"),
              ev("term", "p3", "2025-07-08 10:00", "sign")]
    f = cred(IA, events, users=STAFF)
    rows = {(r["user_id"], r["evidence"]["day"]): r for r in f.to_dict("records")}
    assert sorted(rows) == [("gone", "2025-07-10"), ("gone", "2025-07-11"),
                            ("term", "2025-07-08")]
    r = rows[("gone", "2025-07-10")]
    assert r["finding_id"] == finding_id(IA, "gone|departed|2025-07-10")
    assert (r["severity"], r["patient_id"]) == ("high", "")
    assert r["score"] == pytest.approx(2.3)
    assert r["event_ids"] == ids(events[:3])
    assert (r["start"], r["end"]) == ("2025-07-10T09:00:00+08:00", "2025-07-10T11:00:00+08:00")
    assert r["message_id"] == "cred.inactive_account.ended"
    assert r["message_args"] == {"user": "gone", "count": 3, "day": "2025-07-10",
                                 "end_date": "2025-07-08T00:00:00+08:00"}
    assert r["evidence"] == {"day": "2025-07-10", "reason": "departed", "status": "terminated",
                             "end_date": "2025-07-08T00:00:00+08:00", "events": 3,
                             "patients": 2, "actions": {"view": 2, "print": 1},
                             "thresholds": {"end_grace_days": 1.0}}
    assert r["summary"] == ("account gone was used 3 times on 2025-07-10 after the end date "
                            "2025-07-08")
    r = rows[("gone", "2025-07-11")]
    assert (r["patient_id"], r["score"]) == ("p1", pytest.approx(2.1))
    r = rows[("term", "2025-07-08")]
    assert r["finding_id"] == finding_id(IA, "term|departed|2025-07-08")
    assert r["message_id"] == "cred.inactive_account.terminated"
    assert r["message_args"] == {"user": "term", "count": 1, "day": "2025-07-08",
                                 "end_date": None}
    assert r["evidence"] == {"day": "2025-07-08", "reason": "departed", "status": "terminated",
                             "end_date": None, "events": 1, "patients": 1,
                             "actions": {"sign": 1}, "thresholds": {"end_grace_days": 1.0}}
    assert r["summary"] == ("account term was used 1 time on 2025-07-08 while the account is "
                            "terminated")


@pytest.mark.parametrize("ts,found", [("2025-07-08 12:00", False),
                                      ("2025-07-08 12:00:01", True)])
def test_inactive_account_end_grace_days_parameter(ts, found):
    f = cred(IA, [ev("left", "p1", ts)], users=STAFF, over={"end_grace_days": 0.5})
    assert (len(f) == 1) is found
    if found:
        r = f.iloc[0]
        assert r["evidence"]["status"] == "active"           # the end date alone decides
        assert r["evidence"]["thresholds"] == {"end_grace_days": 0.5}


def test_inactive_account_a_terminated_status_with_an_end_date_waits_for_that_date():
    events = [ev("later", "p1", "2025-07-10 10:00"), ev("later", "p1", "2025-07-13 10:00")]
    assert cred(IA, events, users=STAFF).empty
    f = cred(IA, [ev("later", "p1", "2025-07-21 00:00:01")], users=STAFF,
             window=("2025-07-14", "2025-07-28"))
    assert f["message_id"].tolist() == ["cred.inactive_account.ended"]


def test_inactive_account_departed_only_in_window_successes_of_listed_accounts():
    events = [ev("gone", "p1", "2025-07-14 10:00"),                  # after the window
              ev("gone", "p1", "2025-07-10 10:00", outcome="failure"),
              ev("stranger", "p1", "2025-07-10 10:00")]
    assert cred(IA, events, users=STAFF, over={"dormant_days": 0.0}).empty
    assert cred(IA, [], users=STAFF).empty
    assert cred(IA, [ev("gone", "p1", "2025-07-10 10:00")], users=None).empty
    f = cred(IA, [ev("gone", "p1", "2025-07-10 10:00")], users=STAFF[:1] + STAFF[:1])
    assert len(f) == 1


def test_inactive_account_departed_days_are_site_local():
    events = [ev("gone", "p1", "2025-07-10 07:00"),          # 23:00 UTC the day before
              ev("gone", "p1", "2025-07-10 09:00")]
    f = cred(IA, events, users=STAFF)
    assert [(r["evidence"]["day"], r["evidence"]["events"]) for r in f.to_dict("records")] \
        == [("2025-07-10", 2)]


def test_inactive_account_lookback_follows_dormant_days_rounded_up():
    cls = all_detectors()[IA]
    assert cls(dormant_days=90.5).effective_lookback_days() == 92
    assert cls(dormant_days=1.0).effective_lookback_days() == 2
    assert cls(dormant_days=0.0).effective_lookback_days() == 0
    assert cls.lookback_days == 91


def _dormant(events, **kw):
    kw.setdefault("users", STAFF)
    return cred(IA, events, **kw)


def test_dormant_finding_written_out_from_a_previous_event():
    from emraudit.detectors.base import finding_id
    events = [ev("ok", "p1", "2025-04-01 10:00"),
              ev("ok", "p1", "2025-07-08 10:00", "view"),
              ev("ok", "p1", "2025-07-08 12:00", "print"),
              ev("ok", "p1", "2025-07-09 09:59:59"),               # within a day of the return
              ev("ok", "p2", "2025-07-09 10:00")]                  # a day later: not
    f = _dormant(events)
    assert len(f) == 1
    r = f.iloc[0]
    assert r["finding_id"] == finding_id(IA, "ok|dormant|2025-07-08")
    assert (r["severity"], r["patient_id"]) == ("medium", "p1")
    assert r["event_ids"] == ids(events[1:4])
    assert (r["start"], r["end"]) == ("2025-07-08T10:00:00+08:00", "2025-07-09T09:59:59+08:00")
    assert r["score"] == pytest.approx(1.98)                       # 98 idle days
    assert r["message_id"] == "cred.inactive_account.dormant"
    assert r["message_args"] == {"user": "ok", "day": "2025-07-08", "days": 98}
    assert r["evidence"] == {"day": "2025-07-08", "reason": "dormant", "idle_days": 98.0,
                             "last_activity_before": "2025-04-01T10:00:00+08:00",
                             "thresholds": {"dormant_days": 90.0}}
    assert r["summary"] == "account ok was used on 2025-07-08 after 98 days without any activity"


def test_dormant_gap_is_the_accounts_own_and_its_day_holds_its_own_successes():
    events = [ev("ok", "p1", "2025-04-01 10:00"),
              ev("zz", "p1", "2025-06-01 10:00"),                  # another account's use
              ev("zz", "p1", "2025-07-08 09:00"),
              ev("ok", "p1", "2025-07-08 10:00"),
              ev("ok", "p1", "2025-07-08 10:30", outcome="failure"),
              ev("zz", "p2", "2025-07-08 11:00"),
              ev("ok", "p2", "2025-07-08 12:00")]
    f = _dormant(events)
    assert [(r["user_id"], r["event_ids"], r["evidence"]["idle_days"])
            for r in f.to_dict("records")] == [("ok", ids([events[3], events[6]]), 98.0)]
    assert f.iloc[0]["patient_id"] == ""


@pytest.mark.parametrize("last,found", [("2025-04-09 10:00", True),
                                        ("2025-04-09 10:00:01", False)])
def test_dormant_gap_edge(last, found):
    events = [ev("other", "p9", "2025-03-01 10:00"), ev("ok", "p1", last),
              ev("ok", "p1", "2025-07-08 10:00")]
    f = _dormant(events)
    assert (len(f) == 1) is found
    if found:
        assert f.iloc[0]["evidence"]["idle_days"] == 90.0


@pytest.mark.parametrize("first,found", [("2025-04-09 10:00", True),
                                         ("2025-04-09 10:00:01", False)])
def test_dormant_first_event_of_an_account_needs_history_reaching_back_far_enough(first, found):
    events = [ev("other", "p9", first), ev("ok", "p1", "2025-07-08 10:00")]
    f = _dormant(events)
    assert (len(f) == 1) is found
    if found:
        r = f.iloc[0]
        assert r["evidence"]["last_activity_before"] is None
        assert r["evidence"]["idle_days"] == 90.0
        assert r["message_args"]["days"] == 90


@pytest.mark.parametrize("days,found", [(30.0, True), (31.0, False)])
def test_dormant_days_parameter_and_severity(days, found):
    events = [ev("ok", "p1", "2025-06-08 10:00"), ev("ok", "p1", "2025-07-08 10:00")]
    f = _dormant(events, over={"dormant_days": days, "dormant_severity": "critical"})
    assert (len(f) == 1) is found
    if found:
        r = f.iloc[0]
        assert r["severity"] == "critical"
        assert r["evidence"]["thresholds"] == {"dormant_days": 30.0}


def test_dormant_days_of_one_day_or_less_still_check():
    events = [ev("ok", "p1", "2025-07-08 10:00"), ev("ok", "p1", "2025-07-09 10:00")]
    f = _dormant(events, over={"dormant_days": 1.0})
    assert f["evidence"].tolist() == [{"day": "2025-07-09", "reason": "dormant",
                                       "idle_days": 1.0,
                                       "last_activity_before": "2025-07-08T10:00:00+08:00",
                                       "thresholds": {"dormant_days": 1.0}}]
    assert f["message_args"].tolist() == [{"user": "ok", "day": "2025-07-09", "days": 1}]


def test_dormant_off_when_zero_or_history_too_short():
    events = [ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-08 10:00")]
    assert _dormant(events, over={"dormant_days": 0.0}).empty
    assert _dormant(events[1:]).empty
    assert len(_dormant(events)) == 1


def test_dormant_only_in_window_and_the_history_of_every_partition():
    # the resumption itself must be in the window
    events = [ev("ok", "p1", "2025-03-01 10:00"), ev("ok", "p1", "2025-07-06 10:00")]
    assert _dormant(events).empty
    # one partition holds only the return; the whole history reaches back to March
    ctx = make_ctx([ev("ok", "p1", "2025-07-08 10:00")], window=W, users=STAFF)
    first = pd.Timestamp("2025-03-01 10:00", tz="Asia/Shanghai")
    ctx = dataclasses.replace(ctx, population={"history": {
        "first": first, "last": pd.Timestamp("2025-07-13 10:00", tz="Asia/Shanghai")}})
    f = run(IA, ctx)
    assert f["evidence"].tolist() == [{"day": "2025-07-08", "reason": "dormant",
                                       "idle_days": 129.0, "last_activity_before": None,
                                       "thresholds": {"dormant_days": 90.0}}]


@pytest.mark.parametrize("start,found", [("2025-03-31 10:00", False),
                                         ("2025-03-31 09:59:59", True)])
def test_dormant_new_starters_are_not_dormant(start, found):
    users = [{"user_id": "ok", "role": "nurse", "start_date": start}]
    events = [ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-08 10:00")]
    assert (len(_dormant(events, users=users)) == 1) is found


def test_dormant_a_user_missing_from_the_staff_list_or_without_start_date():
    events = [ev("zz", "p1", "2025-04-01 10:00"), ev("zz", "p1", "2025-07-08 10:00")]
    assert _dormant(events)["user_id"].tolist() == ["zz"]
    assert _dormant(events, users=[{"user_id": "a", "role": "nurse"}])["user_id"].tolist() \
        == ["zz"]


@pytest.mark.parametrize("start,end,explained", [
    ("2025-04-15", "2025-07-07", True),
    ("2025-03-01", "2025-04-01 10:00", False),         # ends when the gap starts
    ("2025-03-01", "2025-04-01 10:00:01", True),
    ("2025-07-08 10:00", "2025-07-20", False),         # starts at the return
    ("2025-07-08 09:59:59", "2025-07-20", True),
])
def test_dormant_rostered_leave_overlapping_the_gap_explains_it(start, end, explained):
    events = [ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-08 10:00")]
    shifts = [{"user_id": "ok", "start": start, "end": end, "kind": "leave"}]
    assert _dormant(events, shifts=shifts).empty is explained


def test_dormant_only_leave_of_that_account_explains():
    events = [ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-08 10:00"),
              ev("zz", "p1", "2025-04-01 10:00"), ev("zz", "p1", "2025-07-08 11:00")]
    shifts = [{"user_id": "ok", "start": "2025-05-01", "end": "2025-06-01", "kind": "duty"},
              {"user_id": "zz", "start": "2025-05-01", "end": "2025-06-01", "kind": "leave"}]
    assert _dormant(events, shifts=shifts)["user_id"].tolist() == ["ok"]


def test_departed_use_is_not_also_a_dormant_return():
    events = [ev("gone", "p1", "2025-04-01 10:00"), ev("gone", "p1", "2025-07-10 10:00"),
              ev("ok", "p1", "2025-04-01 10:00"), ev("ok", "p1", "2025-07-10 10:00",
                                                     outcome="failure")]
    f = _dormant(events)
    assert f["message_id"].tolist() == ["cred.inactive_account.ended"]
    assert f["severity"].tolist() == ["high"]


# =========================================================================== acting_mismatch

AM = "cred.acting_mismatch"
TEAM = [{"user_id": "teacher", "role": "physician"},
        {"user_id": "intern", "role": "trainee", "supervisor_id": "teacher"},
        {"user_id": "intern2", "role": "trainee", "supervisor_id": "boss"},
        {"user_id": "boss", "role": "physician"}]


def test_acting_mismatch_findings_written_out():
    from emraudit.detectors.base import finding_id
    events = [ev("teacher", "p1", "2025-07-08 10:00", "sign", acting_user_id="intern"),
              ev("teacher", "p1", "2025-07-08 10:05", "update", acting_user_id="intern"),
              ev("teacher", "p1", "2025-07-08 10:06", "update", acting_user_id="teacher"),
              ev("teacher", "p2", "2025-07-08 10:07", "view"),
              ev("teacher", "p2", "2025-07-08 11:00", "sign", acting_user_id="intern2"),
              ev("intern", "p3", "2025-07-09 09:00", "sign", acting_user_id="teacher")]
    f = cred(AM, events, users=TEAM)
    rows = {(r["user_id"], r["message_args"]["acting"]): r for r in f.to_dict("records")}
    assert sorted(rows) == [("teacher", "intern"), ("teacher", "intern2")]
    r = rows[("teacher", "intern")]
    assert r["finding_id"] == finding_id(AM, "teacher|intern|2025-07-08")
    assert (r["severity"], r["patient_id"], r["score"]) == ("high", "p1", 3.0)
    assert r["event_ids"] == ids(events[:2])
    assert (r["start"], r["end"]) == ("2025-07-08T10:00:00+08:00", "2025-07-08T10:05:00+08:00")
    assert r["message_id"] == AM
    assert r["message_args"] == {"acting": "intern", "count": 2, "user": "teacher",
                                 "day": "2025-07-08", "trainee": True}
    assert r["evidence"] == {
        "day": "2025-07-08", "account": "teacher", "acting": "intern", "events": 2,
        "patients": 1, "actions": {"sign": 1, "update": 1},
        "trainee_under_supervisor_account": True,
        "thresholds": {"min_events": 1, "allow_supervisor_in_trainee_session": True}}
    assert r["summary"] == ("intern acted 2 times under the account of teacher on 2025-07-08 "
                            "(a trainee under the supervisor's login)")
    r = rows[("teacher", "intern2")]          # intern2's supervisor is boss, not teacher
    assert (r["score"], r["patient_id"]) == (1.0, "p2")
    assert r["message_args"]["trainee"] is False
    assert r["evidence"]["trainee_under_supervisor_account"] is False
    assert r["summary"] == "intern2 acted 1 time under the account of teacher on 2025-07-08"
    # an acting person missing from the staff list is no trainee
    f = cred(AM, [ev("teacher", "p1", "2025-07-08 10:00", acting_user_id="zz")], users=TEAM)
    assert f.iloc[0]["message_args"]["trainee"] is False


def test_acting_mismatch_a_supervisor_in_a_trainee_session():
    own = ev("intern", "p1", "2025-07-08 10:00", "sign", acting_user_id="teacher")
    other = ev("intern2", "p1", "2025-07-08 10:00", "sign", acting_user_id="teacher")
    f = cred(AM, [own, other], users=TEAM)
    assert f["user_id"].tolist() == ["intern2"]         # teacher is not intern2's supervisor
    f = cred(AM, [own, other], users=TEAM,
             over={"allow_supervisor_in_trainee_session": False})
    assert sorted(f["user_id"]) == ["intern", "intern2"]
    f = f[f["user_id"] == "intern"]
    assert f.iloc[0]["evidence"]["thresholds"] == {"min_events": 1,
                                                   "allow_supervisor_in_trainee_session": False}
    assert f.iloc[0]["message_args"]["trainee"] is False


@pytest.mark.parametrize("minimum,found", [(2, True), (3, True), (4, False)])
def test_acting_mismatch_min_events_per_account_acting_person_and_day(minimum, found):
    events = [ev("a", "p1", f"2025-07-08 10:0{i}", acting_user_id="b") for i in range(3)] + \
        [ev("a", "p1", "2025-07-08 11:00", acting_user_id="c"),
         ev("a", "p1", "2025-07-09 10:00", acting_user_id="b"),
         ev("x", "p1", "2025-07-08 10:00", acting_user_id="b")]
    f = cred(AM, events, over={"min_events": minimum})
    assert [(r["user_id"], r["message_args"]["acting"], r["message_args"]["count"])
            for r in f.to_dict("records")] == ([("a", "b", 3)] if found else [])
    if found:
        assert f.iloc[0]["evidence"]["thresholds"]["min_events"] == minimum


def test_acting_mismatch_a_small_group_does_not_hide_the_next():
    events = [ev("a", "p1", "2025-07-07 10:00", acting_user_id="b")] + \
        [ev("a", "p1", f"2025-07-08 10:0{i}", acting_user_id="b") for i in range(2)]
    f = cred(AM, events, over={"min_events": 2})
    assert [(r["evidence"]["day"], r["evidence"]["events"]) for r in f.to_dict("records")] \
        == [("2025-07-08", 2)]


def test_acting_mismatch_in_window_successes_only_and_no_acting_column():
    events = [ev("a", "p1", "2025-07-06 10:00", acting_user_id="b"),
              ev("a", "p1", "2025-07-08 10:00", acting_user_id="b", outcome="failure"),
              ev("a", "p1", "2025-07-08 11:00", acting_user_id="a")]
    assert cred(AM, events).empty
    assert cred(AM, [ev("a", "p1", "2025-07-08 10:00")]).empty
    assert cred(AM, []).empty
    f = cred(AM, [ev("a", "p1", "2025-07-08 10:00", acting_user_id="b")], users=[])
    assert f["message_args"].tolist() == [{"acting": "b", "count": 1, "user": "a",
                                           "day": "2025-07-08", "trainee": False}]


def test_acting_mismatch_days_are_site_local():
    events = [ev("a", "p1", "2025-07-08 23:59", acting_user_id="b"),
              ev("a", "p1", "2025-07-09 00:01", acting_user_id="b")]
    f = cred(AM, events)
    assert [r["evidence"]["day"] for r in f.to_dict("records")] == ["2025-07-08", "2025-07-09"]


# =========================================================================== expired_access

EA = "cred.expired_access"
TEMP = [{"user_id": "t", "role": "实习生", "access_until": "2025-06-08"},
        {"user_id": "v", "role": "vendor", "access_until": "2025-07-01"},
        {"user_id": "n", "role": "nurse"}]


def test_expired_access_findings_written_out():
    from emraudit.detectors.base import finding_id
    events = [ev("t", "p1", "2025-07-08 06:00", "view"),
              ev("t", "p2", "2025-07-08 09:00", "print"),
              ev("v", "p3", "2025-07-08 12:00", "view"),
              ev("n", "p3", "2025-07-08 12:00", "view")]
    f = cred(EA, events, users=TEMP)
    rows = {r["user_id"]: r for r in f.to_dict("records")}
    assert sorted(rows) == ["t", "v"]
    r = rows["t"]
    assert r["finding_id"] == finding_id(EA, "t|2025-07-08")
    assert (r["severity"], r["patient_id"]) == ("high", "")
    assert r["score"] == pytest.approx(1.0 + 0.2 + 30.25 / 30)
    assert r["event_ids"] == ids(events[:2])
    assert (r["start"], r["end"]) == ("2025-07-08T06:00:00+08:00", "2025-07-08T09:00:00+08:00")
    assert r["message_id"] == EA
    assert r["message_args"] == {"role": "trainee", "user": "t", "count": 2,
                                 "day": "2025-07-08", "until": "2025-06-08T00:00:00+08:00"}
    assert r["evidence"] == {"day": "2025-07-08", "role": "trainee",
                             "access_until": "2025-06-08T00:00:00+08:00", "days_after": 30.2,
                             "events": 2, "patients": 2,
                             "thresholds": {"grace_days": 1.0}}
    assert r["summary"] == ("trainee account t was used 2 times on 2025-07-08 after its access "
                            "ended on 2025-06-08")
    r = rows["v"]
    assert (r["severity"], r["patient_id"]) == ("medium", "p3")
    assert r["score"] == pytest.approx(1.0 + 0.1 + 7.5 / 30)
    assert r["evidence"]["days_after"] == 7.5


@pytest.mark.parametrize("ts,found", [("2025-07-08 00:00", False),
                                      ("2025-07-08 00:00:01", True)])
def test_expired_access_grace_days_parameter(ts, found):
    f = cred(EA, [ev("v", "p1", ts)], users=TEMP, over={"grace_days": 7.0})
    assert (len(f) == 1) is found
    if found:
        assert f.iloc[0]["evidence"]["thresholds"] == {"grace_days": 7.0}


def test_expired_access_roles_filter():
    events = [ev("t", "p1", "2025-07-08 10:00"), ev("v", "p1", "2025-07-08 10:00")]
    assert cred(EA, events, users=TEMP, over={"roles": ["trainee"]})["user_id"].tolist() == \
        ["t"]
    assert sorted(cred(EA, events, users=TEMP, over={"roles": ["it", "trainee"]})[
        "user_id"]) == ["t", "v"]
    assert cred(EA, events, users=TEMP, over={"roles": ["nurse"]}).empty


def test_expired_access_one_finding_per_account_and_local_day_in_window_successes():
    events = [ev("v", "p1", "2025-07-06 10:00"),                    # before the window
              ev("v", "p1", "2025-07-08 10:00", outcome="failure"),
              ev("v", "p1", "2025-07-08 23:59"), ev("v", "p1", "2025-07-09 00:01")]
    f = cred(EA, events, users=TEMP)
    assert [(r["evidence"]["day"], r["event_ids"]) for r in f.to_dict("records")] == \
        [("2025-07-08", ids(events[2:3])), ("2025-07-09", ids(events[3:4]))]


def test_expired_access_empty_and_no_users():
    assert cred(EA, [], users=TEMP).empty
    assert cred(EA, [ev("v", "p1", "2025-07-08 10:00")]).empty
    assert cred(EA, [ev("v", "p1", "2025-07-08 10:00")], users=TEMP[2:]).empty
    assert cred(EA, [ev("zz", "p1", "2025-07-08 10:00")], users=TEMP).empty


# =========================================================================== external_access

EX = "cred.external_access"
NETS = ("10.0.0.0/8", "fd00::/8")
ROSTER = [{"user_id": "u1", "start": "2025-07-08 08:00", "end": "2025-07-08 18:00",
           "kind": "duty", "ward": "W1"}]
PEOPLE = [{"user_id": "u1", "role": "nurse"}, {"user_id": "v1", "role": "it"}]


def external(events, over=None, networks=NETS, **kw):
    kw.setdefault("window", W)
    kw.setdefault("shifts", ROSTER)
    kw.setdefault("users", PEOPLE)
    ctx = dataclasses.replace(make_ctx(events, **kw), networks=tuple(networks))
    return run(EX, ctx, **(over or {}))


def test_external_access_finding_written_out():
    from emraudit.detectors.base import finding_id
    events = [ev("u1", None, "2025-07-08 21:55", "login", ip="198.51.100.9"),
              ev("u1", "p1", "2025-07-08 21:59", ip="198.51.100.9"),
              ev("u1", "p2", "2025-07-08 22:00", "export", ip="203.0.113.7"),
              ev("u1", "p2", "2025-07-08 22:10", "view", ip="2001:db8::1"),
              ev("u1", "p3", "2025-07-08 22:20", "view", ip="10.1.1.1"),      # inside
              ev("u1", "p3", "2025-07-08 22:30", "view", ip=None)]            # unknown
    f = external(events)
    assert len(f) == 1
    r = f.iloc[0]
    assert r["finding_id"] == finding_id(EX, "u1|2025-07-08")
    # off duty (roster ends 18:00), at night and exported: three steps
    assert (r["severity"], r["rectification_item"], r["patient_id"]) == ("critical", "8", "")
    assert r["score"] == pytest.approx(4.0 + math.log2(3))
    assert r["event_ids"] == ids(events[:4])
    assert (r["start"], r["end"]) == ("2025-07-08T21:55:00+08:00", "2025-07-08T22:10:00+08:00")
    assert r["message_id"] == EX
    assert r["message_args"] == {"user": "u1", "records": 3, "patients": 2,
                                 "day": "2025-07-08", "off_duty": True, "night": True,
                                 "outputs": True}
    assert r["evidence"] == {
        "day": "2025-07-08",
        "addresses": {"198.51.100.9": 2, "2001:db8::1": 1, "203.0.113.7": 1},
        "patient_events": 3, "patients": 2, "night_events": 2, "off_duty_events": 4,
        "duty_basis": "roster", "output_events": 1, "networks": ["10.0.0.0/8", "fd00::/8"],
        "thresholds": {"min_patient_events": 1, "night_hours": [22, 6]}}
    assert r["summary"] == ("account u1 opened patient records 3 times (2 patients) from "
                            "outside the hospital's networks on 2025-07-08; off duty; at "
                            "night; records printed or exported")


def test_external_access_on_duty_by_day_is_medium_with_one_patient():
    events = [ev("u1", "p1", "2025-07-08 10:00", ip="8.8.8.8")]
    r = external(events).iloc[0]
    assert (r["severity"], r["rectification_item"], r["patient_id"]) == ("medium", "9", "p1")
    assert r["score"] == pytest.approx(2.0)
    assert r["message_args"] == {"user": "u1", "records": 1, "patients": 1,
                                 "day": "2025-07-08", "off_duty": False, "night": False,
                                 "outputs": False}
    assert (r["evidence"]["night_events"], r["evidence"]["off_duty_events"],
            r["evidence"]["output_events"], r["evidence"]["duty_basis"]) == (0, 0, 0, "roster")
    assert r["summary"] == ("account u1 opened patient records 1 time (1 patients) from "
                            "outside the hospital's networks on 2025-07-08")


@pytest.mark.parametrize("action", ["print", "export", "copy", "download"])
def test_external_access_each_output_action_is_a_step_and_item_8(action):
    r = external([ev("u1", "p1", "2025-07-08 10:00", action, ip="8.8.8.8")]).iloc[0]
    assert (r["severity"], r["rectification_item"]) == ("high", "8")
    assert r["evidence"]["output_events"] == 1 and r["message_args"]["outputs"] is True


def test_external_access_without_a_roster_duty_is_inferred():
    events = [ev("v1", "p1", "2025-07-08 10:00", ip="8.8.8.8"),
              ev("v1", "p1", "2025-07-12 10:00", ip="8.8.8.8")]           # a Saturday
    f = external(events)
    assert [(r["severity"], r["evidence"]["duty_basis"], r["evidence"]["off_duty_events"])
            for r in f.to_dict("records")] == [("medium", "inferred", 0),
                                                ("high", "inferred", 1)]


@pytest.mark.parametrize("ts,night", [("21:59", False), ("22:00", True), ("05:59", True),
                                      ("06:00", False), ("00:00", True)])
def test_external_access_night_edges_across_midnight(ts, night):
    day = "2025-07-09" if ts < "12" else "2025-07-08"
    r = external([ev("v1", "p1", f"{day} {ts}", ip="8.8.8.8")]).iloc[0]
    assert r["message_args"]["night"] is night
    assert r["evidence"]["night_events"] == int(night)


@pytest.mark.parametrize("ts,night", [("00:59", False), ("01:00", True), ("04:59", True),
                                      ("05:00", False)])
def test_external_access_night_hours_parameter_within_a_day(ts, night):
    r = external([ev("v1", "p1", f"2025-07-09 {ts}", ip="8.8.8.8")],
                 over={"night_hours": [1, 5]}).iloc[0]
    assert r["message_args"]["night"] is night
    assert r["evidence"]["thresholds"] == {"min_patient_events": 1, "night_hours": [1, 5]}


@pytest.mark.parametrize("hours", [[0, 0], [6, 6], [23, 23]])
def test_external_access_night_from_equal_to_to_is_no_night(hours):
    # [from, to) with from = to holds no hour, as the schedule's office hours; it used to
    # make every hour night and raise every finding a level
    events = [ev("v1", "p1", "2025-07-08 23:30", ip="8.8.8.8"),
              ev("v1", "p1", "2025-07-09 06:30", ip="8.8.8.8"),
              ev("v1", "p1", "2025-07-09 10:00", ip="8.8.8.8")]
    f = external(events, over={"night_hours": hours})
    assert [(r["severity"], r["message_args"]["night"], r["evidence"]["night_events"])
            for r in f.to_dict("records")] == [("high", False, 0), ("high", False, 0)]


@pytest.mark.parametrize("minimum,found", [(2, True), (3, True), (4, False)])
def test_external_access_min_patient_events_counts_records_not_logins(minimum, found):
    events = [ev("v1", None, "2025-07-08 10:00", "login", ip="8.8.8.8"),
              ev("v1", None, "2025-07-08 10:01", "logout", ip="8.8.8.8"),
              ev("v1", "p1", "2025-07-08 10:02", ip="8.8.8.8"),
              ev("v1", "p1", "2025-07-08 10:03", ip="8.8.8.8"),
              ev("v1", "p2", "2025-07-08 10:04", ip="8.8.8.8"),
              ev("v1", "p3", "2025-07-09 10:04", ip="8.8.8.8")]
    f = external(events, over={"min_patient_events": minimum})
    got = [(r["evidence"]["day"], r["evidence"]["patient_events"], len(r["event_ids"]))
           for r in f.to_dict("records")]
    assert got == ([("2025-07-08", 3, 5)] if found else [])
    if found:
        assert f.iloc[0]["evidence"]["thresholds"]["min_patient_events"] == minimum
    # a day left out does not hide a later one
    f = external([ev("v1", "p1", "2025-07-07 10:00", ip="8.8.8.8")] + events[:5],
                 over={"min_patient_events": minimum})
    assert [r["evidence"]["day"] for r in f.to_dict("records")] == \
        (["2025-07-08"] if found else [])


def test_external_access_login_only_days_and_a_login_with_a_patient():
    assert external([ev("v1", None, "2025-07-08 10:00", "login", ip="8.8.8.8")]).empty
    r = external([ev("v1", None, "2025-07-08 10:00", "login", ip="8.8.8.8"),
                  ev("v1", "p1", "2025-07-08 10:01", "login", ip="8.8.8.8"),
                  ev("v1", "p2", "2025-07-08 10:02", "query", ip="8.8.8.8"),
                  ev("v1", "p3", "2025-07-08 10:03", "logout", ip="8.8.8.8")]).iloc[0]
    assert (r["evidence"]["patient_events"], r["patient_id"]) == (1, "p2")
    assert len(r["event_ids"]) == 4


def test_external_access_filters_window_failures_shared_hosts_and_ignored_roles():
    events = [ev("u1", "p1", "2025-07-06 10:00", ip="8.8.8.8"),                # before
              ev("u1", "p1", "2025-07-08 10:00", ip="8.8.8.8", outcome="failure"),
              ev("u1", "p1", "2025-07-08 10:01", ip="192.0.2.10"),              # shared
              ev("u1", "p1", "2025-07-08 10:02", ip="9.9.9.9", workstation="CTX-1")]
    assert external(events, over={"shared_ip_ranges": ["192.0.2.0/24"],
                                  "shared_workstations": ["CTX-*"]}).empty
    f = external(events)
    assert f["event_ids"].tolist() == [ids(events[2:])]
    events = [ev("u1", "p1", "2025-07-08 10:00", ip="8.8.8.8"),
              ev("v1", "p2", "2025-07-08 10:00", ip="8.8.8.8"),
              ev("zz", "p3", "2025-07-08 10:00", ip="8.8.8.8")]
    assert sorted(external(events, over={"ignore_roles": ["it"]})["user_id"]) == ["u1", "zz"]
    assert sorted(external(events, over={"ignore_roles": ["it", "nurse"]})["user_id"]) == \
        ["zz"]
    assert sorted(external(events, over={"ignore_roles": ["it"]}, users=None)["user_id"]) == \
        ["u1", "v1", "zz"]


def test_external_access_idle_without_networks_and_quiet_on_empty_input():
    ctx = dataclasses.replace(make_ctx([ev("u1", "p1", "2025-07-08 10:00", ip="8.8.8.8")],
                                       window=W), networks=())
    assert run(EX, ctx).empty
    assert ctx.notes == ["cred.external_access: no [site] networks declared; access from "
                         "outside the hospital is not checked"]
    assert external([]).empty
    assert external([ev("u1", "p1", "2025-07-08 10:00")]).empty           # no address
    assert external([ev("u1", "p1", "2025-07-08 10:00", ip="10.9.9.9")]).empty


def test_external_access_one_finding_per_account_and_local_day():
    events = [ev("v1", "p1", "2025-07-08 23:59", ip="8.8.8.8"),
              ev("v1", "p1", "2025-07-09 00:01", ip="8.8.8.8"),
              ev("u1", "p1", "2025-07-08 23:59", ip="8.8.8.8")]
    f = external(events)
    assert sorted((r["user_id"], r["evidence"]["day"], tuple(r["event_ids"]))
                  for r in f.to_dict("records")) == [
        ("u1", "2025-07-08", tuple(ids(events[2:]))),
        ("v1", "2025-07-08", tuple(ids(events[:1]))),
        ("v1", "2025-07-09", tuple(ids(events[1:2])))]


@pytest.mark.parametrize("hours", [[22], [22, 6, 1], [-1, 6], [22, 25], [25, 6]])
def test_external_access_refuses_night_hours_outside_the_day(hours):
    with pytest.raises(ValueError, match=r"^night_hours: expected \[from, to\] hours within "
                                         r"0\.\.24, got "):
        C.ExternalAccess(night_hours=hours)


@pytest.mark.parametrize("hours", [[0, 24], [24, 0], [6, 6], [0, 0]])
def test_external_access_accepts_night_hours_at_the_bounds(hours):
    assert C.ExternalAccess(night_hours=hours).p.night_hours == hours


def test_external_access_refuses_a_bad_shared_range_and_other_night_values():
    with pytest.raises(ValueError, match="not an IP range"):
        C.ExternalAccess(shared_ip_ranges=["bad"])
    for hours in ([True, 6], ["a", 6], [22.5, 6]):
        with pytest.raises(ValueError):
            C.ExternalAccess(night_hours=hours)
