"""The package's import graph has no cycle (issue 22): read with ast by
scripts/architecture_figures.py, the imports each module runs when it is imported, with
`from pkg import sub` an edge to the submodule. The detector contract (detectors/base.py)
imports neither the registry nor anything that registers detectors, even inside a function:
that was the base ↔ registry cycle of ctx.params_for."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "emraudit"


def _figures():
    spec = importlib.util.spec_from_file_location(
        "architecture_figures", ROOT / "scripts" / "architecture_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_cycle_in_the_package():
    fig = _figures()
    graph = fig.import_graph(PACKAGE)
    assert len(graph) > 100 and "emraudit.detectors.profile" in graph["emraudit.scan"]
    assert fig.cycles(graph) == []


def test_the_checker_sees_a_cycle(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from p import b\n")
    (pkg / "b.py").write_text("def f():\n    from p.a import x\n")
    fig = _figures()
    assert fig.cycles(fig.import_graph(pkg)) == []
    assert fig.cycles(fig.import_graph(pkg, deferred=True)) == [["p.a", "p.b"]]
    (pkg / "b.py").write_text("try:\n    import p.a\nexcept ImportError:\n    pass\n")
    assert fig.cycles(fig.import_graph(pkg)) == [["p.a", "p.b"]]


def test_the_detector_contract_does_not_import_the_registry():
    graph = _figures().import_graph(PACKAGE, deferred=True)
    assert "emraudit.detectors.registry" not in graph["emraudit.detectors.base"]
    assert "emraudit.detectors.registry" not in graph["emraudit.detectors.explain"]
    assert "emraudit.detectors.registry" not in graph["emraudit.detectors.schedule"]
