"""Speed of the anomaly pieces on synthetic data.

    .venv/bin/python bench/anomaly_bench.py [--events 10000000] [--users 5000] [--days 30]

1. `user_day_features` on N events (targets: 10M events < 30 s). The explanation engine and
   the duty schedule are replaced by cheap vectorized stand-ins so the figure is this module's
   own cost (each engine is benchmarked by its owner); pass --real-engines to use the real ones.
2. Fitting and scoring `anomaly.user_day` on a baseline of DAYS × USERS user-days plus one
   scanned day (target: 30 × 5,000 < 30 s), for ECOD, IForest and the ensemble, and a full
   `run()` of the detector with the stored baseline (features for the scanned day computed
   from its events, findings with evidence).
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np
import pandas as pd

TZ = "Asia/Shanghai"


def stub_engines() -> None:
    explain = types.ModuleType("emraudit.detectors.explain")

    def explain_accesses(ctx):          # cached like the real engine (ctx.memo)
        if "bench.explain" not in ctx.memo:
            ev = ctx.events
            sub = ev.loc[ev["patient_id"].notna(), ["event_id", "user_id", "patient_id", "ts"]]
            rng = np.random.default_rng(0)
            ctx.memo["bench.explain"] = sub.assign(explained=rng.random(len(sub)) > 0.02)
        return ctx.memo["bench.explain"]

    explain.explain_accesses = explain_accesses
    schedule = types.ModuleType("emraudit.detectors.schedule")

    def duty_mask(ctx, events):
        if "bench.duty" not in ctx.memo:
            h = events["ts"].dt.hour
            ctx.memo["bench.duty"] = ((h >= 8) & (h < 18), None)
        return ctx.memo["bench.duty"]

    schedule.duty_mask = duty_mask
    sys.modules["emraudit.detectors.explain"] = explain
    sys.modules["emraudit.detectors.schedule"] = schedule


def make_events(n: int, users: int, patients: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day0 = pd.Timestamp("2025-06-01", tz=TZ)
    ts = day0 + pd.to_timedelta(np.sort(rng.integers(0, days * 86_400, n)), unit="s")
    u = rng.integers(0, users, n)
    p = (u * 37 + rng.integers(0, 400, n)) % patients   # each user sees a neighbourhood
    acts = np.array(["view", "view", "view", "view", "query", "update", "print", "export"])
    uid = pd.Index([f"U{i:05d}" for i in range(users)])
    pid = pd.Index([f"P{i:07d}" for i in range(patients)])
    ev = pd.DataFrame({
        "event_id": pd.array(np.char.add("e", np.arange(n).astype(str)), dtype="str"),
        "ts": ts,
        "user_id": pd.array(uid.to_numpy()[u], dtype="str"),
        "patient_id": pd.array(pid.to_numpy()[p], dtype="str"),
        "action": pd.array(acts[rng.integers(0, len(acts), n)], dtype="str"),
        "workstation": pd.array(np.char.add("WS", (u % 3000).astype(str)), dtype="str"),
        "ip": pd.array(np.char.add("10.0.", (u % 3000).astype(str)), dtype="str"),
        "record_count": rng.integers(1, 3, n),
    })
    ev["in_window"] = ev["ts"] >= day0 + pd.Timedelta(days=days - 1)
    return ev


def bench_features(args) -> None:
    from emraudit.detectors.base import Context
    from emraudit.detectors.anomaly.features import user_day_features
    t = time.perf_counter()
    cache = f"/tmp/emraudit_bench_events_{args.events}_{args.users}.parquet"
    try:
        ev = pd.read_parquet(cache)
    except OSError:
        ev = make_events(args.events, args.users, 300_000, 2)
        ev.to_parquet(cache)
    print(f"generated/read {len(ev):,} events in {time.perf_counter() - t:.1f}s")
    pats = pd.DataFrame({"patient_id": pd.array([f"P{i:07d}" for i in range(300_000)],
                                                dtype="str"),
                         "vip": np.arange(300_000) % 1000 == 0,
                         "sensitive": np.arange(300_000) % 500 == 0,
                         "employee_user_id": pd.array([None] * 300_000, dtype="str")})
    rel = pd.DataFrame({"patient_id": pats["patient_id"],
                        "department": pd.array(np.char.add("D", (np.arange(300_000) % 40)
                                                           .astype(str)), dtype="str"),
                        "ward": pd.array(np.char.add("W", (np.arange(300_000) % 120)
                                                     .astype(str)), dtype="str"),
                        "kind": "admission",
                        "start": pd.Timestamp("2025-05-01", tz=TZ)
                        + pd.to_timedelta(np.arange(300_000) % 40, unit="D")})
    ctx = Context(events=ev, window_start=ev["ts"].min(), window_end=ev["ts"].max(), tz=TZ,
                  patients=pats, care_relations=rel)
    from emraudit.detectors.anomaly.features import _engine_explained, _engine_on_duty
    if not args.real_engines:        # the engines' own cost is their owners' benchmark
        _engine_explained(ctx)
        _engine_on_duty(ctx, ev)
    t, c = time.perf_counter(), time.process_time()
    f = user_day_features(ctx, history_days=1)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(f"features: {len(ev):,} events -> {len(f):,} user-days in {dt:.1f}s wall, "
          f"{dc:.1f}s CPU (target < 30 s) {'OK' if min(dt, dc) < 30 else 'SLOW'}")


def synth_features(users: int, days: int, seed: int = 0) -> pd.DataFrame:
    from emraudit.detectors.anomaly.features import FEATURE_NAMES
    rng = np.random.default_rng(seed)
    day0 = pd.Timestamp("2025-06-01")
    n = users * (days + 1)
    uid = np.tile(np.arange(users), days + 1)
    d = np.repeat(np.arange(days + 1), users)
    lam = 5 + (uid % 50)
    df = pd.DataFrame({"user_id": pd.array([f"U{i:05d}" for i in uid], dtype="string"),
                       "day": pd.array((day0 + pd.to_timedelta(d, unit="D"))
                                       .strftime("%Y-%m-%d"), dtype="string"),
                       "role": pd.array(np.array(["nurse", "physician", "technician",
                                                  "pharmacist"])[uid % 4], dtype="string"),
                       "department": pd.array(np.char.add("D", (uid % 60).astype(str)),
                                              dtype="string")})
    for f in FEATURE_NAMES:
        if f.endswith("share"):
            df[f] = rng.beta(1, 20, n)
        else:
            df[f] = rng.poisson(lam / (1 if f in ("events", "patients") else 5)).astype(float)
    return df


def bench_model(args) -> None:
    from emraudit.detectors.anomaly.user_day import UserDayAnomaly
    from emraudit.detectors.anomaly.models import UserDayModel, own_medians
    from emraudit.detectors.base import Context
    from emraudit.detectors.anomaly.features import FEATURE_NAMES
    feats = synth_features(args.users, args.days)
    last = feats["day"].max()
    base, today = feats[feats["day"] < last], feats[feats["day"] == last]
    for kind in ("ecod", "iforest", "ensemble"):
        t = time.perf_counter()
        own = own_medians(base, list(FEATURE_NAMES), 5)
        m = UserDayModel(kind=kind, seed=0).fit(base, own)
        t1 = time.perf_counter()
        m.score(today, own)
        t2 = time.perf_counter()
        row = m.to_row("anomaly.user_day", pd.Timestamp.now(tz="UTC"))
        print(f"model {kind:9s}: fit {len(base):,} user-days {t1 - t:.1f}s, score "
              f"{len(today):,} in {t2 - t1:.2f}s, stored blob {len(row['blob']) / 1e6:.2f} MB "
              f"{'OK' if t2 - t < 30 else 'SLOW'}")
    # the whole detector: stored baseline + one day of raw events
    ev = make_events(args.users * 200, args.users, 300_000, 1, seed=1)
    ev["ts"] = ev["ts"] + (pd.Timestamp(last, tz=TZ) - ev["ts"].min().normalize())
    ev["in_window"] = True
    ctx = Context(events=ev, window_start=ev["ts"].min().normalize(),
                  window_end=ev["ts"].min().normalize() + pd.Timedelta(days=1), tz=TZ,
                  baseline={"user_day_features": base})
    for kind in ("ecod", "ensemble"):
        ctx.memo.clear()
        ctx.outputs.clear()
        t = time.perf_counter()
        out = UserDayAnomaly(model=kind).run(ctx)
        dt = time.perf_counter() - t
        print(f"detector run ({kind}): {len(ev):,} window events + {len(base):,} stored "
              f"user-days -> {len(out)} findings in {dt:.1f}s {'OK' if dt < 30 else 'SLOW'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--real-engines", action="store_true")
    ap.add_argument("--only", choices=("features", "model"))
    args = ap.parse_args()
    if not args.real_engines:
        stub_engines()
    if args.only in (None, "features"):
        bench_features(args)
    if args.only in (None, "model"):
        bench_model(args)


if __name__ == "__main__":
    main()
