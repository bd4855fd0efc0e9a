"""Checks over every registered detector at once (elastic/detection-rules habit): each
property is checked across the whole collection and all offenders are listed together."""

import tomllib

from emraudit.model import SEVERITY_RANK
from emraudit.detectors.profile import builtin_profile_path, resolve_detectors
from emraudit.detectors.profile_doc import render_default_profile
from emraudit.detectors.registry import all_detectors
from emraudit.model import RECTIFICATION_ITEMS, TABLES

EXPECTED_IDS = {
    "care.no_relationship", "cred.concurrent_use", "cred.impossible_travel",
    "cred.off_duty_use", "cred.inactive_account", "cred.acting_mismatch",
    "cred.expired_access", "bulk.off_hours", "bulk.volume", "copy.bulk_export", "snoop.vip",
    "snoop.coworker", "snoop.family", "snoop.neighbor", "snoop.self", "snoop.deceased",
    "snoop.watchlist", "btg.unjustified", "anomaly.user_day", "anomaly.relational",
}


def test_every_contract_detector_is_registered():
    missing = EXPECTED_IDS - set(all_detectors())
    assert not missing, f"detectors not registered: {sorted(missing)}"


def test_declarations_complete():
    offenders = []
    for det_id, cls in all_detectors().items():
        for attr in ("name_en", "name_zh", "description", "note", "measure_zh", "measure_en"):
            if not getattr(cls, attr, ""):
                offenders.append(f"{det_id}: no {attr}")
        if not cls.false_positives:
            offenders.append(f"{det_id}: no known false positives listed")
        if cls.item not in RECTIFICATION_ITEMS:
            offenders.append(f"{det_id}: unknown item {cls.item}")
        if cls.severity not in SEVERITY_RANK:
            offenders.append(f"{det_id}: unknown severity {cls.severity}")
        for t in (*cls.needs, *cls.uses):
            if t not in TABLES:
                offenders.append(f"{det_id}: unknown table {t}")
        for p in cls.params:
            if not p.doc:
                offenders.append(f"{det_id}.{p.name}: no doc")
            try:
                p.check(p.default)
            except ValueError as exc:
                offenders.append(f"{det_id}.{p.name}: default fails its own check: {exc}")
    assert not offenders, "\n".join(offenders)


def test_default_profile_documents_every_parameter_and_is_in_sync():
    text = builtin_profile_path("default").read_text(encoding="utf-8")
    assert text.strip() == render_default_profile().strip(), (
        "detectors/default.toml is out of date: python -m emraudit.detectors.profile_doc > "
        "src/emraudit/profiles/detectors/default.toml")
    data = tomllib.loads(text)
    for det_id, cls in all_detectors().items():
        assert det_id in data
        assert data[det_id]["enabled"] == cls.enabled_by_default
        for p in cls.params:
            assert data[det_id][p.name] == p.default


def test_default_profile_loads_with_declared_defaults():
    settings = resolve_detectors({}, None)
    for det_id, st in settings.items():
        assert st.enabled == st.cls.enabled_by_default
        assert st.params == {p.name: p.default for p in st.cls.params}
