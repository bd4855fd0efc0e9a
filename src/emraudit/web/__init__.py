"""The review app (`emraudit serve`): compliance staff work the open-case queue in a browser.

Starlette + Jinja2 over the state database (SQLite or PostgreSQL). Accounts and roles live in
`accounts` and `roles`, sessions and CSRF in `security`, the hash-chained audit trail in
`trail`; the pages are built by `queue`, `casepage`, `search` and `downloads` from the same
view models and templates as the static reports, and wired together in `app`.
"""

from emraudit.web.app import create_app

__all__ = ["create_app"]
