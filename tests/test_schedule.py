"""The duty schedule: roster (night shifts across midnight, slack), inferred hours from the
user's own history, office-hours fallback, all in site-local time (Asia/Shanghai)."""

from __future__ import annotations

import pandas as pd

from detector_frames import ev, make_ctx
from emraudit.detectors.schedule import duty_mask

WINDOW = ("2025-07-22", "2025-07-23")   # a Tuesday


def _history(user: str, hours: tuple[int, ...], days: int = 10, first_day: int = 10):
    """Activity of `user` at the given local hours on `days` consecutive July days."""
    rows = []
    for d in range(first_day, first_day + days):
        for h in hours:
            rows.append(ev(user, f"h{h}", f"2025-07-{d:02d} {h:02d}:15"))
    return rows


def _mask_of(ctx, event_id):
    on, basis = duty_mask(ctx)
    i = ctx.events.index[ctx.events["event_id"] == event_id][0]
    return bool(on[i]), str(basis[i])


def test_roster_night_shift_crosses_midnight_with_slack():
    shifts = [{"user_id": "n1", "start": "2025-07-21 19:00", "end": "2025-07-22 07:00",
               "kind": "duty"}]
    evs = [ev("n1", "p1", "2025-07-22 03:00", event_id="night"),
           ev("n1", "p1", "2025-07-22 07:59", event_id="slack_in"),
           ev("n1", "p1", "2025-07-22 08:01", event_id="slack_out"),
           ev("n1", "p1", "2025-07-21 17:59", event_id="before_out"),
           ev("n1", "p1", "2025-07-21 18:01", event_id="before_in")]
    ctx = make_ctx(evs, window=("2025-07-21", "2025-07-23"), shifts=shifts)
    assert _mask_of(ctx, "night") == (True, "roster")
    assert _mask_of(ctx, "slack_in") == (True, "roster")
    assert _mask_of(ctx, "slack_out") == (False, "roster")
    assert _mask_of(ctx, "before_in") == (True, "roster")
    assert _mask_of(ctx, "before_out") == (False, "roster")


def test_leave_rows_are_not_duty_and_overlapping_shifts_use_latest_end():
    shifts = [{"user_id": "u1", "start": "2025-07-22 08:00", "end": "2025-07-22 20:00",
               "kind": "duty"},
              {"user_id": "u1", "start": "2025-07-22 09:00", "end": "2025-07-22 10:00",
               "kind": "duty"},
              {"user_id": "u1", "start": "2025-07-22 21:00", "end": "2025-07-23 06:00",
               "kind": "leave"}]
    evs = [ev("u1", "p1", "2025-07-22 15:00", event_id="inside_long"),
           ev("u1", "p1", "2025-07-22 23:30", event_id="on_leave")]
    ctx = make_ctx(evs, window=WINDOW, shifts=shifts)
    assert _mask_of(ctx, "inside_long") == (True, "roster")
    assert _mask_of(ctx, "on_leave") == (False, "roster")


def test_roster_only_where_it_covers_the_user_else_inferred_or_office_hours():
    shifts = [{"user_id": "u1", "start": "2025-06-01 08:00", "end": "2025-06-01 17:00"}]
    evs = [ev("u1", "p1", "2025-07-22 10:00", event_id="far_from_roster"),
           ev("u2", "p1", "2025-07-22 10:00", event_id="no_roster")]
    ctx = make_ctx(evs, window=WINDOW, shifts=shifts)
    assert _mask_of(ctx, "far_from_roster") == (True, "office_hours")
    assert _mask_of(ctx, "no_roster") == (True, "office_hours")


def test_inferred_night_nurse_is_on_duty_at_3am_and_day_user_is_not():
    evs = _history("night", (20, 23, 2, 5)) + _history("day", (9, 12, 15))
    evs += [ev("night", "p9", "2025-07-22 03:00", event_id="n3"),
            ev("day", "p9", "2025-07-22 03:00", event_id="d3"),
            ev("day", "p9", "2025-07-22 11:00", event_id="d11")]
    ctx = make_ctx(evs, window=WINDOW)
    assert _mask_of(ctx, "n3") == (True, "inferred")
    assert _mask_of(ctx, "d3") == (False, "inferred")
    assert _mask_of(ctx, "d11") == (True, "inferred")


