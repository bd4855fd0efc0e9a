"""Findings in transit between a partition and the store, packed: the heavy columns as the
store's own text, compressed.

A partition's findings carry their evidence and message arguments as nested dicts: about
ten kilobytes of Python objects a finding, where the store keeps 1.5 KB of JSON. A night
where a fifth of the accesses go unexplained is 700,000 findings at 10M events: as objects
in the scan's process that was 7 GB before the first was stored. So the worker that found
them encodes them once, exactly as the store writes them (`results`), and compresses the
text (zlib: evidence repeats its keys and codes, ~6× smaller); the scan's process holds
bytes, the store decompresses them into the same text it always wrote. The facts the scan
weighs before storing (the risk flags) are taken in the worker, from the objects.

Compressing costs a worker about 40 µs a finding; a partition whose text is small travels
it plain (UTF-8 bytes) instead: `pack(found, plain_bytes)` compresses only above that many
bytes of text, and the scan divides a fixed budget (PLAIN_BUDGET) among its tasks, so its
process never holds more plain text than that whatever the night. A zlib stream starts
with b"x" and JSON text never does: either form is read back by `text_of`.

`unpack` gives the objects back (tests compare partitioned findings with single-process
ones; anything that needs the dicts). `evidence_of` decodes one packed value.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import pandas as pd

from emraudit.model import dumps
from emraudit.risk import finding_flags, flag_lists

LEVEL = 1                                  # zlib: the fastest level is most of the gain
PLAIN_BUDGET = 256 * 2**20                 # plain text the scan's process may hold, in all
_ZLIB = b"x"                               # the first byte of a zlib stream (32K window)


# message arguments as the store has always kept them (json.dumps's separators)
_ARGS = json.JSONEncoder(ensure_ascii=False, default=str, sort_keys=True)


def text_of(v: bytes) -> str:
    """The JSON text of a packed value, compressed or plain."""
    return zlib.decompress(v).decode("utf-8") if v[:1] == _ZLIB else v.decode("utf-8")


def evidence_text(v: Any) -> str:
    """The store's text of an evidence value (objects, or packed): compact, as
    `model.dumps` writes it, so findings.jsonl can carry the text of an evidence masking
    leaves alone as it is (findings_jsonl) instead of decoding and encoding it again."""
    if isinstance(v, bytes):
        return text_of(v)
    return dumps(v)


def args_text(v: Any) -> str | None:
    """The store's text of message arguments, objects or packed (None when none)."""
    if isinstance(v, bytes):
        return text_of(v)
    return _ARGS.encode(v) if isinstance(v, dict) else None


def events_text(v: Any) -> str:
    """The store's text of a finding's event ids (a list, or packed: the text already)."""
    return v if isinstance(v, str) else json.dumps(list(v))


def evidence_of(v: Any) -> Any:
    """An evidence (or arguments) value as objects: packed bytes decoded, anything else
    as it is."""
    if isinstance(v, bytes):
        return json.loads(text_of(v))
    return v


def _encoded(texts: list[str | None]) -> list[bytes | None]:
    return [None if t is None else t.encode("utf-8") for t in texts]


def _squeezed(values: list[bytes | None], squeeze: bool) -> list[bytes | None]:
    if not squeeze:
        return values
    return [None if v is None else zlib.compress(v, LEVEL) for v in values]


def pack(found: pd.DataFrame, plain_bytes: int = 0) -> pd.DataFrame:
    """A findings frame (the contract's shape, objects) packed for the trip to the store:
    `risk_flags` taken from the objects, evidence and message arguments as their text in
    UTF-8, compressed when there is more than `plain_bytes` of it, event ids as their JSON
    text."""
    out = found.copy()
    if not len(out):
        return out
    if "risk_flags" not in out:
        out["risk_flags"] = flag_lists(finding_flags(found))
    cols = {c: _encoded([text(v) for v in out[c]])
            for c, text in (("evidence", evidence_text), ("message_args", args_text))
            if c in out}
    size = sum(len(v) for values in cols.values() for v in values if v is not None)
    for c, values in cols.items():
        out[c] = _squeezed(values, size > plain_bytes)
    out["event_ids"] = [events_text(v) for v in out["event_ids"]]
    return out


def unpack(found: pd.DataFrame) -> pd.DataFrame:
    """The findings as detectors made them (objects), from a packed frame; `risk_flags`
    dropped (annotate adds it again)."""
    out = found.drop(columns=[c for c in ("risk_flags",) if c in found]).copy()
    if not len(out):
        return out
    if "evidence" in out:
        out["evidence"] = [evidence_of(v) for v in out["evidence"]]
    if "message_args" in out:
        out["message_args"] = [evidence_of(v) for v in out["message_args"]]
    out["event_ids"] = [json.loads(v) if isinstance(v, str) else v for v in out["event_ids"]]
    return out


__all__ = ["pack", "unpack", "evidence_of", "evidence_text", "args_text",
           "events_text", "text_of", "PLAIN_BUDGET"]
