"""Patient masking, the one function every output goes through: names as 张*明, ids as
P0****67, unless `--unmask`.

Reports, the ledger, findings.jsonl in a report folder, and the CLI's text and JSON are read
by compliance staff who need to know *that* a patient's record was opened and by whom, rarely
*which* patient by name. Masking is on by default ([reports] mask_patients); `--unmask` turns
it off explicitly and is recorded (the scan record, the audit trail). Staff names are never
masked: who looked is the point of the report. `emraudit findings`, the store's own export,
stays raw and says so.

`Masker.scrub(text)` also replaces the known names and ids of patients wherever they appear
inside free text (a detector's sentence, an evidence string, a reviewer's note), so a
patient's name cannot leak through a finding summary. It scans the text once, looking each
position up in a dictionary of the known strings (by their lengths), so its cost does not grow
with the number of patients known: an id matches only as a whole token (P0001 is not masked
inside P00012), a name anywhere (Chinese text has no spaces), the longest known string first;
strings declared `keep` (staff names) are left whole even when they contain a patient's.
`finding(row)` and `case(row)` apply all of it to one record of the findings or cases
contract.
"""

from __future__ import annotations

import json
import re
from typing import Iterable

import numpy as np
import pandas as pd


def _blank(value) -> bool:
    if value is None:
        return True
    try:
        if pd.isna(value):
            return True
    except (TypeError, ValueError):
        pass
    return str(value).strip() == ""


def _stripped(value) -> str:
    """The value as text without surrounding blanks, "" when `_blank` (str without the
    pandas check: learning a night's patients meets hundreds of thousands)."""
    if type(value) is str:
        return value.strip()
    return "" if _blank(value) else str(value).strip()


def mask_name(name) -> str:
    """张三明 → 张*明, 张三 → 张*, 欧阳小明 → 欧**明; Latin words keep their first letter."""
    s = _stripped(name)
    if not s:
        return ""
    if " " in s:
        return " ".join(w[:1] + "*" * (len(w) - 1) for w in s.split())
    if len(s) == 1:
        return "*"
    if len(s) == 2:
        return s[0] + "*"
    return s[0] + "*" * (len(s) - 2) + s[-1]


def mask_id(value) -> str:
    """P00012367 → P0*****67: keep two characters at each end (one for short ids)."""
    return _mask_stripped_id(_stripped(value))


def _mask_stripped_id(s: str) -> str:
    """mask_id of a value already stripped."""
    if not s:
        return ""
    n = len(s)
    if n <= 2:
        return "*" * n
    if n <= 5:
        return s[0] + "*" * (n - 2) + s[-1]
    return s[:2] + "*" * (n - 4) + s[-2:]


def _word(ch: str) -> bool:
    """A character that continues an id token (ids match only as whole tokens)."""
    return ch.isascii() and (ch.isalnum() or ch in "_-")


