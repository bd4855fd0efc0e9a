"""The review app's routes: login, the queue, the case page and its forms, search, downloads,
the audit trail and account management.

Contract (DESIGN.md): `GET /login` is a form with a hidden `csrf_token`; `POST /login` takes
`username`, `password`, `csrf_token` and redirects with the session cookie; `GET /cases`,
`GET /cases/{case_id}`; `POST /cases/{case_id}/disposition` takes `disposition`, `note`,
`csrf_token` (and optionally `version`, the case version the reviewer read). Anonymous
requests are redirected to /login; a POST without a valid token, or by a role that may not
act, gets 403.

Added: `POST /cases/{case_id}/rectify` (`status` pending | in_progress | done or 待整改 |
整改中 | 已整改, `measure`, `date`, `csrf_token`, optionally `version`; the roles that
decide), `POST /cases/{case_id}/notice` (`format` html | docx, `csrf_token`; officers) and
`GET /cases/{case_id}/notices/{name}` (the notice written, to view and print, or with
`?download=1` to save).

Every page is rendered on the server (no script at all: the CSP forbids scripts), with the
report templates and the gettext catalogs, in the user's language.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from emraudit.cases import DISPOSITIONS, CaseConflict, CaseNotFound, resolve_case
from emraudit.config import Config
from emraudit.errors import UserError
from emraudit.lake import Lake
from emraudit.reports import data
from emraudit.reports.i18n import LANGS, Lang, make_env
from emraudit.reports.masking import Masker
from emraudit.reports.page import Fmt, _static
from emraudit.reports.render import Ref
from emraudit.store import Store
from emraudit.web import accounts, casepage, downloads, queue, search, trail
from emraudit.web.roles import ROLE_LABELS, ROLES, may
from emraudit.web.security import COOKIE, LOGIN_COOKIE, ClientLimiter, Guard, Session, signing_key

CSP_META = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; "
            "form-action 'self'; base-uri 'none'")
CSP = CSP_META + "; frame-ancestors 'none'"     # frame-ancestors counts in the header only
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store", "Cross-Origin-Opener-Policy": "same-origin"}


class Anonymous(Exception):
    """No live session: the answer is a redirect to the login form."""


class Forbidden(Exception):
    """A bad or missing CSRF token, or a role that may not do this."""


class _SecurityHeaders:
    """Pure ASGI middleware: the security headers on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()
                         if k.lower().encode() not in have]
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class _Snapshots:
    key: frozenset
    users: object
    patients: object


