"""What detectors keep from one scan to the next, by store table.

A detector names the tables of its state in `Detector.state_tables` and how many days of it
it reads in `Detector.baseline_days()`. Before the detectors run, `load_state` reads every
table an enabled detector declares into ctx.baseline[table]; when the scan commits,
`save_state` writes what detectors left in ctx.outputs[table]. Each table's loader and saver
is named once, here:

- `user_day_features`, `models`: the anomaly detectors' daily features and fitted models
  (emraudit.detectors.anomaly.state);
- `rights_usage`: which rights each account used, and when (emraudit.rights_state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa

from emraudit.detectors.anomaly.state import load_features, load_models, save_features, \
    save_models
from emraudit.detectors.profile import DetectorSetting
from emraudit.rights_state import load_usage, save_usage
from emraudit.store import Store


@dataclass(frozen=True)
class StateTable:
    # (store, first day, last day, baseline days, tz) -> what ctx.baseline[table] holds
    load: Callable[[Store, str, str, int, str], Any]
    # (connection, what ctx.outputs[table] holds, scan id) -> rows written
    save: Callable[[sa.Connection, Any, str], int]


STATE_TABLES: dict[str, StateTable] = {
    "user_day_features": StateTable(
        lambda store, first, last, days, tz: load_features(store, first, last,
                                                          baseline_days=days),
        save_features),
    "models": StateTable(lambda store, first, last, days, tz: load_models(store), save_models),
    "rights_usage": StateTable(lambda store, first, last, days, tz: load_usage(store, tz),
                               save_usage),
}


def wanted_state(settings: dict[str, DetectorSetting]) -> tuple[list[str], int]:
    """The state tables the enabled detectors declare, and the most baseline days any of
    them reads."""
    enabled = [s.instantiate() for s in settings.values() if s.enabled]
    tables = sorted({t for d in enabled for t in d.state_tables})
    return tables, max([d.baseline_days() for d in enabled if d.state_tables] or [0])


def load_state(store: Store, settings: dict[str, DetectorSetting], first_day: str,
               last_day: str, tz: str) -> dict[str, Any]:
    """ctx.baseline: each state table the enabled detectors declare, from `first_day` (less
    their baseline days, for the tables that reach back) to `last_day`, site-local days."""
    tables, days = wanted_state(settings)
    return {t: STATE_TABLES[t].load(store, first_day, last_day, days, tz) for t in tables}


def save_state(conn: sa.Connection, outputs: dict[str, Any], scan_id: str) -> dict[str, int]:
    """Write every state table detectors left in `outputs`; rows written per table."""
    return {t: st.save(conn, outputs[t], scan_id) for t, st in STATE_TABLES.items()
            if outputs.get(t) is not None}
