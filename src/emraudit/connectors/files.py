"""File sources: listing, encoding detection, bounded line blocks and the resume position.

Shared by the csv, jsonl and fhir (NDJSON) connectors. A file is read in blocks of whole
lines (never the whole file), decoded to UTF-8 with the detected encoding; the position
after each block records, per file, the bytes and lines consumed and a fingerprint of the
last bytes read, so the next run can tell an unchanged file (skip it), a file that only grew
(resume after what was consumed) and a rewritten one (read it again; the pipeline drops the
duplicate events by event_id).
"""

from __future__ import annotations

import codecs
import glob as globmod
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from emraudit.errors import SourceError

SAMPLE_BYTES = 64 * 1024
TAIL_BYTES = 4096
MIN_BLOCK = 64 * 1024
MAX_BLOCK = 128 * 1024 * 1024
FALLBACK_ENCODING = "gb18030"


def list_files(path: str, base: Path, *, suffixes: tuple[str, ...] = ()) -> list[Path]:
    """A file, a folder (its files, recursively, hidden ones skipped) or a glob, sorted."""
    p = Path(os.path.expanduser(path))
    if not p.is_absolute():
        p = base / p
    if any(ch in path for ch in "*?["):
        files = [Path(f) for f in globmod.glob(str(p), recursive=True) if Path(f).is_file()]
        if not files:
            raise SourceError("no file matches this pattern", file=str(p))
    elif p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()
                 and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        if suffixes:
            files = [f for f in files if f.name.lower().endswith(suffixes)] or files
        if not files:
            raise SourceError("the folder holds no files to read", file=str(p))
    elif p.is_file():
        files = [p]
    else:
        raise SourceError("file not found (expected a file, a folder or a glob pattern)",
                          file=str(p))
    return sorted(files)


def display_names(files: list[Path]) -> dict[Path, str]:
    """Short names for source references: the path below the files' common folder."""
    if len(files) == 1:
        return {files[0]: files[0].name}
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return {f: f.relative_to(root).as_posix() for f in files}


# --- encodings --------------------------------------------------------------------------------

