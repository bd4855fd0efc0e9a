"""Hospitals ingested once per test module, for the engine tests: the sample and a
generated multi-day one (another seed and size)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emraudit.commands.demo import sample_config
from emraudit.config import load_config
from emraudit.demo.generate import generate
from emraudit.ingest import ingest
from emraudit.lake import Lake
from emraudit.store import Store

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"


def _ingested(folder: Path):
    cfg = load_config(folder / "emraudit.toml")
    store, lake = Store(cfg.store_url), Lake(cfg.lake_dir, cfg.tz)
    ingest(cfg, store, lake)
    return cfg, store, lake


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    work = tmp_path_factory.mktemp("sample") / "h"
    shutil.copytree(SAMPLE, work)
    return _ingested(work)


@pytest.fixture(scope="module")
def multiday(tmp_path_factory):
    """A generated hospital of 12 days (another seed and size than the sample)."""
    work = tmp_path_factory.mktemp("multiday") / "h"
    generate(work, seed=23, days=12, size=30_000)
    (work / "emraudit.toml").write_text(sample_config("reports", "multi-day"),
                                        encoding="utf-8")
    return _ingested(work)


