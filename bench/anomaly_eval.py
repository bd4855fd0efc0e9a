"""How well `anomaly.user_day` (and `anomaly.relational`) rank the planted cases.

    .venv/bin/python bench/anomaly_eval.py [--data sample_logs] [--models ecod,iforest,ensemble]

Reads a generated hospital (the committed `sample_logs/` or any `emraudit demo generate`
output) straight from its CSVs, validates them into canonical frames, and runs the detector
over every day as one walk-forward scan (each day scored by a model fitted on the days before
it; the first `min_baseline_days` are not scored). A user-day is *positive* when it holds a
planted event (`truth.csv`); it is scored once, so the figures are per user-day:

- rank (percentile among all scored user-days) of every positive day of the planted slow
  insider (`anomaly.slow_insider`) and of the browsers (`care.no_relationship`), and whether it
  is in the top 1 %;
- ROC AUC and precision at 10 and 50, against all planted kinds and against the two kinds the
  detector is meant for;
- the share of legitimate user-days flagged under the default alert budget;
- the ten highest-scoring legitimate user-days and what drove them.

It prints a plain-text report; `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from emraudit.detectors.anomaly.user_day import SCORES_MEMO, UserDayAnomaly
from emraudit.detectors.anomaly.relational import RelationalAnomaly
from emraudit.detectors.base import Context
from emraudit.model import TABLES, validate

TZ = "Asia/Shanghai"
TARGET_KINDS = ("anomaly.slow_insider", "care.no_relationship")


def load(data: Path) -> tuple[dict, pd.DataFrame]:
    frames = {}
    for name in TABLES:
        path = data / f"{name}.csv"
        if not path.exists():
            continue
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        frames[name] = validate(name, raw, TZ, name).accepted
    ev = frames.pop("access_log").sort_values(["ts", "event_id"], kind="stable")
    ev = ev.reset_index(drop=True)
    ev["in_window"] = True
    truth = pd.read_csv(data / "truth.csv", dtype=str)
    return {"events": ev, **frames}, truth


def make_ctx(frames: dict) -> Context:
    ev = frames["events"]
    start = ev["ts"].min().normalize()
    end = ev["ts"].max().normalize() + pd.Timedelta(days=1)
    return Context(events=ev, window_start=start, window_end=end, tz=TZ,
                   **{k: v for k, v in frames.items() if k != "events"})


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata
    r = rankdata(s)
    npos, nneg = y.sum(), (~y).sum()
    if not npos or not nneg:
        return float("nan")
    return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def label(scores: pd.DataFrame, ev: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    t = truth.merge(ev[["event_id", "user_id", "ts"]], on="event_id")
    t["day"] = t["ts"].dt.tz_convert(TZ).dt.strftime("%Y-%m-%d")
    kinds = t.groupby(["user_id", "day"])["violation"].agg(lambda s: sorted(set(s)))
    out = scores.merge(kinds.rename("kinds").reset_index(), on=["user_id", "day"], how="left")
    out["kinds"] = out["kinds"].apply(lambda k: k if isinstance(k, list) else [])
    out["positive"] = out["kinds"].str.len() > 0
    out["target"] = out["kinds"].apply(lambda k: bool(set(k) & set(TARGET_KINDS)))
    out["pct"] = out["score"].rank(pct=True, method="max")
    return out


def evaluate(frames, truth, model: str, **params) -> dict:
    ctx = make_ctx(frames)
    det = UserDayAnomaly(model=model, **params)
    t0 = time.perf_counter()
    found = det.run(ctx)
    secs = time.perf_counter() - t0
    sc = label(ctx.memo[SCORES_MEMO], frames["events"], truth)
    y, s = sc["positive"].to_numpy(), sc["score"].to_numpy()
    yt = sc["target"].to_numpy()
    order = np.argsort(-s, kind="stable")
    res = {"model": model, "params": params, "seconds": round(secs, 1),
           "user_days_scored": int(len(sc)), "positives": int(y.sum()),
           "target_positives": int(yt.sum()),
           "auc_all": round(roc_auc(y, s), 4), "auc_target": round(roc_auc(yt, s), 4),
           "auc_target_vs_legit": round(roc_auc(yt[yt | ~y], s[yt | ~y]), 4),
           "p@10": float(y[order[:10]].mean()), "p@50": float(y[order[:50]].mean()),
           "p@10_target": float(yt[order[:10]].mean()),
           "p@50_target": float(yt[order[:50]].mean()),
           "flagged": int(sc["flagged"].sum()),
           "flagged_positive": int((sc["flagged"] & sc["positive"]).sum()),
           "legit_flagged_share": round(float((sc["flagged"] & ~sc["positive"]).sum() /
                                              max((~sc["positive"]).sum(), 1)), 5)}
    legit_p99 = float(np.quantile(s[~y], 0.99)) if (~y).any() else float("inf")
    for kind in TARGET_KINDS:
        k = sc[sc["kinds"].apply(lambda ks: kind in ks)].sort_values("day")
        res[kind + ":above_legit_p99"] = f"{int((k['score'] > legit_p99).sum())}/{len(k)}"
        res[kind] = [{"user_id": r.user_id, "day": r.day, "pct": round(float(r.pct) * 100, 2),
                      "top1": bool(r.pct >= 0.99), "flagged": bool(r.flagged)}
                     for r in k.itertuples()]
    legit = sc[~sc["positive"]].sort_values("score", ascending=False).head(10)
    fnd = {tuple(k.split("|")): e for k, e in zip(
        [f"{u}|{s_}" for u, s_ in zip(found["user_id"], found["start"].str[:10])],
        found["evidence"])} if len(found) else {}
    res["top_legit"] = []
    users = frames.get("users")
    udesc = users.set_index("user_id") if users is not None else None
    for r in legit.itertuples():
        e = fnd.get((r.user_id, r.day))
        drivers = ([d["text"] for d in e["drivers"]] if e else
                   ["(not flagged: below the alert budget)"])
        who = ""
        if udesc is not None and r.user_id in udesc.index:
            u = udesc.loc[r.user_id]
            who = f"{u.get('role', '')}/{u.get('department', '')}/{u.get('ward', '')}"
        res["top_legit"].append({"user_id": r.user_id, "day": r.day, "who": who,
                                 "pct": round(float(r.pct) * 100, 2),
                                 "flagged": bool(r.flagged), "drivers": drivers})
    res["_scores"] = sc
    return res


def relational(frames, truth) -> dict:
    ctx = make_ctx(frames)
    det = RelationalAnomaly(max_findings=0)       # default scoring, every user's score kept
    det.run(ctx)
    sc = ctx.memo.get("anomaly.relational.scores")
    if sc is None or sc.empty:
        return {}
    t = truth.merge(frames["events"][["event_id", "user_id"]], on="event_id")
    pos = t.groupby("user_id")["violation"].agg(lambda s: sorted(set(s)))
    sc = sc.merge(pos.rename("kinds").reset_index(), on="user_id", how="left")
    sc["kinds"] = sc["kinds"].apply(lambda k: k if isinstance(k, list) else [])
    y = sc["kinds"].apply(lambda k: bool(set(k) & set(TARGET_KINDS))).to_numpy()
    sc["pct"] = sc["score"].rank(pct=True, method="max")
    order = np.argsort(-sc["score"].to_numpy(), kind="stable")
    return {"users_scored": int(len(sc)), "target_users": int(y.sum()),
            "auc_target": round(roc_auc(y, sc["score"].to_numpy()), 4),
            "p@5_target": float(y[order[:5]].mean()),
            "targets": [{"user_id": r.user_id, "role": r.role, "pct": round(r.pct * 100, 1),
                         "score": round(r.score, 3), "kinds": r.kinds}
                        for r in sc[y].itertuples()],
            "top5": [{"user_id": r.user_id, "role": r.role, "score": round(r.score, 3),
                      "kinds": r.kinds} for r in sc.iloc[order[:5]].itertuples()]}


def print_report(results: list[dict], rel: dict) -> None:
    print("\nmodel      AUC(all) AUC(target) AUC(t|legit)  P@10  P@50  P@10t P@50t  flagged "
          "(planted)  legit flagged  secs")
    for r in results:
        print(f"{r['model'] + ('+own' if r['params'].get('own_baseline') else ''):10s} "
              f"{r['auc_all']:8.3f} {r['auc_target']:11.3f} {r['auc_target_vs_legit']:12.3f} "
              f"{r['p@10']:5.2f} {r['p@50']:5.2f} {r['p@10_target']:5.2f} "
              f"{r['p@50_target']:5.2f} {r['flagged']:8d} ({r['flagged_positive']:3d})   "
              f"{r['legit_flagged_share'] * 100:8.3f}%  {r['seconds']:5.1f}")
    for r in results:
        print(f"\n== {r['model']} {r['params']}: {r['user_days_scored']} user-days scored, "
              f"{r['positives']} hold planted events ({r['target_positives']} slow insider / "
              f"browsing)")
        for kind in TARGET_KINDS:
            rows = r[kind]
            top = sum(x["top1"] for x in rows)
            print(f"  {kind}: {top}/{len(rows)} scored days in the top 1 % of all user-days, "
                  f"{r[kind + ':above_legit_p99']} above the 99th percentile of legitimate ones")
            for x in rows:
                print(f"    {x['user_id']} {x['day']}  percentile {x['pct']:6.2f}"
                      f"{'  top1%' if x['top1'] else ''}{'  FLAGGED' if x['flagged'] else ''}")
        print("  top ten legitimate user-days:")
        for x in r["top_legit"]:
            print(f"    {x['user_id']} {x['day']} {x['who']} pct {x['pct']}"
                  f"{' FLAGGED' if x['flagged'] else ''}")
            for d in x["drivers"]:
                print(f"        {d}")
    if rel:
        print(f"\nanomaly.relational: {rel['users_scored']} users scored, AUC against the "
              f"slow insider/browsers {rel['auc_target']}, P@5 {rel['p@5_target']}")
        for x in rel["targets"]:
            print(f"    target {x['user_id']} ({x['role']}) percentile {x['pct']} score "
                  f"{x['score']} {x['kinds']}")
        for x in rel["top5"]:
            print(f"    top {x['user_id']} ({x['role']}) score {x['score']} {x['kinds']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "sample_logs"))
    ap.add_argument("--models", default="ecod,iforest,copod,hbos,ensemble")
    ap.add_argument("--own", action="store_true",
                    help="also run each model with own_baseline = true")
    ap.add_argument("--json")
    args = ap.parse_args()
    t = time.perf_counter()
    frames, truth = load(Path(args.data))
    print(f"loaded {len(frames['events']):,} events, {len(truth)} planted in "
          f"{time.perf_counter() - t:.1f}s", file=sys.stderr)
    results = []
    for m in args.models.split(","):
        results.append(evaluate(frames, truth, m))
        if args.own:
            results.append(evaluate(frames, truth, m, own_baseline=True))
    rel = relational(frames, truth)
    print_report(results, rel)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"user_day": [{k: v for k, v in r.items() if k != "_scores"} for r in results],
             "relational": rel}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