class ReviewApp:
    """The state behind the routes: configuration, store, lake, signing key, caches."""

    def __init__(self, config: Config, *, store: Store | None = None,
                 secure_cookies: bool = False):
        self.config = config
        self.store = store or Store(config.store_url)
        self.lake = Lake(config.lake_dir, config.tz)
        self.guard = Guard(self.store, signing_key(self.store))
        self.limiter = ClientLimiter()
        self.secure = secure_cookies
        self._envs: dict[str, jinja2.Environment] = {}
        self._snap: _Snapshots | None = None
        self.css = _static("report.css") + "\n" + _web_css()

    # helpers ----------------------------------------------------------------------------------
    def env(self, lang: Lang) -> jinja2.Environment:
        if lang.code not in self._envs:
            env = make_env(lang)
            env.loader = jinja2.ChoiceLoader([
                jinja2.PrefixLoader({"web": jinja2.PackageLoader("emraudit.web", "templates")}),
                env.loader])
            env.globals["may"] = may
            env.globals["role_labels"] = ROLE_LABELS
            self._envs[lang.code] = env
        return self._envs[lang.code]

    def snapshots(self) -> _Snapshots:
        """The staff and patient masters of the committed runs (read again after ingest)."""
        committed = frozenset(self.store.committed_runs())
        if self._snap is None or self._snap.key != committed:
            self._snap = _Snapshots(committed, data.snapshot(self.lake, set(committed), "users"),
                                    data.snapshot(self.lake, set(committed), "patients"))
        return self._snap

    def lang_of(self, session: Session | None) -> Lang:
        code = (session.user.get("lang") if session else None) or self.config.reports.lang
        return Lang(code if code in LANGS else self.config.reports.lang)

    def masker(self, unmask: bool = False) -> Masker:
        return Masker(enabled=self.config.reports.mask_patients and not unmask)

    def session(self, request: Request) -> Session | None:
        if not hasattr(request.state, "session"):
            request.state.session = self.guard.session(request.cookies.get(COOKIE))
        return request.state.session

    def need(self, request: Request, permission: str | None) -> Session:
        s = self.session(request)
        if s is None:
            raise Anonymous()
        if permission and not may(s.role, permission):
            raise Forbidden(f"the role {s.role} may not do this")
        return s

    async def posted(self, request: Request, permission: str | None):
        """(session, form) of a POST: logged in, valid CSRF token, role allowed."""
        s = self.session(request)
        if s is None:
            raise Anonymous()
        form = await request.form()
        if not self.guard.csrf_ok(s, form.get("csrf_token")):
            raise Forbidden("missing or invalid CSRF token: reload the page and try again")
        if permission and not may(s.role, permission):
            raise Forbidden(f"the role {s.role} may not do this")
        return s, form

    def audit(self, request: Request, session: Session | None, action: str, *,
              target: str | None = None, actor: str | None = None, **detail) -> None:
        trail.record(self.store, actor or (session.username if session else "-"), action,
                     target=target, detail=detail or None,
                     role=session.role if session else None, client=_client(request))

    def page(self, request: Request, template: str, *, status: int = 200,
             masked: bool | None = None, lang: Lang | None = None, **ctx) -> HTMLResponse:
        s = self.session(request)
        lang = lang or self.lang_of(s)
        html = self.env(lang).get_template(template).render(
            site=self.config.site.name, css=self.css, csp=CSP_META, scan={}, window=("", ""),
            generated=Fmt(self.config.tz).now(),
            masked=self.config.reports.mask_patients if masked is None else masked,
            me=s.user if s else None, csrf=self.guard.csrf(s) if s else "",
            path=request.url.path, **ctx)
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.page(request, "web/error.html", status=status, message=message)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _web_css() -> str:
    from importlib import resources
    return (resources.files("emraudit.web") / "templates" / "web.css").read_text("utf-8")


def _local_path(value: str | None, default: str) -> str:
    """A redirect target inside the app only (never another site)."""
    v = (value or "").strip()
    if v.startswith("/") and not v.startswith("//") and "\\" not in v and "\n" not in v:
        return v
    return default


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _version(form) -> int | None:
    """The case version a form was read at (optimistic concurrency), None when not sent."""
    if not str(form.get("version", "")).strip():
        return None
    try:
        return int(str(form.get("version")))
    except ValueError:
        raise UserError("version: expected a number") from None


