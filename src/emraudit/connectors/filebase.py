"""The batch loop shared by file connectors (csv, jsonl, NDJSON FHIR).

Files are read in sorted order, each in blocks of whole lines; the position after each
batch holds every file's resume state (see `emraudit.connectors.files`). Reference tables
are re-read whole each time and their position is a fingerprint of the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

from emraudit.connectors.base import Batch, Connector
from emraudit.connectors.files import (Block, block_bytes_for, display_names, file_state,
                                       fingerprint, list_files, plan_file, read_blocks)
from emraudit.model import SOURCE_REF, TABLES, empty_quarantine

STRING = pd.StringDtype("pyarrow")


def empty_frame(profile, table: str) -> pd.DataFrame:
    """No rows, but every canonical column (so validation of an empty batch works)."""
    cols = list(dict.fromkeys(TABLES[table].names + profile.output_columns(table, [])))
    return pd.DataFrame({c: pd.Series(dtype=STRING) for c in cols + [SOURCE_REF]})


class LineFileConnector(Connector):
    """Subclasses implement `_open(path) -> info | None` (None: 0-byte file) with keys enc,
    data_start, data_line, sample and optionally header; and `_parse(block, info, fname)`
    returning (frame, quarantine, read)."""

    quoted = False
    trust_utf8 = False          # the parser validates UTF-8 itself (see files.read_blocks)
    suffixes: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.kind}:{self.source.path}"

    def _open(self, path: Path) -> dict | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _parse(self, block: Block, info: dict, fname: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def _whole_file(self, path: Path, info: dict, fname: str):
        """For formats that cannot be split into lines (a JSON Bundle): one batch."""
        raise NotImplementedError  # pragma: no cover

    def files(self) -> list[Path]:
        return list_files(self.source.path, self.config.base, suffixes=self.suffixes)

    def batches(self, watermark) -> Iterator[Batch]:
        files = self.files()
        names = display_names(files)
        reference = self.table != "access_log"
        prev_files = {} if reference or not isinstance(watermark, dict) else \
            dict(watermark.get("files", {}))
        present = {str(f) for f in files}
        state = {k: v for k, v in prev_files.items() if k in present}
        for path in files:
            key = str(path)
            action, offset, line = plan_file(path, prev_files.get(key))
            if action == "skip":
                continue
            notes = []
            if action == "reread":
                notes.append(f"{names[path]} changed since the last run (not only appended): "
                             "read again from the start")
            info = self._open(path)
            if info is None:
                state[key] = file_state(path, path.stat().st_size, 1)
                yield self._empty(self._position(state, files, reference),
                                  notes + [f"{names[path]} is empty (0 bytes)"])
                continue
            if "header" in info:
                # a file's header is its content (the path may be wrong): never echoed
                self.profile.check_columns(self.table, info["header"], names[path],
                                           list_found=False)
            if info.get("whole"):
                frame, quarantine, read = self._whole_file(path, info, names[path])
                state[key] = file_state(path, path.stat().st_size, 1)
                yield Batch(frame, self._position(state, files, reference), read, quarantine,
                            notes + info.get("notes", []))
                continue
            if offset < info["data_start"]:
                offset, line = info["data_start"], info["data_line"]
            got_rows = False
            block_bytes = block_bytes_for(self.source.batch_rows, info["sample"])
            for block in read_blocks(path, info["enc"], offset, line, block_bytes,
                                     quoted=self.quoted, trust_utf8=self.trust_utf8):
                frame, quarantine, read = self._parse(block, info, names[path])
                state[key] = file_state(path, block.end_offset, block.end_line)
                got_rows = True
                yield Batch(frame, self._position(state, files, reference), read, quarantine,
                            notes + block.notes)
                notes = []
            if not got_rows:
                state[key] = file_state(path, path.stat().st_size, line)
                yield self._empty(self._position(state, files, reference), notes)

    def _position(self, state: dict, files: list[Path], reference: bool) -> dict:
        if reference:
            return fingerprint(files)
        return {"files": {k: dict(v) for k, v in state.items()}}

    def _empty(self, position, notes) -> Batch:
        return Batch(empty_frame(self.profile, self.table), position, 0, empty_quarantine(), notes)

    def quarantine_frame(self, qrows: list[tuple[int, str, str]], fname: str,
                         refs: list[str] | None = None) -> pd.DataFrame:
        """(line, reason, raw) tuples → the quarantine's columns."""
        if not qrows:
            return empty_quarantine()
        refs = refs or [f"{fname}:{ln}" for ln, _, _ in qrows]
        pairs = sorted(zip(qrows, refs), key=lambda p: p[0][0])
        qrows, refs = [p[0] for p in pairs], [p[1] for p in pairs]
        return pd.DataFrame({
            "source": pd.Series([self.name] * len(qrows), dtype="string"),
            "source_ref": pd.Series(refs, dtype="string"),
            "reason": pd.Series([w for _, w, _ in qrows], dtype="string"),
            "raw": pd.Series([r for _, _, r in qrows], dtype="string"),
        })