def detect_encoding(sample: bytes) -> tuple[str, int]:
    """(encoding, BOM length): a BOM first, then strict UTF-8, then GB18030."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", 2
    cut = sample.rfind(b"\n")
    body = sample if cut < 0 or len(sample) < SAMPLE_BYTES else sample[:cut + 1]
    try:
        body.decode("utf-8")
        return "utf-8", 0
    except UnicodeDecodeError as exc:
        if exc.start >= len(body) - 3 and len(sample) >= SAMPLE_BYTES:
            return "utf-8", 0      # a character cut by the sample's end
    return FALLBACK_ENCODING, 0


def normalize_encoding(name: str, file: str) -> str:
    try:
        enc = codecs.lookup(name).name
    except LookupError:
        raise SourceError(f"unknown encoding '{name}' (expected e.g. utf-8, utf-8-sig, gb18030, "
                          "gbk)", file=file) from None
    if enc.startswith("utf-16") or enc.startswith("utf-32"):
        raise SourceError("UTF-16/UTF-32 files are not supported: save the export as UTF-8 or "
                          "GB18030", file=file)
    if enc in ("gbk", "gb2312", "cp936"):
        enc = "gb18030"           # a superset: GBK files decode the same
    if enc == "utf-8-sig":
        enc = "utf-8"             # the BOM is skipped by offset
    return enc


@dataclass
class BadLine:
    line: int
    reason: str
    raw: str


@dataclass
class Block:
    """Whole lines of one file, as UTF-8 bytes, with where they start."""

    data: bytes                 # UTF-8; undecodable lines replaced by empty lines
    first_line: int             # 1-based line number of the block's first line
    end_offset: int             # file offset just after the block
    end_line: int               # line number the next block starts at
    bad: list[BadLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    eof: bool = False
    open_quote: bool = False    # the block ends inside a quoted field (unterminated at EOF)
    unchecked: bool = False     # UTF-8 not yet validated (the parser validates; see decode())

    @property
    def n_lines(self) -> int:
        """Lines in the block (a last line without a newline counts)."""
        return self.end_line - self.first_line

    def decode(self) -> "Block":
        """Validate/repair UTF-8 now (after the parser found an invalid byte)."""
        if not self.unchecked:
            return self
        data, bad, notes = _decode(self.data, "utf-8", self.first_line)
        return Block(data, self.first_line, self.end_offset, self.end_line, self.bad + bad,
                     self.notes + notes, self.eof, self.open_quote, False)


def _decode(raw: bytes, enc: str, first_line: int) -> tuple[bytes, list[BadLine], list[str]]:
    """Raw bytes to UTF-8. A line that does not decode falls back to GB18030 (when the file
    was read as UTF-8) or is replaced by an empty line and reported."""
    bad: list[BadLine] = []
    notes: list[str] = []
    try:
        text = raw.decode(enc)
        return (raw if enc == "utf-8" else text.encode("utf-8")), bad, notes
    except UnicodeDecodeError:
        pass
    out: list[bytes] = []
    pos = 0
    fell_back = 0
    while pos < len(raw):
        try:
            text = raw[pos:].decode(enc)
            out.append(raw[pos:] if enc == "utf-8" else text.encode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            err = pos + exc.start
            ls = raw.rfind(b"\n", 0, err) + 1
            le = raw.find(b"\n", err)
            le = len(raw) if le < 0 else le + 1
            good = raw[pos:ls]
            out.append(good if enc == "utf-8" else good.decode(enc).encode("utf-8"))
            line = raw[ls:le]
            lineno = first_line + raw.count(b"\n", 0, ls)
            decoded = None
            if enc == "utf-8":
                try:
                    decoded = line.decode(FALLBACK_ENCODING)
                    fell_back += 1
                except UnicodeDecodeError:
                    decoded = None
            if decoded is not None:
                out.append(decoded.encode("utf-8"))
            else:
                bad.append(BadLine(lineno, f"line is not valid {enc} text (byte "
                                   f"0x{raw[err]:02x} at column {err - ls + 1})",
                                   line.decode(enc, errors="replace").rstrip("\r\n")[:2000]))
                out.append(b"\n" if line.endswith(b"\n") else b"")
            pos = le
    if fell_back:
        notes.append(f"{fell_back} line(s) from line {first_line} on are not UTF-8 and were "
                     f"read as {FALLBACK_ENCODING.upper()}")
    return b"".join(out), bad, notes


def _cut(buf: bytes, quoted: bool) -> int:
    """Length of the longest prefix of whole lines (whole records when `quoted`).

    Only the block's tail is searched for the last line break outside quotes: the quote
    parity before the tail comes from one `bytes.count` (scanning every byte of an 80 MB
    block with numpy took seconds per million rows)."""
    if not quoted or b'"' not in buf:
        return buf.rfind(b"\n") + 1
    tail = 1 << 16
    while True:
        start = max(0, len(buf) - tail)
        parity = buf.count(b'"', 0, start) % 2
        arr = np.frombuffer(buf, dtype=np.uint8, offset=start)
        nl = np.flatnonzero(arr == 10)
        if len(nl):
            q = np.flatnonzero(arr == 34)
            ok = nl[(np.searchsorted(q, nl) + parity) % 2 == 0]
            if len(ok):
                return start + int(ok[-1]) + 1
        if start == 0:
            return 0
        tail *= 8


def read_blocks(path: Path, enc: str, start_offset: int, start_line: int, block_bytes: int,
                *, quoted: bool = False, trust_utf8: bool = False) -> Iterator[Block]:
    """Whole-line blocks from `start_offset` on; at most about `block_bytes` each (a quoted
    field spanning lines may stretch a block). With `trust_utf8`, UTF-8 blocks are passed on
    unvalidated (`Block.unchecked`): a parser that validates anyway calls `Block.decode()`
    only when it meets an invalid byte."""
    block_bytes = max(MIN_BLOCK, min(MAX_BLOCK, block_bytes))
    offset, line = start_offset, start_line
    carry = b""
    with open(path, "rb") as fh:
        fh.seek(start_offset)
        eof = False
        while not eof:
            chunk = fh.read(block_bytes)
            eof = len(chunk) < block_bytes
            if eof:
                rest = fh.read(1)  # file may have grown since: stop at what we saw
                eof = not rest
                chunk += rest
            plain = not quoted or (b'"' not in chunk and carry.count(b'"') % 2 == 0)
            if not plain:
                buf = carry + chunk if carry else chunk
                cut = len(buf) if eof else _cut(buf, quoted)
                if cut == 0:
                    carry = buf
                    continue
                raw, carry = buf[:cut], buf[cut:]
            else:
                # plain lines: cut the chunk itself and copy once
                cut = len(chunk) if eof else chunk.rfind(b"\n") + 1
                if cut == 0:
                    carry = carry + chunk
                    continue
                raw = b"".join((carry, memoryview(chunk)[:cut]))
                carry = chunk[cut:]
            unchecked = trust_utf8 and enc == "utf-8"
            data, bad, notes = (raw, [], []) if unchecked else _decode(raw, enc, line)
            n_lines = raw.count(b"\n")
            end_line = line + n_lines + (0 if raw.endswith(b"\n") else 1)
            open_quote = quoted and eof and raw.count(b'"') % 2 == 1
            yield Block(data, line, offset + len(raw), end_line, bad, notes, eof and not carry,
                        open_quote, unchecked)
            offset += len(raw)
            line = end_line
        if carry:
            data, bad, notes = _decode(carry, enc, line)
            yield Block(data, line, offset + len(carry), line + carry.count(b"\n") + 1, bad,
                        notes, True, quoted and carry.count(b'"') % 2 == 1)


def block_bytes_for(rows: int, sample: bytes) -> int:
    """Bytes per block so a block holds about `rows` rows, from the sample's line length."""
    lines = max(sample.count(b"\n"), 1)
    avg = max(len(sample) / lines, 16)
    return int(rows * avg)


