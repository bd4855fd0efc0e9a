"""findings.jsonl of a report folder: this scan's findings, one JSON line each in finding id
order (the contract file), masked as the pages are (DESIGN: patient ids and names in every
field follow mask_patients), sentences in English and the report's language.

Every line is masked with every patient the file names: the patients of all the scan's
findings (their own, those of findings of several patients, those the summaries and the
evidence name) are learned before the first line is written, so no line depends on the
batch it was read in or on how many processes wrote the file. From PARALLEL_MIN_FINDINGS
findings on, both passes are split between forked workers, a range of finding ids a task:
this process learns what they found range by range, in order, then joins the part files
they wrote, in order. A report takes these steps one at a time (FindingsFile) and does its
own work while the workers do theirs.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from emraudit.fastops import values_of
from emraudit.forking import ForkedMap, can_fork
from emraudit.model import FINDING_COLUMNS, dumps, patient_list
from emraudit.reports import data, files
from emraudit.reports.i18n import Lang
from emraudit.reports.masking import Masker
from emraudit.reports.text import report_record
from emraudit.store import Store

# below this many findings one process writes the file (forking costs more)
PARALLEL_MIN_FINDINGS = 5_000
BATCH = 5_000
# what learning the findings' patients reads: not their event ids or sentence arguments
LEARN_COLUMNS = ("finding_id", "patient_id", "patient_ids", "summary", "evidence")

Range = tuple[str, str]     # the finding ids above the first, up to the second


@dataclass
class _FindingsFile:
    """What writing the file needs: built once, inherited by forked workers."""

    store: Store
    scan_id: str
    lang: Lang
    masker: Masker
    patients: pd.DataFrame | None
    batch: int

    def _rows(self, bounds: Range, columns: Iterable[str] | None = None):
        self.store.after_fork()
        return data.iter_scan_findings(self.store, self.scan_id, self.batch, decode=False,
                                       after=bounds[0], until=bounds[1], columns=columns)

    def patients_of(self, bounds: Range) -> list[list]:
        """The id lists this range's findings teach the masker, in the order it learns
        them (Masker.findings_patients, a batch at a time)."""
        out: list[list] = []
        for raw in self._rows(bounds, LEARN_COLUMNS):
            found = raw.assign(patient_ids=[patient_list(v)
                                             for v in values_of(raw["patient_ids"])])
            out += self.masker.findings_patients(self.patients, found, _texts(raw))
        return out

    def lines(self, bounds: Range) -> Iterator[tuple[str, int]]:
        """This range's lines, a batch at a time: (text, how many findings)."""
        memo: dict = {}         # the sentences' formatted arguments: the masker is complete
        for raw in self._rows(bounds, FINDING_COLUMNS):     # what a record shows, no more
            texts = _texts(raw)
            same = self.masker.unchanged(texts) & _compact(texts)
            part = data.decode_findings(raw, evidence=~same)
            names = list(part.columns)
            rows = (dict(zip(names, v)) for v in zip(*(part[c].tolist() for c in names)))
            yield "".join(_line(report_record(r, self.lang, self.masker, evidence_unchanged=k,
                                              memo=memo), k) + "\n"
                          for r, k in zip(rows, same.tolist())), len(part)

    def write_part(self, task: tuple[Path, Range]) -> int:
        """In a worker: this range's lines in a part file of their own; how many."""
        path, bounds = task
        return _write(path, self.lines(bounds))


def write_findings_jsonl(path: Path, store: Store, scan_id: str, lang: Lang, masker: Masker,
                         patients: pd.DataFrame | None, *, workers: int = 1,
                         batch: int = BATCH, ids: list[str] | None = None) -> int:
    """Write this scan's findings.jsonl, `batch` findings read at a time (a night with
    hundreds of thousands is never held whole), by `workers` forked processes when there
    are PARALLEL_MIN_FINDINGS or more; returns how many findings it holds. `ids`: the
    scan's finding ids (data.scan_finding_ids), when the caller has read them."""
    f = FindingsFile(path, store, scan_id, lang, masker, patients, workers=workers,
                     batch=batch, ids=ids)
    try:
        f.learn()
        f.write()
        return f.finish()
    finally:
        f.close()


