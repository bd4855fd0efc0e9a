"""cred.external_access: patient records opened from outside the hospital's networks."""

from __future__ import annotations

import dataclasses

import pytest

from detector_frames import ev, make_ctx
from emraudit.detectors.cred import ExternalAccess

NETS = ("10.0.0.0/8", "fd00::/8")
W = ("2025-07-01", "2025-07-03")
ROSTER = [{"user_id": "u1", "start": "2025-07-01 08:00", "end": "2025-07-01 18:00",
           "kind": "duty", "ward": "W1"}]


def run(events, networks=NETS, shifts=ROSTER, **params):
    ctx = make_ctx(events, window=W, shifts=shifts)
    ctx = dataclasses.replace(ctx, networks=tuple(networks))
    return ExternalAccess(**params).run(ctx), ctx


def test_declaration():
    d = ExternalAccess.declaration()
    assert d["name_zh"] == "院外网络访问病历" and d["item"] == "9"
    assert d["note"] and d["false_positives"] and d["measure_zh"]


def test_inside_the_networks_and_unknown_addresses_are_quiet():
    found, _ = run([ev("u1", "p1", "2025-07-01 10:00", ip="10.2.3.4"),
                    ev("u1", "p1", "2025-07-01 10:01", ip="fd00::1"),
                    ev("u1", "p2", "2025-07-01 10:02", ip=None),
                    ev("u1", "p2", "2025-07-01 10:03", ip="not-an-ip")])
    assert found.empty


def test_without_declared_networks_it_is_idle_and_says_so():
    found, ctx = run([ev("u1", "p1", "2025-07-01 10:00", ip="8.8.8.8")], networks=())
    assert found.empty and any("no [site] networks" in n for n in ctx.notes)


def test_on_duty_daytime_reading_from_outside_is_medium():
    found, _ = run([ev("u1", "p1", "2025-07-01 10:00", ip="203.0.113.7"),
                    ev("u1", "p2", "2025-07-01 11:00", ip="203.0.113.7")])
    assert len(found) == 1
    f = found.iloc[0]
    assert f["severity"] == "medium" and f["rectification_item"] == "9"
    assert f["evidence"]["addresses"] == {"203.0.113.7": 2}
    assert f["evidence"]["patients"] == 2 and f["evidence"]["off_duty_events"] == 0


@pytest.mark.parametrize("ts,action,severity,item", [
    ("2025-07-01 19:30", "view", "high", "9"),        # off the roster (60 min slack)
    ("2025-07-01 23:00", "view", "critical", "9"),    # off the roster and at night
    ("2025-07-01 10:00", "print", "high", "8"),       # on duty, but printed from outside
    ("2025-07-01 05:59", "view", "critical", "9"),    # night ends at 06:00
    ("2025-07-01 06:00", "view", "high", "9"),
])
def test_off_roster_night_and_output_raise_it(ts, action, severity, item):
    found, _ = run([ev("u1", "p1", ts, action, ip="198.51.100.9")])
    f = found.iloc[0]
    assert (f["severity"], f["rectification_item"]) == (severity, item)


def test_logins_alone_and_shared_gateways_are_not_findings():
    found, _ = run([ev("u1", None, "2025-07-01 23:00", "login", ip="198.51.100.9"),
                    ev("u1", "p1", "2025-07-01 23:05", ip="192.0.2.10")],
                   shared_ip_ranges=["192.0.2.0/24"])
    assert found.empty


def test_one_finding_per_user_and_local_day_with_every_event():
    events = [ev("u1", "p1", "2025-07-01 23:50", ip="198.51.100.9"),
              ev("u1", None, "2025-07-01 23:49", "login", ip="198.51.100.9"),
              ev("u1", "p2", "2025-07-02 00:10", ip="198.51.100.9")]
    found, _ = run(events)
    assert len(found) == 2
    first = found.sort_values("start").iloc[0]
    assert sorted(first["event_ids"]) == sorted([events[0]["event_id"], events[1]["event_id"]])
    assert first["patient_id"] == "p1"
    again, _ = run(events)
    assert list(again["finding_id"]) == list(found["finding_id"])


def test_min_patient_events_edge():
    events = [ev("u1", "p1", "2025-07-01 10:00", ip="198.51.100.9"),
              ev("u1", "p2", "2025-07-01 10:05", ip="198.51.100.9")]
    assert len(run(events, min_patient_events=2)[0]) == 1
    assert run(events, min_patient_events=3)[0].empty


def test_bad_night_hours_are_refused():
    with pytest.raises(ValueError, match="night_hours"):
        ExternalAccess(night_hours=[22])


def test_networks_in_the_configuration_are_checked(tmp_path):
    from emraudit.config import load_config
    from emraudit.errors import ConfigError
    cfg = tmp_path / "emraudit.toml"
    cfg.write_text('[site]\nnetworks = ["10.0.0.0/8", "10.300.0.0/16"]\n'
                   '[sources.access_log]\npath = "a.csv"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="networks"):
        load_config(cfg)


@pytest.mark.parametrize("ts,severity", [("2025-07-01 10:00", "medium"),    # on duty, day
                                         ("2025-07-01 05:00", "critical"),  # off duty, night
                                         ("2025-07-01 06:00", "high")])     # off duty, not night
def test_night_hours_that_do_not_wrap_midnight(ts, severity):
    found, _ = run([ev("u1", "p1", ts, ip="198.51.100.9")], night_hours=[0, 6])
    assert found["severity"].tolist() == [severity]
