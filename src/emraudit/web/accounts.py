"""Accounts of the review app: argon2 password hashes, roles, rate-limited logins, lock-out.

Passwords are hashed with argon2id (argon2-cffi's defaults, rehashed on login when those
defaults change). Failed logins in a row are counted per account: after FREE_FAILURES each
further attempt must wait an exponentially growing delay (refused unchecked while it runs),
and after LOCK_AFTER the account is locked until an admin sets a new password. A login for
an unknown or disabled account costs the same hash verification as a real one, so response
times do not tell which names exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from emraudit.errors import UserError
from emraudit.store import Store, now_utc, web_sessions, web_users
from emraudit.web.roles import ROLES

FREE_FAILURES = 3          # failures in a row before logins are slowed down
LOCK_AFTER = 10            # failures in a row that lock the account
MAX_DELAY = 300            # seconds: the longest wait between two attempts
MIN_PASSWORD = 10          # characters
_NAME = re.compile(r"[^\s/\\<>\"'&]{1,64}")

_hasher = PasswordHasher()      # argon2id, RFC 9106 low-memory profile (argon2-cffi default)
_dummy: dict[int, str] = {}


def _dummy_hash() -> str:
    """A hash of the current parameters to verify against when there is no account."""
    key = id(_hasher)
    if key not in _dummy:
        _dummy[key] = _hasher.hash("emraudit: no such account")
    return _dummy[key]


@dataclass
class LoginResult:
    """What a login attempt came to: `ok`, or why not (bad, rate_limited, locked)."""

    outcome: str                 # ok | bad | rate_limited | locked
    user: dict | None = None
    wait: int = 0                # seconds to wait (rate_limited)


def _utc(v) -> datetime | None:
    if v is None or v is pd.NaT:
        return None
    t = pd.Timestamp(v)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.fullmatch(name):
        raise UserError(f"bad account name {name!r}: 1-64 characters, no spaces, slashes, "
                        "quotes or angle brackets")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role '{role}' (expected one of {', '.join(ROLES)})")
    return role


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if password.strip() != password or "\n" in password:
        raise UserError("the password must not start or end with spaces or hold a line break")
    return password


def get_user(conn: sa.Connection, name: str) -> dict | None:
    row = conn.execute(sa.select(web_users).where(web_users.c.username == name)) \
        .mappings().first()
    return dict(row) if row else None


def _require(conn: sa.Connection, name: str) -> dict:
    user = get_user(conn, name)
    if user is None:
        raise UserError(f"no account '{name}' (see `emraudit users list`)")
    return user


def add_user(store: Store, name: str, role: str, password: str) -> dict:
    name, role = check_name(name), check_role(role)
    at = now_utc()
    with store.begin() as c:
        if get_user(c, name) is not None:
            raise UserError(f"account '{name}' already exists (use `emraudit users passwd`)")
        check_password(password)
        c.execute(web_users.insert().values(
            username=name, role=role, password_hash=_hasher.hash(password), active=True,
            locked=False, failed=0, created=at, updated=at))
        return _require(c, name)


def set_password(store: Store, name: str, password: str) -> dict:
    """A new password; also unlocks the account and ends its sessions."""
    check_password(password)
    with store.begin() as c:
        _require(c, name)
        c.execute(web_users.update().where(web_users.c.username == name).values(
            password_hash=_hasher.hash(password), locked=False, failed=0, last_failed=None,
            updated=now_utc()))
        c.execute(web_sessions.delete().where(web_sessions.c.username == name))
        return _require(c, name)


def set_active(store: Store, name: str, active: bool) -> dict:
    """Disable (ending its sessions) or enable an account."""
    with store.begin() as c:
        _require(c, name)
        c.execute(web_users.update().where(web_users.c.username == name)
                  .values(active=active, updated=now_utc()))
        if not active:
            c.execute(web_sessions.delete().where(web_sessions.c.username == name))
        return _require(c, name)


def set_role(store: Store, name: str, role: str) -> dict:
    check_role(role)
    with store.begin() as c:
        _require(c, name)
        c.execute(web_users.update().where(web_users.c.username == name)
                  .values(role=role, updated=now_utc()))
        return _require(c, name)


def set_lang(store: Store, name: str, lang: str) -> None:
    with store.begin() as c:
        c.execute(web_users.update().where(web_users.c.username == name).values(lang=lang))


def list_users(store: Store) -> pd.DataFrame:
    df = store.read_table(web_users, order_by=web_users.c.username)
    return df.drop(columns="password_hash")


def usernames(store: Store, role_perm: str | None = None) -> list[str]:
    """Active account names (optionally only roles with a permission), for assignment."""
    from emraudit.web.roles import may
    df = list_users(store)
    if df.empty:
        return []
    df = df[df["active"].astype(bool)]
    if role_perm:
        df = df[df["role"].map(lambda r: may(r, role_perm))]
    return sorted(df["username"].astype(str))


def delay_for(failed: int) -> int:
    """Seconds an account must wait after `failed` failures in a row before the next try."""
    if failed < FREE_FAILURES:
        return 0
    return int(min(MAX_DELAY, 2 ** (failed - FREE_FAILURES)))


def authenticate(store: Store, name: str, password: str, *, now: datetime | None = None
                 ) -> LoginResult:
    """Check a login, counting failures, slowing them down and locking the account."""
    now = _utc(now) if now is not None else now_utc()
    name = (name or "").strip()
    with store.begin() as c:
        user = get_user(c, name) if name else None
        if user is None or not user["active"]:
            _verify(_dummy_hash(), password)
            return LoginResult("bad")
        if user["locked"]:
            _verify(_dummy_hash(), password)
            return LoginResult("locked", user)
        last = _utc(user["last_failed"])
        wait = delay_for(int(user["failed"] or 0))
        if wait and last is not None and now < last + timedelta(seconds=wait):
            return LoginResult("rate_limited", user,
                               int((last + timedelta(seconds=wait) - now).total_seconds()) + 1)
        ok = _verify(user["password_hash"], password)
        if not ok:
            failed = int(user["failed"] or 0) + 1
            locked = failed >= LOCK_AFTER
            c.execute(web_users.update().where(web_users.c.username == name).values(
                failed=failed, last_failed=now, locked=locked))
            user.update(failed=failed, locked=locked)
            return LoginResult("locked" if locked else "bad", user)
        values = {"failed": 0, "last_failed": None, "last_login": now}
        if _hasher.check_needs_rehash(user["password_hash"]):
            values["password_hash"] = _hasher.hash(password)
        c.execute(web_users.update().where(web_users.c.username == name).values(**values))
        user.update(values)
        return LoginResult("ok", user)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
