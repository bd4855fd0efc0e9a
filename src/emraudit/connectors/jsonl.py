"""JSON Lines exports: one JSON object per line, read in bounded blocks.

Each block is parsed in one call (pandas' C JSON reader, values kept as written); when that
fails because some line is broken, the block is parsed line by line so that only the broken
lines go to the quarantine, each with its line number and the parser's message. Nested
values (objects, lists) become JSON text, which a profile's `json` step can pick apart.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from emraudit.connectors.filebase import STRING, LineFileConnector
from emraudit.connectors.files import SAMPLE_BYTES, Block, detect_encoding, normalize_encoding
from emraudit.model import SOURCE_REF, TABLES


def _to_text(s: pd.Series) -> pd.Series:
    """Any column as strings: nested values as compact JSON, missing stays missing."""
    if s.dtype == object:
        nested = s.map(lambda v: isinstance(v, (dict, list)))
        if nested.any():
            s = s.where(~nested, s[nested].map(
                lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))))
        bools = s.map(lambda v: isinstance(v, bool))
        if bools.any():
            s = s.where(~bools, s[bools].map(lambda v: "true" if v else "false"))
    elif pd.api.types.is_bool_dtype(s):
        return s.map({True: "true", False: "false"}).astype(STRING)
    elif pd.api.types.is_float_dtype(s):
        # 1234.0 from a JSON number keeps its integer look
        whole = s.notna() & (s == np.floor(s)) & (s.abs() < 2 ** 53)
        out = s.astype(STRING)
        if whole.any():
            out = out.where(~whole, s[whole].astype("Int64").astype(STRING))
        return out
    return s.astype(STRING)


class JsonlConnector(LineFileConnector):
    kind = "jsonl"
    suffixes = (".jsonl", ".ndjson", ".json", ".jsonl.txt")

    def _open(self, path: Path) -> dict | None:
        with open(path, "rb") as fh:
            sample = fh.read(SAMPLE_BYTES)
        if not sample.strip():
            return None
        enc_name = self.source.encoding or self.profile.encoding
        if enc_name:
            enc, bom = normalize_encoding(enc_name, str(path)), 0
            if sample.startswith(b"\xef\xbb\xbf"):
                bom = 3
        else:
            enc, bom = detect_encoding(sample)
            enc = normalize_encoding(enc, str(path))
        return {"enc": enc, "data_start": bom, "data_line": 1, "sample": sample}

    def _parse(self, block: Block, info: dict, fname: str):
        buf = block.data
        arr = np.frombuffer(buf, dtype=np.uint8)
        nl = np.flatnonzero(arr == 10)
        ends = nl if len(buf) == 0 or buf.endswith(b"\n") else np.append(nl, len(buf))
        starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        lines = block.first_line + np.arange(len(starts))
        # blank lines (only whitespace) are not rows
        if len(starts) and len(arr):
            nonws = ~np.isin(arr, (9, 10, 13, 32))
            counts = np.add.reduceat(nonws, np.minimum(starts, max(len(arr) - 1, 0)),
                                     dtype=np.int64)
            blank = (counts == 0) | (ends <= starts)
        else:
            blank = np.ones(len(starts), bool)
        keep_lines = lines[~blank]
        good = buf if not blank.any() else b"\n".join(
            buf[s:e] for s, e, b in zip(starts, ends, blank) if not b)
        qrows = [(b.line, b.reason, b.raw) for b in block.bad]
        df = None
        if len(keep_lines):
            try:
                with warnings.catch_warnings():   # convert_dates=False: keep times as text
                    warnings.simplefilter("ignore")
                    df = pd.read_json(io.BytesIO(good), lines=True, dtype=False,
                                      convert_dates=False, precise_float=True)
                if len(df) != len(keep_lines) or not df.index.equals(pd.RangeIndex(len(df))):
                    df = None
            except ValueError:
                df = None
            if df is None:
                df, bad = self._line_by_line(buf, starts, ends, blank, lines)
                keep_lines = np.array([ln for ln in keep_lines if ln not in bad], dtype=np.int64)
                qrows += [(ln, why, raw) for ln, (why, raw) in bad.items()]
        else:
            df = pd.DataFrame()
        df = pd.DataFrame({c: _to_text(df[c]) for c in df.columns}, index=df.index)
        df.columns = [str(c) for c in df.columns]
        df = df.reset_index(drop=True)
        if len(df) == 0:
            from emraudit.connectors.filebase import empty_frame
            frame = empty_frame(self.profile, self.table)
        else:
            df[SOURCE_REF] = pd.Series(fname + ":", index=df.index, dtype=STRING) + \
                pd.Series(keep_lines, index=df.index).astype(STRING)
            # keys vary from line to line: a key no line of this block has is an empty column
            absent = [c for c in self.profile.source_columns(self.table).values()
                      if c not in df.columns]
            if absent:
                block.notes.append(f"{fname} lines {block.first_line}-{block.end_line - 1}: no "
                                   f"line has {', '.join(repr(c) for c in absent)}")
                for c in absent:
                    df[c] = pd.Series(pd.NA, index=df.index, dtype=STRING)
            frame = self.profile.apply(self.table, df, block.notes)
            for c in TABLES[self.table].required:
                if c not in frame.columns:
                    frame[c] = pd.Series(pd.NA, index=frame.index, dtype=STRING)
        quarantine = self.quarantine_frame(qrows, fname)
        return frame, quarantine, len(frame) + len(quarantine)

    def _line_by_line(self, buf, starts, ends, blank, lines):
        """The slow path: parse each line alone so one broken line spoils only itself."""
        records, bad = [], {}
        for s, e, b, ln in zip(starts, ends, blank, lines):
            if b:
                continue
            text = buf[s:e].decode("utf-8", errors="replace").strip()
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                bad[int(ln)] = (f"not valid JSON: {exc.msg} at column {exc.colno}", text[:2000])
                continue
            if not isinstance(obj, dict):
                bad[int(ln)] = (f"not a JSON object (a {type(obj).__name__})", text[:2000])
                continue
            records.append(obj)
        return pd.DataFrame.from_records(records) if records else pd.DataFrame(), bad


__all__ = ["JsonlConnector"]
