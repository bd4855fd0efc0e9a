"""CSV/TSV exports: any delimiter, UTF-8 (with or without BOM) or GB18030/GBK, in bounded blocks.

A block of clean lines (no quotes, no blank lines, every row with the header's number of
fields — the usual export) is parsed by pyarrow in one call, all columns as strings, and row
i is line first_line + i. Otherwise the block is scanned once with numpy (newlines, quotes,
delimiters) to find each record's line number and field count: records with the wrong number
of fields (a truncated last line, a row with an extra column, an unterminated quote) go to
the quarantine with their line number, the others are parsed by pyarrow in one call. The
profile then maps the columns; `model.validate` (run by the pipeline) coerces the types.
"""

from __future__ import annotations

import csv as pycsv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from emraudit.connectors.filebase import LineFileConnector
from emraudit.connectors.files import (SAMPLE_BYTES, BadLine, Block, decode_line,
                                       detect_encoding, normalize_encoding)
from emraudit.errors import SourceError
from emraudit.model import SOURCE_REF
from emraudit.timeparse import parse_fixed_width

DELIMITERS = (",", "\t", ";", "|")
_STRING = pd.StringDtype("pyarrow")


def _types_mapper(t: pa.DataType):
    return _STRING if pa.types.is_string(t) or pa.types.is_large_string(t) else None