class FindingsFile:
    """findings.jsonl written in steps, so that a report can do its own work while the
    file's workers do theirs (write_findings_jsonl takes the steps one after the other):

    - `start()`: the workers that find the file's patients fork and begin (parallel only);
    - `collect()`: their id lists are gathered, the masker left as it was;
    - `learn()`: the masker learns them, range by range in order;
    - `write()`: one process writes the whole file now, or the writers fork and begin;
    - `finish()`: their parts are joined, in order; returns how many findings it holds.

    The lines see the masker as it is at `write()`; `close()` ends whatever is running."""

    def __init__(self, path: Path, store: Store, scan_id: str, lang: Lang, masker: Masker,
                 patients: pd.DataFrame | None, *, workers: int = 1, batch: int = BATCH,
                 ids: list[str] | None = None):
        ids = data.scan_finding_ids(store, scan_id) if ids is None else ids
        self.count = len(ids)
        self.workers = workers if in_parallel(len(ids), workers) else 1
        size = batch if self.workers == 1 else _task_size(len(ids), batch, self.workers)
        self.ranges = [(ids[i - 1] if i else "", ids[min(i + size, len(ids)) - 1])
                       for i in range(0, len(ids), size)]
        self.path = path
        self.job = _FindingsFile(store, scan_id, lang, masker, patients, batch)
        self._finding: ForkedMap | None = None      # the learners, while they run
        self._found: list[list[list]] | None = None
        self._writing: ForkedMap | None = None
        self._folder: Path | None = None
        self._tasks: list[tuple[Path, Range]] = []
        self._written: int | None = None

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    def start(self) -> None:
        if self._finding is None and self._found is None and self.parallel \
                and self.job.masker.enabled:
            self.job.masker.ready(self.job.patients)    # the patients table's index, inherited
            self._finding = ForkedMap(_FindingsFile.patients_of, self.job, self.ranges,
                                      self.workers)

    def collect(self) -> None:
        if self._found is not None or not self.job.masker.enabled:
            return
        if self.parallel:
            self.start()
            self._found, self._finding = list(self._finding), None
        else:
            self._found = [self.job.patients_of(bounds) for bounds in self.ranges]

    def learn(self) -> None:
        """Teach the masker the patients of every finding of the file, in order."""
        self.collect()
        for lists in self._found or ():
            for ids in lists:
                self.job.masker.learn_patients(self.job.patients, ids)

    def write(self) -> None:
        job = self.job
        if not self.parallel:
            self._written = _write(self.path, (x for bounds in self.ranges
                                               for x in job.lines(bounds)))
            return
        job.masker.ready()                  # built once, before the fork
        self._folder = Path(tempfile.mkdtemp(prefix=".findings-", dir=self.path.parent))
        self._tasks = [(self._folder / f"{i:06d}.jsonl", bounds)
                       for i, bounds in enumerate(self.ranges)]
        self._writing = ForkedMap(_FindingsFile.write_part, job, self._tasks, self.workers)

    def finish(self) -> int:
        try:
            if self._written is None:
                self._written = self._join()
            return self._written
        finally:
            self.close()

    def _join(self) -> int:
        """The workers' part files joined here, in order, as each is done."""
        files.write_text(self.path, "")
        n = 0
        with self.path.open("ab") as out:
            for (part, _), k in zip(self._tasks, self._writing):
                with part.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
                part.unlink()
                n += k
        self._writing = None
        return n

    def close(self) -> None:
        for running in (self._finding, self._writing):
            if running is not None:
                running.close()
        self._finding = self._writing = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def in_parallel(findings: int, workers: int) -> bool:
    """Whether a file of this many findings is written by forked workers."""
    return workers >= 2 and findings >= PARALLEL_MIN_FINDINGS and can_fork()


def _task_size(n: int, batch: int, workers: int) -> int:
    """Findings a task: at most a batch, in tasks of one size, as many as a multiple of the
    workers and at least four each (the worker that finishes last sets the time)."""
    tasks = max(-(-n // batch), workers * 4)
    tasks = -(-tasks // workers) * workers
    return max(1, -(-n // tasks))


def _write(path: Path, chunks: Iterable[tuple[str, int]]) -> int:
    """The chunks' text in a new private file; how many findings they held."""
    files.write_text(path, "")
    n = 0
    with path.open("a", encoding="utf-8") as fh:
        for text, k in chunks:
            fh.write(text)
            n += k
    return n


def _compact(texts: list[str]) -> np.ndarray:
    """Per stored evidence text: is it an object as `dumps` writes it (compact), so that a
    line can carry it as it is? Text stored before evidence was kept compact has a blank
    after its first key; it is decoded and written again instead."""
    out = np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        if t == "{}":
            out[i] = True
        elif t[:2] == '{"':
            k = t.find('":')
            out[i] = k > 0 and t[k + 2:k + 3] not in (" ", "")
    return out


def _line(record: dict, spliced: bool) -> str:
    """`dumps(record)`; with `spliced`, its evidence is the stored JSON text (compact, keys
    sorted: what dumps would write for the decoded object) put in the key's sorted place
    rather than decoded and encoded again."""
    if not spliced:
        return dumps(record)
    head = dumps({k: v for k, v in record.items() if k < "evidence"})[:-1]
    tail = dumps({k: v for k, v in record.items() if k > "evidence"})[1:]
    return (head + ("," if len(head) > 1 else "") + '"evidence":' + record["evidence"]
            + ("," if len(tail) > 1 else "") + tail)


def _texts(raw: pd.DataFrame) -> list[str]:
    """The evidence of store rows as its JSON text."""
    return raw["evidence"].fillna("").astype(str).tolist()
