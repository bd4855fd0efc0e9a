"""File sources: listing, encoding detection, bounded line blocks and the resume position.

Shared by the csv, jsonl and fhir (NDJSON) connectors. A file is read in blocks of whole
lines (never the whole file), decoded to UTF-8; the position after each block records, per
file, the bytes and lines consumed and a fingerprint of the last bytes read, so the next run
can tell an unchanged file (skip it), a file that only grew (resume after what was consumed)
and a rewritten one (read it again; the pipeline drops the duplicate events by event_id).

Encodings are decided per line where a file mixes them (exports concatenated from two
systems, a GBK line pasted into a UTF-8 log): the file's usual encoding (its BOM, the
majority of the sample's lines, or the source's `encoding`) is only the first guess. A line
that is not valid UTF-8 is read as GB18030; a line that is valid UTF-8 in a GB18030 file is
read as UTF-8 unless its GB18030 reading is the more plausible Chinese text; a line that is
neither goes to the quarantine with the reason. Mojibake is never produced by decoding a
whole block in one encoding. Clean files keep the fast path: a UTF-8 block is validated by
the parser, a GB18030 block is decoded in one call once a byte scan finds no UTF-8 line in it.
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
    """(encoding, BOM length): a BOM first, then strict UTF-8, then whichever of UTF-8 and
    GB18030 most of the sample's non-ASCII lines are in. It is the file's usual encoding,
    the first guess for each line (see `_decode`), not a verdict on every line."""
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
    lines = _Lines(body)
    maybe, high = _utf8_lines(body, lines)
    utf8 = _confirmed_utf8(body, maybe & high, lines)
    return ("utf-8" if utf8.sum() > (high & ~utf8).sum() else FALLBACK_ENCODING), 0


class _Lines:
    """Where each line of a block starts and ends (its newline included), found once."""

    def __init__(self, raw: bytes):
        self.arr = np.frombuffer(raw, dtype=np.uint8)
        self.nl = np.flatnonzero(self.arr == 10)
        self.starts = np.concatenate(([0], self.nl + 1)).astype(np.int64)
        self.ends = np.append(self.nl + 1, len(raw)).astype(np.int64)
        if raw.endswith(b"\n") or not raw:
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]

    def __len__(self) -> int:
        return len(self.starts)


def _utf8_lines(raw: bytes, lines: _Lines) -> tuple[np.ndarray, np.ndarray]:
    """Per line of `raw` (a last line without a newline counts): (may be valid UTF-8, holds
    a byte above ASCII). Vectorized over the bytes above ASCII only: a valid line has no
    byte UTF-8 never uses and as many continuation bytes as its lead bytes announce. That
    is necessary, not sufficient (order, overlong forms): callers confirm by decoding."""
    n = len(lines)
    above = np.flatnonzero(lines.arr >= 0x80)
    if not len(above):
        return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    line = np.searchsorted(lines.nl, above)
    v = lines.arr[above]
    # a lead byte announces 1-3 continuation bytes (C0-DF: 1, E0-EF: 2, F0-F7: 3); each
    # continuation byte (80-BF) answers one
    owed = (v >= 0xC0).astype(np.int8) + (v >= 0xE0) + (v >= 0xF0) - (v < 0xC0)
    never = (v == 0xC0) | (v == 0xC1) | (v >= 0xF5)
    balance = np.bincount(line, weights=owed, minlength=n)
    broken = np.bincount(line, weights=never, minlength=n)
    high = np.bincount(line, minlength=n) > 0
    return (balance == 0) & (broken == 0), high


def _confirmed_utf8(raw: bytes, maybe: np.ndarray, lines: _Lines) -> np.ndarray:
    """`maybe` narrowed to the lines that do decode as UTF-8 (few lines: a loop)."""
    out = maybe.copy()
    for i in np.flatnonzero(maybe):
        try:
            raw[lines.starts[i]:lines.ends[i]].decode("utf-8")
        except UnicodeDecodeError:
            out[i] = False
    return out


def _plausibility(text: str) -> float:
    """Share of a line's non-ASCII characters that are common in Chinese text: GB2312
    ideographs, CJK and full-width punctuation, the middle dot of transliterated names. The
    wrong reading of a line (UTF-8 read as GB18030 gives rare ideographs; GB18030 read as
    UTF-8 gives Latin, Greek or Cyrillic letters) scores low."""
    chars = [ch for ch in text if ord(ch) >= 0x80]
    if not chars:
        return 1.0
    common = 0
    for ch in chars:
        o = ord(ch)
        if 0x3000 <= o <= 0x303F or 0xFF00 <= o <= 0xFFEF or 0x2010 <= o <= 0x2027 \
                or o == 0xB7:
            common += 1
        elif 0x4E00 <= o <= 0x9FFF:
            try:
                ch.encode("gb2312")
                common += 1
            except UnicodeEncodeError:
                pass
    return common / len(chars)


def decode_line(line: bytes, enc: str) -> str:
    """One line in the file's usual encoding `enc`, or in the other of UTF-8 and GB18030
    where that is the right reading; UnicodeDecodeError when it is neither."""
    try:
        utf8 = line.decode("utf-8")
    except UnicodeDecodeError:
        if enc == "utf-8":
            return line.decode(FALLBACK_ENCODING)
        return line.decode(enc)
    if enc == "utf-8" or line.isascii():
        return utf8
    try:
        other = line.decode(enc)
    except UnicodeDecodeError:
        return utf8
    return other if _plausibility(other) > _plausibility(utf8) else utf8


def _neither(enc: str) -> str:
    other = FALLBACK_ENCODING if enc == "utf-8" else "utf-8"
    names = sorted({enc.upper(), other.upper()}, key=lambda n: n != "UTF-8")
    return f"line is neither {names[0]} nor {names[1]} text"


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
        self.notes.extend(notes)      # the same list: the batch carries the block's notes
        return Block(data, self.first_line, self.end_offset, self.end_line, self.bad + bad,
                     self.notes, self.eof, self.open_quote, False)


def _decode(raw: bytes, enc: str, first_line: int) -> tuple[bytes, list[BadLine], list[str]]:
    """Raw bytes to UTF-8, line by line where the block mixes encodings (see the module
    docstring). A line that is neither is replaced by an empty line and reported."""
    if enc == "utf-8":
        try:
            raw.decode("utf-8")
            return raw, [], []
        except UnicodeDecodeError:
            lines = _Lines(raw)
            maybe, _ = _utf8_lines(raw, lines)
            return _by_line(raw, enc, first_line, ~maybe, lines)
    lines = _Lines(raw)
    maybe, high = _utf8_lines(raw, lines)
    utf8 = _confirmed_utf8(raw, maybe & high, lines)
    if not utf8.any():
        try:
            return raw.decode(enc).encode("utf-8"), [], []
        except UnicodeDecodeError:
            pass
    return _by_line(raw, enc, first_line, utf8, lines)


_WINDOW = 4096      # lines decoded in one call between judged lines (bounds re-decoding)


def _by_line(raw: bytes, enc: str, first_line: int, judge: np.ndarray, lines: _Lines
             ) -> tuple[bytes, list[BadLine], list[str]]:
    """The block decoded a run of lines at a time: the runs in the usual encoding in one
    call each, the lines in `judge` (those that cannot be UTF-8; in a non-UTF-8 file those
    that are) one by one with `decode_line`, as is any line a run fails on."""
    bad: list[BadLine] = []
    out: list[bytes] = []
    other = 0
    starts, ends = lines.starts, lines.ends

    def one(i: int) -> None:
        nonlocal other
        line = raw[starts[i]:ends[i]]
        try:
            text = decode_line(line, enc)
        except UnicodeDecodeError as exc:
            bad.append(BadLine(first_line + i, f"{_neither(enc)} (byte 0x{line[exc.start]:02x} "
                               f"at column {exc.start + 1})",
                               line.decode("utf-8", errors="replace").rstrip("\r\n")[:2000]))
            out.append(b"\n" if line.endswith(b"\n") else b"")
            return
        try:
            other += text != line.decode(enc)
        except UnicodeDecodeError:
            other += 1
        out.append(text.encode("utf-8"))

    def run(lo: int, hi: int) -> None:
        """Lines lo..hi-1 in the usual encoding, a window at a time; a line that fails is
        judged alone and the window goes on after it."""
        while lo < hi:
            top = min(hi, lo + _WINDOW)
            chunk = raw[starts[lo]:ends[top - 1]]
            try:
                text = chunk.decode(enc)
                out.append(chunk if enc == "utf-8" else text.encode("utf-8"))
                lo = top
                continue
            except UnicodeDecodeError as exc:
                line = int(np.searchsorted(ends, starts[lo] + exc.start, side="right"))
            if line > lo:   # lines end on a newline, never inside a character
                out.append(raw[starts[lo]:starts[line]].decode(enc).encode("utf-8"))
            one(line)
            lo = line + 1

    prev = 0
    for i in np.flatnonzero(judge):
        run(prev, int(i))
        one(int(i))
        prev = int(i) + 1
    run(prev, len(starts))
    notes = []
    if other:
        notes.append(f"{other} line(s) from line {first_line} on are not "
                     f"{enc.upper()} and were read as "
                     f"{'GB18030' if enc == 'utf-8' else 'UTF-8'}")
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
