"""Checks over every registered detector at once (elastic/detection-rules habit): each
property is checked across the whole collection and all offenders are listed together."""

import tomllib

from emraudit.demo import violations
from emraudit.detectors.base import SECTIONS, Detector
from emraudit.detectors.profile import builtin_profile_path, resolve_detectors
from emraudit.detectors.profile_doc import render_default_profile
from emraudit.detectors.registry import all_detectors
from emraudit.model import RECTIFICATION_ITEMS, SEVERITY_RANK, TABLES
from emraudit.state import STATE_TABLES
from emraudit.store import metadata as store_metadata

# the contract's detectors: those the shipped default profile documents (it is generated from
# the declarations and committed, so a detector that stops registering is missed here); its
# other tables are the sections of shared parameters ([explain], [schedule])
DEFAULT_TABLES = set(tomllib.loads(builtin_profile_path("default").read_text(encoding="utf-8")))
EXPECTED_IDS = {t for t in DEFAULT_TABLES if "." in t}


def test_the_default_profile_documents_every_section():
    all_detectors()
    assert DEFAULT_TABLES - EXPECTED_IDS == set(SECTIONS) == {"explain", "schedule"}


def test_every_contract_detector_is_registered():
    assert len(EXPECTED_IDS) >= 20
    missing = EXPECTED_IDS - set(all_detectors())
    assert not missing, f"detectors not registered: {sorted(missing)}"


def test_detectors_name_the_planted_kinds_they_catch():
    """Each detector names the sample hospital's planted violations it catches (its own id
    unless it declares otherwise; `catches = ()` when the sample plants none for it), and each
    planted kind has a first detector: `emraudit eval` scores recall against these."""
    kinds = set(violations.KINDS)
    offenders = []
    for det_id, cls in all_detectors().items():
        for kind in (*cls.planted_kinds(), *cls.also_catches):
            if kind not in kinds:
                offenders.append(f"{det_id}: {kind} is not a planted kind of emraudit.demo "
                                 "(plant a case, or declare catches = ())")
        if set(cls.planted_kinds()) & set(cls.also_catches):
            offenders.append(f"{det_id}: a kind both in catches and in also_catches")
    first = {k for cls in all_detectors().values() for k in cls.planted_kinds()}
    offenders += [f"{kind}: no detector catches it first" for kind in sorted(kinds - first)]
    assert not offenders, "\n".join(offenders)


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
        for t in cls.state_tables:           # a loader and a saver, of a table of the store
            if t not in STATE_TABLES or t not in store_metadata.tables:
                offenders.append(f"{det_id}: state table {t} not in emraudit.state / the store")
        if cls.state_tables and cls.baseline_days is Detector.baseline_days and \
                "baseline_days" in {p.name for p in cls.params}:
            offenders.append(f"{det_id}: declares a baseline_days parameter it does not read")
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


def test_eval_expectations_come_from_the_declarations(monkeypatch):
    from emraudit.detectors import registry
    from emraudit.detectors.base import Detector
    from emraudit.evaluate import EXPECTED, expected_detectors
    assert EXPECTED["anomaly.slow_insider"] == ("anomaly.user_day", "anomaly.relational",
                                                "care.no_relationship")
    assert EXPECTED["cred.concurrent_use"] == ("cred.concurrent_use", "cred.impossible_travel")
    assert EXPECTED["snoop.query_then_open"] == ("care.no_relationship",)
    assert EXPECTED["snoop.self"] == ("snoop.self",)

    class B(Detector):
        id, also_catches = "z.b", ("a.kind",)      # and, undeclared, its own kind

    class A(Detector):
        id, catches, also_catches = "z.a", ("a.kind", "other"), ()

    class C(Detector):
        id = "y.c"

    registry.all_detectors()
    monkeypatch.setattr(registry, "_REGISTRY", {"z.b": B, "z.a": A, "y.c": C})
    assert expected_detectors() == {"a.kind": ("z.a", "z.b"), "other": ("z.a",),
                                    "y.c": ("y.c",), "z.b": ("z.b",)}