# -- routes ------------------------------------------------------------------------------------
def build_routes(app: ReviewApp) -> list[Route]:
    from emraudit.web.roles import home

    async def root(request: Request):
        s = app.need(request, None)
        return _redirect(home(s.role))

    async def login_form(request: Request, *, error: str = "", status: int = 200,
                         username: str = ""):
        cookie, token = app.guard.login_form()
        lang_code = request.query_params.get("lang", "")
        lang = Lang(lang_code) if lang_code in LANGS else app.lang_of(None)
        resp = app.page(request, "web/login.html", status=status, lang=lang, token=token,
                        error=error, username=username,
                        next=_local_path(request.query_params.get("next"), ""))
        resp.set_cookie(LOGIN_COOKIE, cookie, max_age=3600, httponly=True, samesite="strict",
                        secure=app.secure, path="/login")
        return resp

    async def login_get(request: Request):
        return await login_form(request)

    async def login_post(request: Request):
        form = await request.form()
        if not app.guard.login_csrf_ok(request.cookies.get(LOGIN_COOKIE),
                                       form.get("csrf_token")):
            raise Forbidden("the login form expired or its token is invalid: reload it")
        name = str(form.get("username", "")).strip()[:100]
        client = _client(request)
        lang = app.lang_of(None)
        now = time.monotonic()
        if app.limiter.blocked(client, now):
            app.audit(request, None, "login_failed", actor=name or "-", outcome="client_limit")
            return await login_form(request, status=429, username=name, error=lang.gettext(
                "Too many failed logins from this address: wait a few minutes."))
        res = accounts.authenticate(app.store, name, str(form.get("password", "")))
        if res.outcome != "ok":
            if res.outcome != "rate_limited":
                app.limiter.failed(client, now)
            app.audit(request, None, "login_failed", actor=name or "-", outcome=res.outcome)
            message, status = {
                "bad": (lang.gettext("Wrong account name or password."), 401),
                "locked": (lang.gettext("This account is locked after too many failed logins: "
                                        "ask an administrator to set a new password."), 403),
                "rate_limited": (lang.gettext("Too many failed logins: wait %(n)s seconds "
                                              "before trying again.", n=res.wait), 429),
            }[res.outcome]
            return await login_form(request, status=status, error=message, username=name)
        cookie = app.guard.open_session(res.user["username"])
        session = app.guard.session(cookie)
        app.audit(request, session, "login")
        target = _local_path(form.get("next"), home(res.user["role"]))
        resp = _redirect(target)
        resp.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", secure=app.secure,
                        path="/")
        resp.delete_cookie(LOGIN_COOKIE, path="/login")
        return resp

    async def logout(request: Request):
        s, _ = await app.posted(request, None)
        app.guard.close_session(s)
        app.audit(request, s, "logout")
        resp = _redirect("/login")
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def set_language(request: Request):
        s, form = await app.posted(request, None)
        code = str(form.get("lang", ""))
        if code not in LANGS:
            raise UserError(f"unknown language {code!r} (expected zh or en)")
        accounts.set_lang(app.store, s.username, code)
        return _redirect(_local_path(form.get("next"), "/"))

    # the queue and the cases -------------------------------------------------------------
    async def cases_list(request: Request):
        s = app.need(request, "view_cases")
        lang = app.lang_of(s)
        filters = queue.Filters.parse(request.query_params)
        snap = app.snapshots()
        masker = app.masker()
        ref = Ref(snap.users, snap.patients, lang, masker)
        model = queue.queue_model(app.store, filters, ref, masker, Fmt(app.config.tz), lang,
                                  snap.users, snap.patients)
        return app.page(request, "web/queue.html", q=model,
                        assignees=accounts.usernames(app.store, "decide"),
                        unassigned=queue.UNASSIGNED)

    async def next_case(request: Request):
        s = app.need(request, "view_cases")
        cid = queue.next_case(app.store, s.username, request.query_params.get("after"))
        return _redirect(f"/cases/{cid}" if cid else "/cases")

    def render_case(request: Request, s: Session, case_ref: str, *, unmask: bool = False,
                    status: int = 200, notice: str = "") -> Response:
        row = casepage.read_case(app.store, case_ref)
        if row["case_id"] != case_ref:
            return _redirect(f"/cases/{row['case_id']}")
        lang = app.lang_of(s)
        masker = app.masker(unmask)
        view = casepage.case_model(app.config, app.store, app.lake, row, lang, masker)
        app.audit(request, s, "unmask" if unmask and not masker.enabled else "case_view",
                  target=row["case_id"])
        return app.page(request, "web/case.html", status=status, c=view, masked=masker.enabled,
                        notice=notice, done=request.query_params.get("done", ""),
                        assignees=accounts.usernames(app.store, "decide"),
                        can_unmask=masker.enabled and may(s.role, "unmask"))

    async def case_get(request: Request):
        s = app.need(request, "view_cases")
        return render_case(request, s, request.path_params["case_id"])

    async def case_unmask(request: Request):
        s, _ = await app.posted(request, "unmask")
        return render_case(request, s, request.path_params["case_id"], unmask=True)

    async def case_disposition(request: Request):
        s, form = await app.posted(request, "decide")
        cid = request.path_params["case_id"]
        disposition = str(form.get("disposition", ""))
        note = str(form.get("note", "")).strip()
        if disposition not in DISPOSITIONS:
            raise UserError(f"disposition: expected one of {', '.join(DISPOSITIONS)}, "
                            f"got {disposition!r}")
        if not note:
            raise UserError("a note is required: say what the review found")
        version = _version(form)
        allow = None
        if form.get("allowlist"):
            if not may(s.role, "allowlist"):
                raise Forbidden(f"the role {s.role} may not create allowlist entries")
            if disposition != "justified":
                raise UserError("an allowlist entry goes with the disposition 'justified' only")
            row = casepage.read_case(app.store, cid)
            from emraudit.allow import parse_until
            from emraudit.store import now_utc
            until = str(form.get("allow_until", "")).strip()
            if parse_until(until, app.config.tz) < now_utc():
                raise UserError(f"the allowlist entry would expire at once ({until}): give a "
                                "later day")
            allow = dict(casepage.resolve_scope(row, str(form.get("allow_scope", ""))),
                         until=until)
        row = resolve_case(app.store, cid, disposition, note, s.username,
                           expected_version=version)
        app.audit(request, s, "disposition", target=row["case_id"], disposition=disposition,
                  version=int(row["version"]))
        if allow is not None:
            from emraudit.allow import add_entry
            entry = add_entry(app.store, user=str(row["user_id"]), reason=note, by=s.username,
                              tz=app.config.tz, **allow)
            app.audit(request, s, "allowlist", target=row["case_id"], entry=entry,
                      until=allow["until"], scope="patient" if "patient" in allow else
                      allow.get("detector"))
        return _redirect(f"/cases/{row['case_id']}?done={quote(disposition)}")

    async def case_assign(request: Request):
        s, form = await app.posted(request, "assign")
        row = casepage.read_case(app.store, request.path_params["case_id"])
        who = str(form.get("assignee", "")).strip()
        if who and who not in accounts.usernames(app.store, "decide"):
            raise UserError(f"'{who}' is not an active account that decides cases")
        before = casepage.assign(app.store, row["case_id"], who or None, s.username)
        app.audit(request, s, "assign", target=row["case_id"], assignee=who or None,
                  before=before)
        return _redirect(f"/cases/{row['case_id']}")

    async def case_comment(request: Request):
        s, form = await app.posted(request, "comment")
        row = casepage.read_case(app.store, request.path_params["case_id"])
        casepage.add_comment(app.store, row["case_id"], s.username, str(form.get("text", "")))
        app.audit(request, s, "comment", target=row["case_id"])
        return _redirect(f"/cases/{row['case_id']}#comments")

    async def case_rectify(request: Request):
        from emraudit.rectification import rectify_case
        s, form = await app.posted(request, "decide")
        row = casepage.read_case(app.store, request.path_params["case_id"])
        ask = casepage.rectify_request(form, row, app.lang_of(s), app.config.tz)
        row = rectify_case(app.store, row["case_id"], ask["status"], by=s.username,
                           measure=ask["measure"], day=ask["day"], tz=app.config.tz,
                           expected_version=_version(form))
        app.audit(request, s, "rectify", target=row["case_id"], status=ask["status"],
                  date=ask["day"].isoformat(), version=int(row["version"]))
        return _redirect(f"/cases/{row['case_id']}?done=rectified#rectification")

    async def case_notice(request: Request):
        from emraudit.reports.notice import write_notice
        s, form = await app.posted(request, "notice")
        lang = app.lang_of(s)
        row = casepage.read_case(app.store, request.path_params["case_id"])
        casepage.refuse_unless_problem(row, lang, "notice")
        kind = str(form.get("format", "html"))
        if kind not in casepage.NOTICE_FORMATS:
            raise UserError(lang.gettext("Choose the notice's format: %(choices)s.",
                                         choices=", ".join(casepage.NOTICE_FORMATS)))
        path = write_notice(app.config, app.store, app.lake, row["case_id"], by=s.username,
                            lang=lang, suffix=casepage.NOTICE_FORMATS[kind])
        app.audit(request, s, "notice", target=row["case_id"], file=path.name)
        return _redirect(f"/cases/{row['case_id']}?done=notice#notices")

    async def notice_get(request: Request):
        s = app.need(request, "notice")
        cid, name = request.path_params["case_id"], request.path_params["name"]
        path = casepage.notice_file(app.config, cid, name)
        if path is None:
            return app.error(request, 404, app.lang_of(s).gettext("No such notice."))
        app.audit(request, s, "export", target=cid, file=name)
        docx = path.suffix == ".docx"
        how = "attachment" if docx or request.query_params.get("download") else "inline"
        return Response(path.read_bytes(), media_type=downloads.MEDIA[path.suffix[1:]],
                        headers={"Content-Disposition": f'{how}; filename="{name}"'})

    # search ----------------------------------------------------------------------------------
    async def search_page(request: Request):
        app.need(request, "search")
        return app.page(request, "web/search.html")

    async def search_user(request: Request):
        s = app.need(request, "search")
        p = request.query_params
        lang = app.lang_of(s)
        snap = app.snapshots()
        masker = app.masker()
        model = search.user_search(app.config, app.store, app.lake, p.get("user_id", ""),
                                   p.get("from", ""), p.get("to", ""), lang, masker,
                                   Ref(snap.users, snap.patients, lang, masker))
        app.audit(request, s, "search_user", target=model["user"]["id"],
                  period=f"{model['from']}..{model['to']}")
        return app.page(request, "web/user.html", u=model)

    async def search_patient(request: Request):
        s, form = await app.posted(request, "search")
        unmask = bool(form.get("unmask"))
        if unmask and not may(s.role, "unmask"):
            raise Forbidden(f"the role {s.role} may not unmask patients")
        lang = app.lang_of(s)
        pid = str(form.get("patient_id", "")).strip()
        model = search.patient_search(app.config, app.store, app.lake, pid,
                                      str(form.get("from", "")), str(form.get("to", "")), lang,
                                      unmask, app.snapshots().patients)
        app.audit(request, s, "search_patient", target=pid,
                  period=f"{model['from']}..{model['to']}")
        if unmask and not model["masked"]:
            app.audit(request, s, "unmask", target=pid)
        return app.page(request, "web/patient.html", r=model, masked=model["masked"],
                        pid=pid, can_unmask=model["masked"] and may(s.role, "unmask"))

    # downloads -------------------------------------------------------------------------------
    async def downloads_page(request: Request):
        app.need(request, "download")
        return app.page(request, "web/downloads.html")

    async def download(request: Request):
        s = app.need(request, "download")
        what = request.path_params["what"]
        p = request.query_params
        lang = app.lang_of(s)
        scope = p.get("scope", "open")
        start, end = p.get("from", ""), p.get("to", "")
        if what in ("ledger.csv", "ledger.xlsx"):
            if scope not in ("open", "period"):
                raise UserError(f"scope: expected open or period, got {scope!r}")
            ids = downloads.ledger_cases(app.store, scope, app.config.tz, start, end)
            fmt_name = what.split(".")[1]
            title = f"{app.config.site.name} " + (lang.gettext("open cases") if scope == "open"
                                                  else f"{start}–{end}")
            body = downloads.ledger_file(app.config, app.store, app.lake, ids, lang, fmt_name,
                                         title)
            name = f"ledger-{'open' if scope == 'open' else f'{start}-{end}'}.{fmt_name}"
            detail = {"file": what, "scope": scope, "cases": len(ids)}
        elif what in ("summary.html", "summary.xlsx"):
            fmt_name = what.split(".")[1]
            body = downloads.summary_file(app.config, app.store, app.lake, start, end, fmt_name)
            name = f"summary-{start}-{end}.{fmt_name}"
            detail = {"file": what}
        else:
            return app.error(request, 404, lang.gettext("No such download."))
        if scope == "period" or what.startswith("summary"):
            detail["period"] = f"{start}..{end}"
        app.audit(request, s, "export", target=what, **detail)
        return Response(body, media_type=downloads.MEDIA[fmt_name], headers={
            "Content-Disposition": f'attachment; filename="{name}"'})

    # the audit trail -------------------------------------------------------------------------
    async def trail_page(request: Request, verified=None):
        s = app.need(request, "read_trail")
        p = request.query_params
        before = int(p["before"]) if p.get("before", "").isdigit() else None
        rows = trail.read(app.store, actor=p.get("actor") or None,
                          action=p.get("action") or None, before=before, limit=100)
        masker = app.masker()
        fmt = Fmt(app.config.tz)
        out = [{"seq": int(r["seq"]), "at": fmt.ts(r["at"]), "actor": r["actor"],
                "role": r["role"] or "", "action": r["action"], "client": r["client"] or "",
                "target": masker.pid(r["target"]) if r["action"] in
                ("search_patient",) or (r["action"] == "unmask" and not str(
                    r["target"] or "").startswith("C")) else (r["target"] or ""),
                "detail": r["detail"] or ""} for r in rows.to_dict("records")]
        if verified is None:
            app.audit(request, s, "trail_view")
        return app.page(request, "web/trail.html", rows=out, actions=trail.ACTIONS,
                        actor=p.get("actor", ""), action=p.get("action", ""),
                        older=out[-1]["seq"] if len(out) == 100 else None, verified=verified)

    async def trail_verify(request: Request):
        s, _ = await app.posted(request, "read_trail")
        res = trail.verify(app.store)
        app.audit(request, s, "trail_view", verified=res.ok)
        return await trail_page(request, verified=res)

    # accounts --------------------------------------------------------------------------------
    async def users_page(request: Request, *, error: str = "", status: int = 200):
        app.need(request, "manage_users")
        df = accounts.list_users(app.store)
        fmt = Fmt(app.config.tz)
        users = [{"name": r["username"], "role": r["role"], "active": bool(r["active"]),
                  "locked": bool(r["locked"]), "failed": int(r["failed"] or 0),
                  "last_login": fmt.minute(r["last_login"])} for r in df.to_dict("records")]
        return app.page(request, "web/users.html", users=users, roles=ROLES, error=error,
                        status=status)

    async def users_post(request: Request):
        s, form = await app.posted(request, "manage_users")
        op = str(form.get("op", ""))
        name = str(form.get("username", "")).strip()
        try:
            if op == "add":
                accounts.add_user(app.store, name, str(form.get("role", "")),
                                  str(form.get("password", "")))
                app.audit(request, s, "user_add", target=name, role=str(form.get("role")))
            elif op == "passwd":
                accounts.set_password(app.store, name, str(form.get("password", "")))
                app.audit(request, s, "user_passwd", target=name)
            elif op in ("disable", "enable"):
                if name == s.username:
                    raise UserError("you cannot disable your own account here")
                accounts.set_active(app.store, name, op == "enable")
                app.audit(request, s, f"user_{op}", target=name)
            elif op == "role":
                accounts.set_role(app.store, name, str(form.get("role", "")))
                app.audit(request, s, "user_role", target=name, role=str(form.get("role")))
            else:
                raise UserError(f"unknown operation {op!r}")
        except UserError as err:
            return await users_page(request, error=str(err), status=400)
        return _redirect("/admin/users")

    return [
        Route("/", root),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang", set_language, methods=["POST"]),
        Route("/cases", cases_list),
        Route("/cases/next", next_case),
        Route("/cases/{case_id}", case_get),
        Route("/cases/{case_id}/unmask", case_unmask, methods=["POST"]),
        Route("/cases/{case_id}/disposition", case_disposition, methods=["POST"]),
        Route("/cases/{case_id}/assign", case_assign, methods=["POST"]),
        Route("/cases/{case_id}/comment", case_comment, methods=["POST"]),
        Route("/cases/{case_id}/rectify", case_rectify, methods=["POST"]),
        Route("/cases/{case_id}/notice", case_notice, methods=["POST"]),
        Route("/cases/{case_id}/notices/{name}", notice_get),
        Route("/search", search_page),
        Route("/search/user", search_user),
        Route("/search/patient", search_patient, methods=["POST"]),
        Route("/downloads", downloads_page),
        Route("/downloads/{what}", download),
        Route("/audit", trail_page),
        Route("/audit/verify", trail_verify, methods=["POST"]),
        Route("/admin/users", users_page, methods=["GET"]),
        Route("/admin/users", users_post, methods=["POST"]),
    ]


def create_app(config: Config, *, store: Store | None = None,
               secure_cookies: bool = False) -> Starlette:
    """The ASGI application for one configuration (its store and lake)."""
    review = ReviewApp(config, store=store, secure_cookies=secure_cookies)

    async def anonymous(request: Request, exc: Exception):
        if request.method == "GET" and request.url.path not in ("/", "/login"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return _redirect(f"/login?next={quote(target, safe='')}")
        return _redirect("/login")

    def answer(status: int):
        async def handler(request: Request, exc: Exception):
            return review.error(request, status, str(exc))
        return handler

    app = Starlette(routes=build_routes(review), exception_handlers={
        Anonymous: anonymous, Forbidden: answer(403), CaseNotFound: answer(404),
        CaseConflict: answer(409), UserError: answer(400)})
    app.state.review = review
    app.add_middleware(_SecurityHeaders)
    return app
