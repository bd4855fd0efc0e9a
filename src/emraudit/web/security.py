"""Sessions and CSRF tokens of the review app.

The session cookie holds a random token signed with a key kept in the state database
(`web_settings`), so every server process of one store accepts the same cookies. The store
keeps only the token's SHA-256 with the account and the last time it was used: a session ends
after IDLE_MINUTES without a request, after MAX_HOURS in any case, at logout, and when the
account is disabled or gets a new password. The cookie is HttpOnly, SameSite=Strict, Path=/,
and Secure when the app is served over HTTPS.

CSRF: every form carries `csrf_token`, an HMAC of the session token (so it needs no storage
and changes with every login). The login form, before any session, carries the HMAC of a
random nonce that a separate short-lived signed cookie holds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from emraudit.store import Store, now_utc, web_sessions, web_settings, web_users

COOKIE = "emraudit_session"
LOGIN_COOKIE = "emraudit_login"
IDLE_MINUTES = 30
MAX_HOURS = 12
LOGIN_FORM_SECONDS = 3600


def signing_key(store: Store) -> bytes:
    """The store's cookie-signing key, made on first use (the first writer wins)."""
    with store.begin() as c:
        row = c.execute(sa.select(web_settings.c.value)
                        .where(web_settings.c.name == "cookie_key")).first()
        if row:
            return bytes.fromhex(row[0])
    try:
        with store.begin() as c:
            c.execute(web_settings.insert().values(name="cookie_key",
                                                   value=secrets.token_hex(32)))
    except sa.exc.IntegrityError:
        pass
    return signing_key(store)


def _utc(v) -> datetime:
    t = pd.Timestamp(v)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass
class Session:
    token: str
    user: dict

    @property
    def username(self) -> str:
        return self.user["username"]

    @property
    def role(self) -> str:
        return self.user["role"]


class Guard:
    """Signs and checks cookies and tokens with one key."""

    def __init__(self, store: Store, key: bytes):
        self.store = store
        self.key = key
        self.signer = TimestampSigner(key, salt="emraudit.session")
        self.login_signer = TimestampSigner(key, salt="emraudit.login")

    # sessions -------------------------------------------------------------------------------
    def open_session(self, username: str) -> str:
        """A new session; returns the signed cookie value."""
        token = secrets.token_urlsafe(32)
        at = now_utc()
        with self.store.begin() as c:
            c.execute(web_sessions.insert().values(token_hash=_digest(token), username=username,
                                                   created=at, seen=at))
            # sessions of anyone that ended long ago are no use to keep
            c.execute(web_sessions.delete().where(
                web_sessions.c.seen < at - timedelta(hours=MAX_HOURS)))
        return self.signer.sign(token.encode("ascii")).decode("ascii")

    def session(self, cookie: str | None) -> Session | None:
        """The live session of this cookie, or None (bad signature, ended, account off)."""
        if not cookie:
            return None
        try:
            token = self.signer.unsign(cookie, max_age=MAX_HOURS * 3600).decode("ascii")
        except (BadSignature, SignatureExpired, UnicodeDecodeError):
            return None
        now = now_utc()
        with self.store.begin() as c:
            row = c.execute(sa.select(web_sessions, web_users).select_from(
                web_sessions.join(web_users, web_users.c.username == web_sessions.c.username))
                .where(web_sessions.c.token_hash == _digest(token))).mappings().first()
            if row is None:
                return None
            if (not row["active"] or row["locked"]
                    or now - _utc(row["seen"]) > timedelta(minutes=IDLE_MINUTES)
                    or now - _utc(row["created"]) > timedelta(hours=MAX_HOURS)):
                c.execute(web_sessions.delete().where(
                    web_sessions.c.token_hash == _digest(token)))
                return None
            if now - _utc(row["seen"]) > timedelta(minutes=1):
                c.execute(web_sessions.update().where(
                    web_sessions.c.token_hash == _digest(token)).values(seen=now))
        user = {k: row[k] for k in ("username", "role", "lang", "active")}
        return Session(token, user)

    def close_session(self, session: Session) -> None:
        with self.store.begin() as c:
            c.execute(web_sessions.delete().where(
                web_sessions.c.token_hash == _digest(session.token)))

    # CSRF -----------------------------------------------------------------------------------
    def csrf(self, session: Session) -> str:
        return hmac.new(self.key, b"csrf:" + session.token.encode("ascii"),
                        hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(session), str(token))

    def login_form(self) -> tuple[str, str]:
        """(cookie value, csrf token) for a fresh login form."""
        nonce = secrets.token_urlsafe(24)
        cookie = self.login_signer.sign(nonce.encode("ascii")).decode("ascii")
        return cookie, self._login_token(nonce)

    def login_csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        try:
            nonce = self.login_signer.unsign(cookie, max_age=LOGIN_FORM_SECONDS).decode("ascii")
        except (BadSignature, SignatureExpired, UnicodeDecodeError):
            return False
        return hmac.compare_digest(self._login_token(nonce), str(token))

    def _login_token(self, nonce: str) -> str:
        return hmac.new(self.key, b"login:" + nonce.encode("ascii"), hashlib.sha256).hexdigest()


class ClientLimiter:
    """Failed logins per client address in a sliding window (in memory, bounded): one
    address trying many account names is slowed down too, not only each account."""

    def __init__(self, limit: int = 20, window_s: int = 600, max_clients: int = 10_000):
        self.limit, self.window_s, self.max_clients = limit, window_s, max_clients
        self._fails: dict[str, list[float]] = {}

    def _recent(self, client: str, now: float) -> list[float]:
        times = [t for t in self._fails.get(client, []) if now - t < self.window_s]
        if times:
            self._fails[client] = times
        else:
            self._fails.pop(client, None)
        return times

    def blocked(self, client: str, now: float) -> bool:
        return len(self._recent(client, now)) >= self.limit

    def failed(self, client: str, now: float) -> None:
        if len(self._fails) >= self.max_clients and client not in self._fails:
            oldest = min(self._fails, key=lambda k: self._fails[k][-1])
            del self._fails[oldest]
        self._recent(client, now)
        self._fails.setdefault(client, []).append(now)


__all__ = ["Guard", "Session", "ClientLimiter", "signing_key", "COOKIE", "LOGIN_COOKIE"]
