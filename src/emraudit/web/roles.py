"""Who may do what in the review app: one table of permissions per role.

Separation of duties: reviewers decide cases and record their rectification; officers also
assign them, allowlist, unmask patients, issue notices (告知书) and download the ledger;
admins manage accounts and see no cases; auditors read the audit trail and the cases
(read-only) but decide nothing.
"""

from __future__ import annotations

from emraudit.reports.i18n import N_

ROLES = ("reviewer", "officer", "admin", "auditor")
ROLE_LABELS = {"reviewer": N_("reviewer"), "officer": N_("privacy officer"),
               "admin": N_("administrator"), "auditor": N_("auditor")}

PERMISSIONS: dict[str, frozenset[str]] = {
    "reviewer": frozenset({"view_cases", "decide", "comment", "search"}),
    "officer": frozenset({"view_cases", "decide", "comment", "search", "assign", "allowlist",
                          "unmask", "download", "notice"}),
    "admin": frozenset({"manage_users"}),
    "auditor": frozenset({"view_cases", "search", "read_trail", "download"}),
}


def may(role: str | None, permission: str) -> bool:
    """True when `role` has `permission` (unknown roles have none)."""
    return permission in PERMISSIONS.get(role or "", frozenset())


def home(role: str) -> str:
    """The page a role lands on after login."""
    if may(role, "view_cases"):
        return "/cases"
    if may(role, "manage_users"):
        return "/admin/users"
    return "/login"
