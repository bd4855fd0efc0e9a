"""One command: convert both MIMIC demos, plant misuse, scan every data set through the CLI,
score the findings, add the FHIR examples and the OpenEMR layout, print the tables.

    .venv/bin/python -m bench.realdata [--data ../shared/realdata] [--out /tmp/realdata]
        [--seed 16] [--gap-minutes 10] [--days 60] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from bench.realdata import convert, formats, plant, score, sources
from bench.realdata.site import scan, write_site

REPO = Path(__file__).resolve().parents[2]
START = "2025-01-06"
# ../shared/realdata beside the checkout (/work/main), or beside the worktrees' folder
DATA = next((p for p in (REPO.parent / "shared" / "realdata",
                         REPO.parent.parent / "shared" / "realdata") if p.is_dir()),
            REPO.parent / "shared" / "realdata")      # a Monday: the packed timeline begins here


# Variants scanned besides the defaults (same data, one setting changed each), to show what
# the result rests on. "reads only" treats every real access as a look-up: charting no longer
# explains itself, so only the unit-level relations (and prior treatment) explain real care;
# "no privacy gate" reports anomalies unusual in workload alone.
VARIANTS = {
    "defaults": "",
    "reads only": '[detectors."care.no_relationship"]\ndocumentation_explains = false\n',
    "no privacy gate": '[detectors."anomaly.user_day"]\nrequire_signal = false\n',
    "reads only, no privacy gate": ('[detectors."care.no_relationship"]\n'
                                    'documentation_explains = false\n'
                                    '[detectors."anomaly.user_day"]\nrequire_signal = false\n'),
}


def dataset(name: str, data: dict, args) -> tuple[dict, dict]:
    tables = convert.canonical(data, dataset=name, start=START, days=args.days,
                               gap_minutes=args.gap_minutes)
    real = len(tables["access_log"])
    planted = plant.plant(tables, seed=args.seed)
    full = plant.apply(tables, planted)
    res = {}
    for variant, toml in VARIANTS.items():
        if variant != "defaults" and not args.variants:
            continue
        cfg = write_site(args.out / name / variant.replace(" ", "_").replace(",", ""), full,
                         f"{name} demo (real charting, planted misuse)", toml)
        r = scan(cfg)
        r["score"] = score.score(r["findings"], full["truth"], real)
        res[variant] = r
    res = dict(res["defaults"], variants={k: v for k, v in res.items() if k != "defaults"})
    res["facts"] = {"charting_rows": tables["charting_rows"], "accesses": real,
                    "users_active": int(tables["access_log"]["user_id"].nunique()),
                    "patients": int(tables["access_log"]["patient_id"].nunique()),
                    "days": int(tables["access_log"]["ts"].dt.normalize().nunique()),
                    "planted_events": len(planted.events)}
    return res, full


def drivers(found: list[dict]) -> dict:
    """Which features drove the anomaly findings (true and false apart)."""
    out: dict[str, Counter] = {"true": Counter(), "false": Counter()}
    for f in found:
        if f["detector"] != "anomaly.user_day":
            continue
        side = "true" if any(e.startswith("plant:") for e in f["event_ids"]) else "false"
        for d in f["evidence"].get("drivers", []):
            out[side][d["feature"]] += 1
    return {k: dict(v.most_common()) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("/tmp/emraudit-realdata"))
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--gap-minutes", type=int, default=10)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--only", choices=("mimic3", "mimic4", "formats"), action="append")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-variants", dest="variants", action="store_false",
                    help="scan the defaults only")
    args = ap.parse_args(argv)
    only = set(args.only or ("mimic3", "mimic4", "formats"))
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    m3_tables = None
    if "mimic3" in only or "formats" in only:
        res, m3_tables = dataset("mimic3", sources.mimic3(args.data / "mimic3-demo"), args)
        if "mimic3" in only:
            results["MIMIC-III demo"] = res
    if "mimic4" in only:
        results["MIMIC-IV demo"], _ = dataset("mimic4",
                                              sources.mimic4(args.data / "mimic4-demo"), args)
    if "formats" in only:
        results["FHIR AuditEvent examples"] = formats.fhir(args.out / "fhir")
        res, ids = formats.openemr(args.out / "openemr", m3_tables)
        for f in res["findings"]:
            f["event_ids"] = [ids.get(e, e) for e in f["event_ids"]]
        res["score"] = score.score(res["findings"], m3_tables["truth"],
                                   len(m3_tables["access_log"]) - len(m3_tables["truth"]))
        results["OpenEMR log layout (MIMIC-III accesses)"] = res
    for title, res in results.items():
        print(f"\n## {title}: exit {res['exit']}, {len(res['findings'])} findings, "
              f"scan {res['seconds']} s" + (f"; FAILED: {res['failed']}" if res["failed"]
                                             else ""))
        if "facts" in res:
            print("   " + ", ".join(f"{k} {v:,}" for k, v in res["facts"].items()))
        if "score" in res:
            print(score.table(res["score"], title))
            print(f"\nanomaly drivers: {drivers(res['findings'])}")
        for variant, v in res.get("variants", {}).items():
            s = v["score"]
            det = s["detectors"]
            anom = det.get("anomaly.user_day", {"findings": 0, "true": 0, "false": 0})
            print(f"\nvariant '{variant}': exit {v['exit']}, false findings {s['false_total']} "
                  f"({s['false_per_100k']} per 100k); anomaly {anom['findings']} findings, "
                  f"{anom['true']} true; care.no_relationship false "
                  f"{det.get('care.no_relationship', {}).get('false', 0)}; recall "
                  + ", ".join(f"{k} {x['found']}/{x['cases']}" for k, x in s["kinds"].items()))
            print(f"   anomaly drivers: {drivers(v['findings'])}")
        if res["exit"] != 0:
            print(res["log"])
    print(f"\nbench total {time.perf_counter() - t0:.0f} s; sites in {args.out}")
    if args.json:
        def strip(v):
            return {k: (strip(x) if isinstance(x, dict) and k != "score" else x)
                    for k, x in v.items() if k not in ("findings", "log")}
        args.json.write_text(json.dumps({k: strip(v) for k, v in results.items()}, indent=1,
                                        default=str))
    return results


if __name__ == "__main__":
    main()
