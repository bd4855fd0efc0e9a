"""The audit trail: who logged in, viewed, unmasked, decided, assigned and exported what.

Append-only and hash-chained: row n stores the SHA-256 of its own fields and of row n-1's
hash, so changing, deleting or inserting a row anywhere breaks every hash after it, which
`verify` (`emraudit audit verify`) finds and names. Rows are numbered 1, 2, 3 … without gaps;
two writers racing for the same number collide on the primary key and the loser retries with
the next one, so the chain never forks. The store also refuses UPDATE and DELETE on the table
(triggers), so tampering needs someone who can drop them — and still shows in the chain.
The newest hash (`verify(...).head`) can be written down elsewhere to detect a cut-off tail.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from emraudit.store import Store, audit_trail, now_utc

GENESIS = "0" * 64
ACTIONS = ("login", "login_failed", "logout", "case_view", "unmask", "disposition", "assign",
           "comment", "allowlist", "rectify", "notice", "export", "search_user", "search_patient",
           "trail_view", "user_add", "user_passwd", "user_disable", "user_enable", "user_role")
_CHUNK = 5000


def _when(v: Any) -> str:
    """A stored time as fixed UTC text (SQLite drops the zone; PostgreSQL keeps it)."""
    t = pd.Timestamp(v)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(row: dict) -> str:
    """The hash of one row: its fields in a fixed order, then the previous row's hash."""
    parts = [int(row["seq"]), _when(row["at"]), row["actor"], row.get("role") or "",
             row["action"], row.get("target") or "", row.get("detail") or "",
             row.get("client") or "", row["prev_hash"]]
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# the PostgreSQL advisory lock that serializes appends to the trail (any fixed number)
_TRAIL_LOCK = 0x656D7261


def record(store: Store, actor: str, action: str, *, target: str | None = None,
           detail: dict | None = None, role: str | None = None, client: str | None = None,
           at: datetime | None = None, retries: int = 20) -> int:
    """Append one row; returns its number."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    at = at or now_utc()
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str) \
        if detail else None
    last_exc: Exception | None = None
    for _ in range(retries):
        try:
            with store.begin() as c:
                if c.dialect.name == "postgresql":
                    # appenders queue here instead of racing for the next number
                    c.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TRAIL_LOCK})
                head = c.execute(sa.select(audit_trail.c.seq, audit_trail.c.hash)
                                 .order_by(audit_trail.c.seq.desc()).limit(1)).first()
                seq, prev = (int(head[0]) + 1, head[1]) if head else (1, GENESIS)
                row = {"seq": seq, "at": at, "actor": actor, "role": role, "action": action,
                       "target": None if target is None else str(target)[:200],
                       "detail": text, "client": client, "prev_hash": prev}
                row["hash"] = row_hash(row)
                c.execute(audit_trail.insert().values(**row))
                return seq
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
            last_exc = exc      # another writer took this number: read the head again
            time.sleep(random.uniform(0.001, 0.02))
    raise RuntimeError(f"could not append to the audit trail: {last_exc}")


@dataclass
class Verified:
    """The outcome of `verify`: rows checked, problems found (empty: intact), newest hash."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)
    head: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: Store, *, max_problems: int = 50) -> Verified:
    """Walk the chain in order, recomputing every hash; name each row that does not fit."""
    out = Verified()
    expect_seq, prev = 1, GENESIS
    cols = [c.name for c in audit_trail.columns]
    with store.engine.connect() as c:
        last = 0
        while True:
            rows = c.execute(sa.select(audit_trail).where(audit_trail.c.seq > last)
                             .order_by(audit_trail.c.seq).limit(_CHUNK)).fetchall()
            if not rows:
                break
            for values in rows:
                r = dict(zip(cols, values))
                seq = int(r["seq"])
                if seq != expect_seq:
                    out.problems.append(f"row {seq}: expected row {expect_seq} "
                                        f"(rows {expect_seq}..{seq - 1} are missing)")
                if r["prev_hash"] != prev:
                    out.problems.append(f"row {seq}: does not link to the row before it "
                                        "(that row was changed, removed or inserted)")
                if row_hash(r) != r["hash"]:
                    out.problems.append(f"row {seq}: its content does not match its hash "
                                        "(the row was changed)")
                prev, expect_seq = r["hash"], seq + 1
                out.rows += 1
                if len(out.problems) >= max_problems:
                    out.head = prev
                    return out
            last = int(rows[-1][0])
    out.head = prev
    return out


def read(store: Store, *, actor: str | None = None, action: str | None = None,
         target: str | None = None, before: int | None = None, limit: int = 100
         ) -> pd.DataFrame:
    """The newest rows first (optionally filtered), `limit` at a time, paged by `before`."""
    cond = []
    if actor:
        cond.append(audit_trail.c.actor == actor)
    if action:
        cond.append(audit_trail.c.action == action)
    if target:
        cond.append(audit_trail.c.target == target)
    if before:
        cond.append(audit_trail.c.seq < before)
    stmt = sa.select(audit_trail).order_by(audit_trail.c.seq.desc()).limit(limit)
    if cond:
        stmt = stmt.where(sa.and_(*cond))
    with store.engine.connect() as c:
        res = c.execute(stmt)
        return pd.DataFrame(res.fetchall(), columns=list(res.keys()))