def test_inferred_hour_needs_k_distinct_days_and_smoothing_widens_by_one_hour():
    base = _history("u", (9, 10, 11), days=10)
    # with the scanned day itself: 22:xx on exactly 3 days (k = 3) and 02:xx on 2 days
    base += [ev("u", "x", f"2025-07-{d:02d} 22:30") for d in (11, 13)]
    base += [ev("u", "x", f"2025-07-{d:02d} 02:30") for d in (12,)]
    evs = base + [ev("u", "p", "2025-07-22 22:10", event_id="k3"),
                  ev("u", "p", "2025-07-22 23:10", event_id="smoothed"),
                  ev("u", "p", "2025-07-22 00:10", event_id="beyond"),
                  ev("u", "p", "2025-07-22 02:10", event_id="k2")]
    ctx = make_ctx(evs, window=WINDOW)
    assert _mask_of(ctx, "k3") == (True, "inferred")
    assert _mask_of(ctx, "smoothed") == (True, "inferred")
    assert _mask_of(ctx, "beyond") == (False, "inferred")
    assert _mask_of(ctx, "k2") == (False, "inferred")
    ctx = make_ctx(evs, window=WINDOW, params={"schedule": {"infer_smooth_hours": 0,
                                                                "infer_min_days": 2,
                                                                "infer_min_share": 0.0}})
    assert _mask_of(ctx, "smoothed") == (False, "inferred")
    assert _mask_of(ctx, "k2") == (True, "inferred")


def test_too_little_history_falls_back_to_local_office_hours():
    evs = _history("new", (10,), days=3)
    evs += [ev("new", "p", "2025-07-22 08:30", event_id="tue_0830"),   # 00:30 UTC
            ev("new", "p", "2025-07-22 17:59", event_id="tue_1759"),
            ev("new", "p", "2025-07-22 18:00", event_id="tue_1800"),
            ev("new", "p", "2025-07-26 10:00", event_id="sat_1000")]
    ctx = make_ctx(evs, window=("2025-07-22", "2025-07-27"))
    assert _mask_of(ctx, "tue_0830") == (True, "office_hours")
    assert _mask_of(ctx, "tue_1759") == (True, "office_hours")
    assert _mask_of(ctx, "tue_1800") == (False, "office_hours")
    assert _mask_of(ctx, "sat_1000") == (False, "office_hours")


def test_mask_is_cached_and_works_on_a_subset():
    evs = _history("day", (9, 12, 15)) + [ev("day", "p", "2025-07-22 03:00", event_id="x")]
    ctx = make_ctx(evs, window=WINDOW)
    on, basis = duty_mask(ctx)
    assert "duty_mask" in ctx.memo and "duty_schedule" in ctx.memo
    sub = ctx.events[ctx.events["in_window"]]
    on2, basis2 = duty_mask(ctx, sub)
    assert list(on2.index) == list(sub.index)
    assert not on2.iloc[0] and basis2.iloc[0] == "inferred"
    assert on.dtype == bool and len(on) == len(ctx.events)
    assert set(basis.astype(str)) <= {"roster", "inferred", "office_hours"}
    assert isinstance(basis, pd.Series)


def test_weekly_night_call_is_not_a_night_shift_but_a_week_of_nights_is():
    days = _history("doc", (9, 12, 15), days=20, first_day=1)
    calls = [ev("doc", "c", f"2025-07-{d:02d} 02:30") for d in (3, 10, 17)]     # 3/20 days
    rot = _history("rot", (9, 12, 15), days=13, first_day=1) + \
        _history("rot", (20, 23, 2, 5), days=7, first_day=14)                        # 7/20 nights
    evs = days + calls + rot + [ev("doc", "p", "2025-07-22 02:30", event_id="doc2"),
                                ev("rot", "p", "2025-07-22 02:30", event_id="rot2")]
    ctx = make_ctx(evs, window=WINDOW)
    assert _mask_of(ctx, "doc2") == (False, "inferred")
    assert _mask_of(ctx, "rot2") == (True, "inferred")