class Masker:
    """Masks patient names and ids when `enabled`; knows which strings to scrub from text."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._known: dict[str, str] = {}     # raw string -> its masked form
        self._ids: set[str] = set()          # of those, ids: whole tokens only
        self._keep: set[str] = set()         # never replaced (staff names)
        self._index: tuple[frozenset, tuple[int, ...]] | None = None
        self._scrubbed: dict[str, str] = {}   # evidence repeats its keys and codes endlessly
        # unchanged(): the index's first two characters as codes, for the index they were
        # built from (None: rebuild), and which characters start a known string at all
        self._codes: np.ndarray | None = None
        self._codes_for: tuple | None = None
        self._firsts: np.ndarray | None = None
        self._pt: tuple[pd.DataFrame, dict[str, list[str]]] | None = None   # _patient_table
        self._named: set[str] = set()        # ids learned with their names from that table
        self._first_chars: tuple | None = None   # (index, characters that start a string)

    # single values ---------------------------------------------------------------------
    def name(self, value) -> str:
        if _blank(value):
            return ""
        return mask_name(value) if self.enabled else str(value)

    def pid(self, value) -> str:
        s = _stripped(value)
        if not s:
            return ""
        return mask_id(s) if self.enabled else str(value)

    # what to scrub ---------------------------------------------------------------------
    def learn(self, ids: Iterable = (), names: Iterable = ()) -> None:
        """Remember patient ids and names to scrub from free text."""
        if not self.enabled:
            return
        added: list[str] = []
        known, id_set = self._known, self._ids
        for v in ids:
            s = _stripped(v)
            if len(s) >= 2:
                m = _mask_stripped_id(s)
                if s not in id_set or known.get(s) != m:
                    known[s] = m
                    id_set.add(s)
                    added.append(s)
        for v in names:
            s = _stripped(v)
            if len(s) >= 2:
                m = mask_name(s)
                if self._known.get(s) != m:
                    self._known[s] = m
                    added.append(s)
        self._grow(added)

    def keep(self, strings: Iterable) -> None:
        """Strings never replaced (staff names: a patient 王五 must not turn the staff
        member 王五明 into 王*明)."""
        if not self.enabled:
            return
        new = {str(s).strip() for s in strings
               if not _blank(s) and len(str(s).strip()) >= 2} - self._keep
        self._keep.update(new)
        self._grow(list(new))

    def _grow(self, added: list[str]) -> None:
        """What changes when strings were learned or kept: the scrub cache is dropped (they
        may change its answers), and a built index grows by them. Rebuilding the index over
        every string known so far, once per batch of findings, was quadratic in a night's
        patients (a 20%-unexplained night of 10M events names hundreds of thousands)."""
        if not added:
            return
        self._scrubbed = {}
        if self._index is None:
            return
        old_starts, lengths = self._index
        fresh = {x[:2] for x in added} - old_starts
        starts = old_starts | fresh
        lens = set(lengths) | {len(x) for x in added}
        index = (starts, tuple(sorted(lens, reverse=True)))
        if self._codes_for is self._index and self._codes is not None:
            if any(_ESCAPED.search(x) for x in added):
                self._codes = None
            else:
                self._add_start_codes(fresh)
            self._codes_for = index
        self._index = index

    def _patient_table(self, patients: pd.DataFrame) -> dict[str, list[str]]:
        """The patients table as {id: [names]}, built once per table: a report learns
        batch after batch from the same 300,000-row table, and scanning it per batch was
        most of the learning."""
        if self._pt is None or self._pt[0] is not patients:
            ids = patients["patient_id"].astype("string")
            ok = (ids.notna() & (ids.str.strip() != "")).fillna(False).to_numpy(dtype=bool)
            table: dict[str, list[str]] = {i: [] for i in ids[ok].tolist()}
            if "name" in patients.columns:
                names = patients["name"].astype("string")
                named = ok & (names.notna() & (names.str.strip() != "")).fillna(False) \
                    .to_numpy(dtype=bool)
                for i, n in zip(ids[named].tolist(), patients["name"][named].tolist()):
                    table[i].append(n)
            self._pt = (patients, table)      # the frame held: its id is not reused
            self._named = set()               # names looked up in this table
        return self._pt[1]

    def learn_patients(self, patients: pd.DataFrame | None, ids: Iterable) -> None:
        """Learn these patient ids and, from the patients table, their names. An id this
        masker already learned from the same table is not learned again: a night's report
        meets the same patients batch after batch."""
        if not self.enabled:
            return
        # a night's findings name the same patients over and over: the repeats are dropped
        # before anything is done per id
        ids = list(dict.fromkeys(i if type(i) is str else str(i) for i in dict.fromkeys(ids)
                                 if (i.strip() if type(i) is str else not _blank(i))))
        if patients is None or not len(patients):
            self.learn(ids, [])
            return
        table = self._patient_table(patients)       # first: a new table resets _named
        named = self._named
        fresh = [i for i in ids if i not in named]
        if not fresh:
            return
        named.update(fresh)
        self.learn(fresh, [n for i in fresh for n in table.get(i, ())])

    def mentioned(self, patients: pd.DataFrame | None, texts: Iterable) -> list[str]:
        """The ids of the patients table that appear as a token in `texts`, sorted."""
        if patients is None or not len(patients):
            return []
        present = [t if isinstance(t, str) else str(t) for t in texts
                   if (t.strip() if isinstance(t, str) else not _blank(t))]
        tokens = id_tokens("\n".join(present))       # no token spans the separator
        if not tokens:
            return []
        return sorted(self._patient_table(patients).keys() & tokens)

    def learn_mentioned(self, patients: pd.DataFrame | None, texts: Iterable) -> None:
        """Learn the patients of the patients table whose id appears as a token in `texts`
        (evidence lists and sentences that name other patients than the record's own)."""
        if not self.enabled:
            return
        ids = self.mentioned(patients, texts)
        if ids:
            self.learn_patients(patients, ids)

    def findings_patients(self, patients: pd.DataFrame | None, found: pd.DataFrame,
                          evidence_texts: list[str] | None = None) -> list[list]:
        """The patients of these findings, as the id lists `learn_findings` learns in turn:
        their own, those of findings of several patients, and those the summaries or the
        evidence name (`evidence_texts`: the evidence's JSON as stored, when the caller has
        it, instead of encoding the objects again). Learns nothing, so forked workers can
        find them for the parent's masker."""
        if found is None or not len(found):
            return []
        own = found["patient_id"].tolist() if "patient_id" in found else []
        many = [p for v in found["patient_ids"] if isinstance(v, list) for p in v] \
            if "patient_ids" in found else []
        texts = list(found["summary"]) if "summary" in found else []
        if evidence_texts is not None:
            texts += evidence_texts
        elif "evidence" in found:
            texts += [e if isinstance(e, str) else json.dumps(e, ensure_ascii=False,
                                                              default=str)
                      for e in found["evidence"]]
        return [own, many, self.mentioned(patients, texts)]

    def learn_findings(self, patients: pd.DataFrame | None, found: pd.DataFrame,
                       evidence_texts: list[str] | None = None) -> None:
        """Learn the patients of these findings (`findings_patients`)."""
        if not self.enabled:
            return
        for ids in self.findings_patients(patients, found, evidence_texts):
            self.learn_patients(patients, ids)

    # free text ---------------------------------------------------------------------------
    def pattern(self):
        """Build the lookup index now (before forking page writers, so each inherits it)."""
        if self._index is None:
            strings = set(self._known) | self._keep
            self._index = (frozenset(s[:2] for s in strings),
                           tuple(sorted({len(s) for s in strings}, reverse=True)))
        return self._index

    def ready(self, patients: pd.DataFrame | None = None) -> None:
        """Build every lookup scrubbing uses, and the index of `patients` when given, now
        (before forking workers: each inherits them instead of building its own)."""
        if not self.enabled:
            return
        if patients is not None and len(patients):
            self._patient_table(patients)
        if self._known or self._keep:
            self._starts()
            self._start_codes()

    def scrub(self, text) -> str:
        """Free text with every known patient name or id replaced by its masked form."""
        if isinstance(text, str):           # the common case, without pd.isna
            if not text.strip():
                return ""
            s = text
        elif _blank(text):
            return ""
        else:
            s = str(text)
        if not self.enabled or not self._known:
            return s
        if self._starts().isdisjoint(s):     # most strings (times, codes, keys)
            return s
        whole = self._known.get(s)          # a patient's id or name alone (evidence lists)
        if whole is not None and s not in self._keep:
            return whole
        done = self._scrubbed.get(s)
        if done is None:
            if len(self._scrubbed) > 500_000:      # bounded: a night's distinct strings
                self._scrubbed.clear()
            done = self._scrubbed[s] = self._scrub(s)
        return done

    def _starts(self) -> frozenset:
        """The characters a known or kept string starts with: text holding none of them
        is left as it is."""
        index = self.pattern()
        if self._first_chars is None or self._first_chars[0] is not index:
            self._first_chars = (index, frozenset(x[0] for x in index[0]))
        return self._first_chars[1]

    def _scrub(self, s: str) -> str:
        starts, lengths = self.pattern()
        known, ids, keep = self._known, self._ids, self._keep
        out: list[str] = []
        last = i = 0
        n = len(s)
        while i < n - 1:
            if s[i:i + 2] not in starts:
                i += 1
                continue
            for size in lengths:
                if i + size > n:
                    continue
                piece = s[i:i + size]
                if piece in keep:
                    i += size - 1
                    break
                rep = known.get(piece)
                if rep is None:
                    continue
                if piece in ids and ((i and _word(s[i - 1])) or
                                     (i + size < n and _word(s[i + size]))):
                    continue          # part of a longer token: another id, not this one
                out.append(s[last:i])
                out.append(rep)
                last = i + size
                i = last - 1
                break
            i += 1
        out.append(s[last:])
        return "".join(out)

    def unchanged(self, texts: list[str]) -> np.ndarray:
        """Per JSON text (json.dumps with ensure_ascii=False, as the store keeps evidence):
        True where `scrub_obj` of its object is certainly the object itself, so the walk
        can be skipped. Decided for a whole batch at once from the text: no two adjacent
        characters start a known or kept string (the first thing `scrub` looks for), and no
        string in it is blank (`scrub` empties those). Text with \\u escapes, or known
        strings JSON would escape, are never skipped (their characters are not literal)."""
        n = len(texts)
        out = np.array([not _BLANK_LITERAL.search(t) and "\\u" not in t for t in texts],
                       dtype=bool)
        if not n or not self.enabled or not (self._known or self._keep):
            return out
        codes = self._start_codes()
        if codes is None:
            return np.zeros(n, dtype=bool)
        if not len(codes):
            return out
        lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
        a = np.frombuffer("\x00".join(texts).encode("utf-32-le"), dtype=np.uint32)
        if len(a) < 2:
            return out
        first = self._firsts[a[:-1]]              # most characters start nothing known
        cand = np.flatnonzero(first & (a[1:] != 0))
        pair = (a[cand].astype(np.uint64) << np.uint64(21)) | a[cand + 1].astype(np.uint64)
        at = np.searchsorted(codes, pair).clip(max=len(codes) - 1)
        hit = cand[codes[at] == pair]
        if len(hit):
            ends = np.cumsum(lens + 1)            # one past each text's separator
            out[np.searchsorted(ends, hit, side="right")] = False
        return out

    def _start_codes(self) -> np.ndarray | None:
        """The first two characters of every known and kept string as sorted codes (None
        when one holds a character JSON escapes: the text would not show it)."""
        starts, _ = self.pattern()
        if self._codes_for is not self._index:
            strings = set(self._known) | self._keep
            if any(_ESCAPED.search(x) for x in strings):
                self._codes = None
            else:
                self._codes = np.empty(0, dtype=np.uint64)
                self._firsts = np.zeros(0x110000, dtype=bool)
                self._add_start_codes(starts)
            self._codes_for = self._index
        return self._codes

    def _add_start_codes(self, starts) -> None:
        """Add these two-character starts to the sorted codes and to the table of
        characters that start a known string (the separator, code 0, never does)."""
        starts = list(starts)
        if not starts:
            return
        self._codes = np.union1d(self._codes, np.array(
            [(ord(x[0]) << 21) | ord(x[1]) for x in starts], dtype=np.uint64))
        self._firsts[[ord(x[0]) for x in starts]] = True
        self._firsts[0] = False

    def scrub_obj(self, obj):
        """`scrub` applied to every key and string inside a JSON-like structure (tuples
        become lists). A night's evidence holds over a million strings, nearly all sharing
        no character with the start of a known string: those are decided here, once per
        call, and only the others (and blanks, which scrub empties) go through `scrub`."""
        starts = self._starts() if self.enabled and self._known else frozenset()
        return _walk(obj, starts, self.scrub)

    # records -----------------------------------------------------------------------------
    def finding(self, row: dict) -> dict:
        """One finding (the contract's fields) as an output shows it: patient id masked,
        summary and evidence scrubbed. The caller has learned the patients involved."""
        if not self.enabled:
            return row
        out = dict(row)
        out["patient_id"] = self.pid(row.get("patient_id")) or row.get("patient_id")
        out["summary"] = self.scrub(row.get("summary"))
        ev = row.get("evidence")
        if isinstance(ev, str):
            try:
                out["evidence"] = json.dumps(self.scrub_obj(json.loads(ev)),
                                             ensure_ascii=False, sort_keys=True)
            except ValueError:
                out["evidence"] = self.scrub(ev)
        elif ev is not None:
            out["evidence"] = self.scrub_obj(ev)
        return out

    def case(self, row: dict) -> dict:
        """One case row as an output shows it: its patients masked, its free text
        (summary, the reviewer's note) scrubbed."""
        if not self.enabled:
            return row
        out = dict(row)
        if not _blank(row.get("patient_id")):
            out["patient_id"] = self.pid(row["patient_id"])
        pats = row.get("patients")
        if isinstance(pats, str) and pats:
            try:
                out["patients"] = json.dumps([self.pid(p) for p in json.loads(pats)])
            except ValueError:
                out["patients"] = self.scrub(pats)
        elif isinstance(pats, list):
            out["patients"] = [self.pid(p) for p in pats]
        for key in ("summary", "note"):
            if key in row and not _blank(row[key]):
                out[key] = self.scrub(row[key])
        return out


# id_tokens: every byte that is not an ASCII letter, digit, '_' or '-' made a space
_TOKEN_BYTES = bytes(c if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "_-") else 32
                     for c in range(256))
