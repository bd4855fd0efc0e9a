"""Who answers for a department: the 责任人 of the problem ledger and the copy of a notice.

The head named by the `departments` table (科主任 / 负责人); where it names none, the
person `[ledger.responsible]` names for that department; then the head of the department
it belongs to (parent), and so on up; last `[ledger] default_responsible` (or the older
`[reports] responsible`). A user is never made responsible for their own case: when the
user heads the department, the next one up answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from emraudit.config import Config
from emraudit.reports.page import _s as text


def _s(v) -> str:
    return text(v).strip()


@dataclass(frozen=True)
class Responsible:
    person: str        # "name (user id)", a configured text, or "" when nobody is named
    user_id: str       # the head's account, when known
    name: str
    source: str        # head | configured | parent | default | none
    department: str    # the department whose head (or configured person) it is


class Departments:
    """The departments table (may be missing) with the ledger's configuration."""

    def __init__(self, table: pd.DataFrame | None, config: Config):
        self.rows: dict[str, dict] = {}
        if table is not None and len(table):
            for r in table.to_dict("records"):
                d = _s(r.get("department"))
                if d:
                    self.rows[d] = {k: _s(r.get(k)) for k in
                                    ("parent", "head_user_id", "head_name")}
        self.configured = {k.strip(): v.strip() for k, v in config.ledger.responsible.items()}
        self.default = (config.ledger.default_responsible or config.reports.responsible
                        or "").strip()

    def head(self, department: str) -> tuple[str, str]:
        """(user id, name) of the department's head, empty when none is named."""
        r = self.rows.get(_s(department), {})
        return r.get("head_user_id", ""), r.get("head_name", "")

    def responsible(self, department: str, *, not_user: str = "") -> Responsible:
        """The person answering for `department` (never `not_user`)."""
        dept = _s(department)
        seen: set[str] = set()
        first = True
        while dept and dept not in seen:
            seen.add(dept)
            uid, name = self.head(dept)
            if (uid or name) and not (not_user and uid == not_user):
                person = f"{name} ({uid})" if name and uid else (name or uid)
                return Responsible(person, uid, name, "head" if first else "parent", dept)
            if dept in self.configured:
                return Responsible(self.configured[dept], "", "", "configured", dept)
            dept = self.rows.get(dept, {}).get("parent", "")
            first = False
        if self.default:
            return Responsible(self.default, "", "", "default", "")
        return Responsible("", "", "", "none", "")


__all__ = ["Departments", "Responsible"]
