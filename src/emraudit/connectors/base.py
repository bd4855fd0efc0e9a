"""The connector interface: read a source in bounded batches of canonical-named rows.

A connector knows how to read one kind of source (csv, jsonl, sql, fhir) and applies a
connector profile (`emraudit.connectors.profile`) to map the source's columns and values onto
the canonical names. It never decides what is suspicious and never validates types: that is
`emraudit.model.validate`, applied by the ingest pipeline to every batch.

Each batch carries the position (watermark) reached after it; the pipeline commits the
batch's events and that position together, so a rerun resumes after the last complete batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import pandas as pd

from emraudit.model import empty_quarantine


@dataclass
class Batch:
    """Rows read from a source, canonical column names, plus `_source_ref` per row.

    `read` counts every raw row consumed, including rows rejected while parsing (a truncated
    line, a JSON line that does not parse); those are in `quarantine` (source, source_ref,
    reason, raw). So: read == len(frame) + len(quarantine).
    """

    frame: pd.DataFrame
    position: Any
    read: int
    quarantine: pd.DataFrame = field(default_factory=empty_quarantine)
    notes: list[str] = field(default_factory=list)


class Connector:
    """Base class; subclasses set `kind` and implement `batches`."""

    kind: ClassVar[str]

    def __init__(self, name: str, table: str, source, config, profile):
        self.name = name          # the source's name (config section)
        self.table = table        # canonical table
        self.source = source      # emraudit.config.SourceConfig
        self.config = config      # emraudit.config.Config
        self.profile = profile    # emraudit.connectors.profile.ConnectorProfile

    def batches(self, watermark: Any) -> Iterator[Batch]:  # pragma: no cover - abstract
        """Yield batches of what is new after `watermark` (None: everything)."""
        raise NotImplementedError

    def describe(self) -> str:
        """Where the data comes from, safe to print (no password)."""
        return f"{self.kind}:{self.source.path or ''}"

    def provenance(self) -> dict[str, str]:
        """Which profile step produces each canonical column (for run details and reports)."""
        return self.profile.provenance(self.table) if self.profile is not None else {}