# --- positions --------------------------------------------------------------------------------

def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def file_state(path: Path, offset: int, line: int) -> dict:
    """The resume position of one file after `offset` bytes (`line` = next line number)."""
    st = path.stat()
    with open(path, "rb") as fh:
        start = max(0, offset - TAIL_BYTES)
        fh.seek(start)
        tail = fh.read(offset - start)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "offset": offset, "line": line,
            "tail": _digest(tail), "tail_len": len(tail)}


def plan_file(path: Path, prev: dict | None) -> tuple[str, int, int]:
    """('skip'|'resume'|'full'|'reread', offset, line) for a file given its last position."""
    if not prev:
        return "full", 0, 1
    try:
        st = path.stat()
        offset = int(prev.get("offset", 0))
        if st.st_size < offset:
            return "reread", 0, 1
        with open(path, "rb") as fh:
            fh.seek(offset - int(prev.get("tail_len", 0)))
            tail = fh.read(int(prev.get("tail_len", 0)))
        if _digest(tail) != prev.get("tail"):
            return "reread", 0, 1
        if st.st_size == offset:
            return "skip", offset, int(prev.get("line", 1))
        return "resume", offset, int(prev.get("line", 1))
    except (OSError, ValueError, TypeError):
        return "reread", 0, 1


def fingerprint(files: list[Path]) -> dict:
    """A cheap identity of a set of files (reference tables are re-read whole each time)."""
    out = {}
    for f in files:
        st = f.stat()
        out[str(f)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"fingerprint": _digest(repr(sorted(out.items())).encode()), "files": out}
