"""Which profile step made each canonical value: recorded per ingestion run, read by reports.

Ingest stores the steps of a source's profile once per distinct mapping (`profile_steps`,
keyed by the profile's digest) and names that digest on every ingestion run it maps
(`ingest_runs.profile_digest`), so a later edit of the profile never rewrites the history of
what earlier runs did. `ProfileTrail.how_mapped(source, raw)` replays the value-mapping
steps on an event's own raw words (the steps' own vectorized code, on one row) and says
which steps turned each word into its canonical value: the case page's "mapped by profile
his-zh: action 打印病历 → print".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping

import pandas as pd
import sqlalchemy as sa

from emraudit.connectors.profile import ConnectorProfile
from emraudit.connectors.steps import Run, Step, from_record
from emraudit.store import Store, ingest_runs, profile_steps, upsert

# steps that build columns from other source columns: an event keeps only its canonical
# values (and its raw action word), so these cannot be replayed on it
_READS_SOURCE = ("columns", "combine", "json", "extract")


def record_steps(store: Store, profile: ConnectorProfile, table: str) -> str:
    """Store the steps `profile` maps `table` with (once per distinct mapping); returns the
    digest that ingestion runs name in `ingest_runs.profile_digest`."""
    digest = profile.digest(table)
    with store.begin() as c:
        known = c.execute(sa.select(profile_steps.c.seq)
                          .where(profile_steps.c.digest == digest).limit(1)).first()
        if known is None:
            rows = [{"digest": digest, "seq": i, "profile": profile.name, "table_name": table,
                     "step": rec["step"], "kind": rec["kind"],
                     "spec": json.dumps(rec, ensure_ascii=False, sort_keys=True)}
                    for i, rec in enumerate(profile.records(table))]
            upsert(c, profile_steps, rows, ["digest", "seq"])
    return digest


@dataclass(frozen=True)
class Pipeline:
    """The steps a source was mapped with, in order, and the name of their profile."""

    profile: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Mapped:
    """How one raw word became a canonical value: `steps` are the profile keys of the
    steps that changed it, in order."""

    source: str
    profile: str
    column: str
    raw: str
    value: str
    steps: tuple[str, ...]


class ProfileTrail:
    """The mappings each source's committed runs used, newest first."""

    def __init__(self, by_source: dict[str, list[Pipeline]]):
        self.by_source = by_source
        self._seen: dict = {}

    @classmethod
    def load(cls, store: Store) -> "ProfileTrail":
        """Read once per report: a few rows per source and distinct mapping."""
        with store.engine.connect() as c:
            runs = c.execute(
                sa.select(ingest_runs.c.source, ingest_runs.c.profile_digest,
                          sa.func.max(ingest_runs.c.started).label("last"))
                .where(ingest_runs.c.status == "committed",
                       ingest_runs.c.profile_digest.is_not(None))
                .group_by(ingest_runs.c.source, ingest_runs.c.profile_digest)).fetchall()
            digests = sorted({r.profile_digest for r in runs})
            steps = c.execute(sa.select(profile_steps)
                              .where(profile_steps.c.digest.in_(digests))
                              .order_by(profile_steps.c.digest, profile_steps.c.seq)
                              ).fetchall() if digests else []
        pipelines: dict[str, Pipeline] = {}
        for digest in digests:
            rows = [r for r in steps if r.digest == digest]
            if rows:
                pipelines[digest] = Pipeline(rows[0].profile, tuple(
                    from_record(json.loads(r.spec)) for r in rows))
        by_source: dict[str, list[Pipeline]] = {}
        for r in sorted(runs, key=lambda r: (r.source, r.last, r.profile_digest), reverse=True):
            if r.profile_digest in pipelines:
                by_source.setdefault(r.source, []).append(pipelines[r.profile_digest])
        return cls(by_source)

    def how_mapped(self, source: str, raw: Mapping[str, str],
                   stored: Mapping[str, str] | None = None) -> list[Mapped]:
        """For each column of `raw` (canonical column → the source's word, e.g. `{"action":
        "打印病历", "outcome": "failure"}`) that the profile changed: the steps that did it.
        With `stored` (the event's canonical values), the newest mapping of the source that
        reproduces them is the one explained."""
        key = (source, tuple(sorted(raw.items())), tuple(sorted((stored or {}).items())))
        if key not in self._seen:
            self._seen[key] = self._explain(source, dict(raw), dict(stored or {}))
        return self._seen[key]

    def _explain(self, source: str, raw: dict, stored: dict) -> list[Mapped]:
        raw = {c: v for c, v in raw.items() if isinstance(v, str) and v != ""}
        found: list[Mapped] = []
        for mapping in self.by_source.get(source, []):
            got = _replay(mapping.steps, raw)
            if all(got[c][0] == v for c, v in stored.items() if c in got):
                found = [Mapped(source, mapping.profile, c, raw[c], value, tuple(keys))
                         for c, (value, keys) in got.items() if keys]
                break
        return found

    def for_events(self, events: Iterable[Mapping]) -> list[dict]:
        """Distinct mappings of some events (lake rows with `_source`, `action_raw`, `action`
        and `outcome`), as plain data for a page: profile, column, raw, value, steps."""
        out: dict[tuple, dict] = {}
        for e in events:
            word = e.get("action_raw")
            if not isinstance(word, str) or not word:
                continue
            raw = {"action": word}
            if isinstance(e.get("outcome"), str):
                raw["outcome"] = e["outcome"]
            stored = {"action": e.get("action")} if isinstance(e.get("action"), str) else {}
            for m in self.how_mapped(str(e.get("_source") or ""), raw, stored):
                out.setdefault((m.profile, m.column, m.raw, m.value),
                               {"source": m.source, "profile": m.profile, "column": m.column,
                                "raw": m.raw, "value": m.value, "steps": list(m.steps)})
        return [out[k] for k in sorted(out)]


def _replay(steps: tuple[Step, ...], raw: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """Run the value-mapping steps on one row of raw words: each column's final value and
    the keys of the steps that changed it."""
    frame = pd.DataFrame({c: pd.Series([v], dtype="string") for c, v in raw.items()})
    run = Run(frame, frame.copy())
    changed: dict[str, list[str]] = {c: [] for c in raw}
    for step in steps:
        if step.kind in _READS_SOURCE:
            continue
        before = {c: _value(run.out, c) for c in raw}
        step.apply(run)
        for c in raw:
            if _value(run.out, c) != before[c]:
                changed[c].append(step.key)
    return {c: (_value(run.out, c), changed[c]) for c in raw}


def _value(df: pd.DataFrame, col: str) -> str:
    v = df[col].iloc[0] if col in df.columns else None
    return "" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)


__all__ = ["record_steps", "ProfileTrail", "Mapped"]