# a blank JSON string (key or value) that scrub() would empty. Without indent, JSON text
# has whitespace only inside strings and after the separators' ',' and ':', so a quote,
# blanks and a quote is such a string (or, harmlessly, something that only looks like it)
_BLANK_LITERAL = re.compile(r'"(?:\s|\\[nrtf]|\\u00[01][0-9a-fA-F])+"')
_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def _walk(obj, starts: frozenset, scrub):
    """scrub_obj's walk: a non-blank string with none of `starts` is what scrub would
    return; strings inside lists and dicts are decided without a call of their own."""
    if isinstance(obj, str):
        return obj if obj.strip() and starts.isdisjoint(obj) else scrub(obj)
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) and k.strip() and starts.isdisjoint(k) else scrub(k)):
                ((v if v.strip() and starts.isdisjoint(v) else scrub(v)) if isinstance(v, str)
                 else _walk(v, starts, scrub) if isinstance(v, (dict, list, tuple)) else v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [(v if v.strip() and starts.isdisjoint(v) else scrub(v)) if isinstance(v, str)
                else _walk(v, starts, scrub) if isinstance(v, (dict, list, tuple)) else v
                for v in obj]
    return obj


def id_tokens(text: str) -> set[str]:
    """The id-like tokens of a text (runs of ASCII letters, digits, '_' and '-'). Split
    from its UTF-8 bytes (a character beyond ASCII is bytes of 0x80 and above, never part
    of a token): a night's evidence is hundreds of millions of characters, and a regular
    expression took half again as long."""
    runs = text.encode("utf-8", "surrogatepass").translate(_TOKEN_BYTES).split()
    return {t.decode("ascii") for t in set(runs)}


def case_patient_ids(row: dict) -> list[str]:
    """The patients a case row is about (its patient, or its incident's list)."""
    ids = [] if _blank(row.get("patient_id")) else [str(row["patient_id"])]
    pats = row.get("patients")
    if isinstance(pats, str) and pats:
        try:
            ids += [str(p) for p in json.loads(pats)]
        except ValueError:
            pass
    elif isinstance(pats, list):
        ids += [str(p) for p in pats]
    return ids