def preparse_times(s: pd.Series) -> pd.Series:
    """The common `YYYY-MM-DD hh:mm:ss` parsed in one pyarrow kernel, as naive times that
    validation localizes exactly as it would the text; any other layout, or one value that
    does not parse, leaves the column as text for validation to parse and quarantine."""
    fast = parse_fixed_width(s)
    return s if fast is None else fast


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header and the next lines into the same number of
    fields (most fields wins); ',' when nothing splits."""
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if not lines:
        return ","
    best, best_score = ",", (0, 0)
    for d in DELIMITERS:
        counts = [ln.count(d) for ln in lines]
        if counts[0] == 0:
            continue
        consistent = sum(c == counts[0] for c in counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = d, score
    return best


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        n = n.strip()
        if n in seen:
            seen[n] += 1
            out.append(f"{n}.{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


class CsvConnector(LineFileConnector):
    kind = "csv"
    quoted = True
    trust_utf8 = True           # pyarrow validates UTF-8; bad bytes → Block.decode()

    def describe(self) -> str:
        return f"csv:{self.source.path}"

    # --- per file setup ------------------------------------------------------------------------
    def _open(self, path: Path) -> dict | None:
        """Encoding, delimiter, header and where the data starts; None for a 0-byte file."""
        with open(path, "rb") as fh:
            sample = fh.read(SAMPLE_BYTES)
        if not sample.strip():
            return None
        enc_name = self.source.encoding or self.profile.encoding
        if enc_name:
            enc = normalize_encoding(enc_name, str(path))
            bom = 3 if sample.startswith(b"\xef\xbb\xbf") and enc == "utf-8" else 0
        else:
            enc, bom = detect_encoding(sample)
            enc = normalize_encoding(enc, str(path))
        nl = sample.find(b"\n")
        header_raw = sample[bom:] if nl < 0 else sample[bom:nl + 1]
        try:
            header_text = decode_line(header_raw, enc)
        except UnicodeDecodeError:
            raise SourceError(f"the header line is not valid {enc} text (set 'encoding' in the "
                              "source)", file=str(path), line=1) from None
        delim = self.source.delimiter or self.profile.delimiter
        if delim in ("\\t", "tab", "TAB"):
            delim = "\t"
        if not delim:
            delim = sniff_delimiter(sample[bom:].decode(enc, errors="ignore"))
        if len(delim.encode("utf-8")) != 1:
            raise SourceError(f"delimiter {delim!r} must be one ASCII character", file=str(path))
        try:
            header = next(pycsv.reader([header_text.strip("\r\n")], delimiter=delim), [])
        except pycsv.Error:      # e.g. a stray carriage return inside the header
            header = header_text.strip("\r\n").split(delim)
        header = _unique([h for h in header])
        if not any(header):
            raise SourceError("the first line is empty (expected a header line with column "
                              "names)", file=str(path), line=1)
        return {"enc": enc, "delim": delim, "header": header, "data_start": bom + len(header_raw),
                "data_line": 2, "sample": sample}

    def _parse(self, block: Block, info: dict, fname: str):
        """One block → (canonical frame, quarantine, rows read)."""
        tried = False
        if block.unchecked:
            try:
                fast = self._fast(block, info, fname)
                tried = True
                if fast is not None:
                    return fast
            except pa.ArrowInvalid as exc:
                if "utf8" not in str(exc).lower():
                    raise
            block = block.decode()
        if not tried:
            fast = self._fast(block, info, fname)
            if fast is not None:
                return fast
        header, delim = info["header"], info["delim"]
        ncols = len(header)
        buf = block.data
        arr = np.frombuffer(buf, dtype=np.uint8)
        nl = np.flatnonzero(arr == 10)
        quoted = b'"' in buf
        if quoted:
            q = np.flatnonzero(arr == 34)
            rec_end = nl[(np.searchsorted(q, nl) % 2) == 0]
        else:
            q = None
            rec_end = nl
        if len(buf) and (len(rec_end) == 0 or rec_end[-1] != len(buf) - 1):
            rec_end = np.append(rec_end, len(buf))          # last record without a newline
        rec_start = np.concatenate(([0], rec_end[:-1] + 1)).astype(np.int64)
        lines = block.first_line + np.searchsorted(nl, rec_start)
        # content length without the line ending
        clen = rec_end - rec_start
        if len(clen):
            end_idx = np.minimum(rec_end, len(buf)) - 1
            has_cr = (end_idx >= rec_start) & (arr[np.clip(end_idx, 0, None)] == 13) \
                if len(arr) else np.zeros(len(clen), bool)
            clen = clen - has_cr
        blank = clen <= 0
        dpos = np.flatnonzero(arr == ord(delim))
        if quoted and len(dpos):
            dpos = dpos[(np.searchsorted(q, dpos) % 2) == 0]
        fields = np.searchsorted(dpos, rec_end) - np.searchsorted(dpos, rec_start) + 1
        wrong = (fields != ncols) & ~blank
        open_quote = np.zeros(len(rec_start), bool)
        if block.open_quote and len(open_quote):
            open_quote[-1] = True
            wrong[-1] = ~blank[-1]
        # a carriage return not followed by a newline (outside quotes) would end a record for
        # pyarrow but not for us: such records are quarantined
        stray_cr = np.zeros(len(rec_start), bool)
        cr = np.flatnonzero(arr == 13)
        if len(cr):
            nxt = np.minimum(cr + 1, len(arr) - 1)
            cr = cr[(cr + 1 >= len(arr)) | (arr[nxt] != 10)]
            cr = cr[cr + 1 < len(arr)]                  # a final CR is just a line ending
            if quoted and len(cr):
                cr = cr[(np.searchsorted(q, cr) % 2) == 0]
            if len(cr):
                idx = np.searchsorted(rec_start, cr, side="right") - 1
                stray_cr[idx[idx >= 0]] = True
                stray_cr &= ~blank
        keep = ~blank & ~wrong & ~stray_cr

        qrows = []
        for i in np.flatnonzero(stray_cr & ~wrong):
            s, e = int(rec_start[i]), int(min(rec_end[i], len(buf)))
            text = buf[s:e].decode("utf-8", errors="replace").rstrip("\r\n")
            qrows.append((int(lines[i]), "line has a carriage return inside a field", text[:2000]))
        for i in np.flatnonzero(wrong):
            s, e = int(rec_start[i]), int(min(rec_end[i], len(buf)))
            text = buf[s:e].decode("utf-8", errors="replace").rstrip("\r\n")
            if open_quote[i]:
                why = "unterminated quoted field at the end of the file"
            elif fields[i] < ncols:
                why = (f"line has {fields[i]} field(s), expected {ncols}"
                       + (" (truncated last line)" if i == len(rec_start) - 1 and block.eof else ""))
            else:
                why = f"line has {fields[i]} fields, expected {ncols} (extra field)"
            qrows.append((int(lines[i]), why, text[:2000]))
        for b in block.bad:
            qrows.append((b.line, b.reason, b.raw))

        n_keep = int(keep.sum())
        if n_keep == 0:
            table = pa.table({h: pa.array([], pa.large_string()) for h in header})
        else:
            if keep.all():
                good = buf
            else:
                # contiguous runs of kept records, joined without the rejected ones
                idx = np.flatnonzero(keep)
                breaks = np.flatnonzero(np.diff(idx) != 1)
                run_first = np.concatenate(([idx[0]], idx[breaks + 1]))
                run_last = np.concatenate((idx[breaks], [idx[-1]]))
                parts = []
                for a, b in zip(run_first, run_last):
                    e = int(rec_end[b])
                    piece = buf[int(rec_start[a]):e + 1]
                    parts.append(piece if piece.endswith(b"\n") else piece + b"\n")
                good = b"".join(parts)
            if not good.endswith(b"\n"):
                good += b"\n"
            try:
                table = self._read_arrow(good, info, quoted)
            except pa.ArrowInvalid:
                table = None
            if table is None or table.num_rows != n_keep:
                # the scan and pyarrow disagree (an odd byte sequence, such as a quote inside
                # an unquoted field): Python's csv module reads the kept records one by one —
                # slow, but only for this block. A record it does not split into the
                # header's number of fields is quarantined, never cut or padded to fit.
                kept = np.flatnonzero(keep)
                records = [buf[int(rec_start[i]):int(min(rec_end[i], len(buf)))] for i in kept]
                table, counts = self._read_python(records, info)
                for i, rec, n in zip(kept, records, counts):
                    if n != ncols:
                        keep[i] = False
                        why = (f"line has {n} field(s), expected {ncols}" if n < ncols else
                               f"line has {n} fields, expected {ncols} (extra field)")
                        text = rec.decode("utf-8", errors="replace").rstrip("\r\n")
                        qrows.append((int(lines[i]), why, text[:2000]))
        quarantine = self.quarantine_frame(qrows, fname)
        return self._finish(table, lines[keep], block, fname, quarantine)

    def _read_python(self, records: list[bytes], info: dict) -> tuple[pa.Table, list[int]]:
        """The records' rows, and each record's number of fields: a record with another
        number than the header's is left out of the rows (the caller quarantines it)."""
        header = info["header"]
        cols: list[list[str]] = [[] for _ in header]
        counts: list[int] = []
        for rec in records:
            text = rec.decode("utf-8", errors="replace").rstrip("\r\n")
            try:
                fields = next(pycsv.reader([text], delimiter=info["delim"]), [])
            except pycsv.Error:
                fields = text.split(info["delim"])
            counts.append(len(fields))
            if len(fields) != len(header):
                continue
            for c, v in zip(cols, fields):
                c.append(v)
        table = pa.table({h: pa.array(c, pa.large_string()) for h, c in zip(header, cols)})
        return table, counts

    def _read_arrow(self, data: bytes, info: dict, quoted: bool, handler=None) -> pa.Table:
        header = info["header"]
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=header, use_threads=True,
                                           block_size=min(max(len(data) // 2 + 1, 1 << 20),
                                                          64 << 20)),
            parse_options=pacsv.ParseOptions(delimiter=info["delim"], newlines_in_values=quoted,
                                             ignore_empty_lines=True,
                                             invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.large_string() for h in header}, strings_can_be_null=False,
                quoted_strings_can_be_null=False))

    def _fast(self, block: Block, info: dict, fname: str):
        """The common case in one pyarrow call: no quotes, no blank or undecodable lines and
        every row with the right number of fields, so row i is line first_line + i. Returns
        None (use the scanning path) as soon as any of that does not hold."""
        buf = block.data
        # blank lines need no search: pyarrow skips them, so the row count falls short below.
        # Quoted fields are fine (many HIS exports quote every value) as long as no quoted
        # field holds a line break: read with newlines_in_values off, such a record breaks
        # into malformed rows or a parse error, and the scanning path takes the block.
        if block.bad or block.open_quote or not buf:
            return None
        invalid = []

        def handler(row):
            invalid.append(row)
            return "skip"

        try:
            table = self._read_arrow(buf if buf.endswith(b"\n") else buf + b"\n", info,
                                     False, handler)
        except pa.ArrowInvalid as exc:
            if b'"' in buf and "utf8" not in str(exc).lower():
                return None
            raise
        n_lines = block.n_lines
        if invalid or table.num_rows != n_lines:
            return None    # (a block of only blanks parses to fewer rows than lines, too)
        lines = block.first_line + np.arange(table.num_rows, dtype=np.int64)
        quarantine = self.quarantine_frame([], fname)
        return self._finish(table, lines, block, fname, quarantine)

    def _finish(self, table: pa.Table, lines: np.ndarray, block: Block, fname: str,
                quarantine: pd.DataFrame):
        """Arrow table of raw strings + line numbers → (canonical frame, quarantine, read)."""
        refs = pc.binary_join_element_wise(pa.scalar(fname + ":", pa.large_string()),
                                           pc.cast(pa.array(lines), pa.large_string()),
                                           pa.scalar("", pa.large_string()))
        table = table.append_column(SOURCE_REF, refs)
        df = table.to_pandas(types_mapper=_types_mapper)
        frame = self.profile.apply(self.table, df, block.notes)
        if self.table == "access_log" and "ts" in frame.columns:
            frame["ts"] = preparse_times(frame["ts"])
        return frame, quarantine, len(frame) + len(quarantine)


__all__ = ["CsvConnector", "sniff_delimiter", "BadLine"]
