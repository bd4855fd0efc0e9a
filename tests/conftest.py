"""Shared fixtures: a real PostgreSQL URL when one is available, temporary configs."""

from __future__ import annotations

import os
import uuid

import pytest

import property_settings  # noqa: F401  (loads the Hypothesis profile)

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def pg_url():
    """A PostgreSQL SQLAlchemy URL with a fresh, empty schema for this test.

    Locally the test is skipped when EMRAUDIT_TEST_PG_URL is unset; under CI it fails, so a
    broken PostgreSQL setup can never pass silently.
    """
    url = os.environ.get("EMRAUDIT_TEST_PG_URL")
    if not url:
        if IN_CI:
            pytest.fail("EMRAUDIT_TEST_PG_URL is not set under CI")
        pytest.skip("EMRAUDIT_TEST_PG_URL not set")
    import sqlalchemy as sa
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(url)
    with admin.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def pytest_collection_modifyitems(config, items):
    """Browser tests need Chromium: skip locally when missing, fail under CI."""
    import shutil
    if shutil.which("chromium") or IN_CI:
        return
    skip = pytest.mark.skip(reason="chromium not installed")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sample_scan(tmp_path_factory):
    """(site folder, config, ScanResult) of one scan of a private copy of the bundled sample
    hospital, shared by every test of the process that reads it (the golden findings, the
    sample's languages). Tests read it; none may change its findings."""
    import shutil
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_logs"
    if not (sample / "access_log.csv").exists():
        pytest.skip("sample_logs/ not generated")
    from emraudit.config import load_config
    from emraudit.scan import run_scan
    site = tmp_path_factory.mktemp("sample") / "site"
    shutil.copytree(sample, site)
    cfg = load_config(site / "emraudit.toml")
    return site, cfg, run_scan(cfg, echo=lambda s: None)
