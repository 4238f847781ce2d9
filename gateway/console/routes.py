"""aiohttp routes of the service-window console, all under ``/console/`` (outside ``/v1``:
partner bearer auth does not apply; the console has its own staff sessions).

* Pages (GET, HTML): ``/console/`` (check), ``/console/login``, ``/console/status``,
  ``/console/audit``, ``/console/receipt/{case}``; static assets under ``/console/static/``.
* State-changing requests are POST and need the session's CSRF token: a hidden form field
  (sign-out) or the ``X-CSRF-Token`` header (the JSON calls of ``console.js``). The sign-in
  form carries a token bound to a short-lived nonce cookie.
* Verification and the item check run through the API's own functions
  (``gateway.app.verify_now``, ``gateway.checking.check_item``) with the clerk's id as the
  operator recorded in the console's counters and passed to the audit hook when present.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode, urlsplit

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .. import errors
from ..app import LIVE, REQUEST_ID, SERVICES, decode_presented, read_json, verify_now
from ..bodies import within_body_deadline
from ..checking import Presented, parse_applicant
from ..core import Verdict
from ..errors import RequestRejected
from ..trust import material_expiry
from .accounts import MAX_PASSWORD_LENGTH, StaffDirectory, credential_digest, make_hasher
from .cases import MAX_LICENCES_PER_CASE, Case, case_view
from .i18n import LANGS, norm_lang, t
from .metrics import VerificationCounters
from .pages import audit_page, check_page, login_page, message_page, receipt_page, status_page
from .receipt import case_receipt, qr_svg, signer_for
from .sessions import LoginCsrf, LoginThrottle, Session, SessionPolicy, SessionStore, ThrottlePolicy, csrf_ok

log = logging.getLogger("gateway.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "console_session"
LOGIN_COOKIE = "console_login"
LANG_COOKIE = "console_lang"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/console"
MAX_SEARCH_RESULTS = 10
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send "Origin: null"
    "Cache-Control": "no-store",
}
AuditHook = Callable[..., Awaitable[None] | None]


@dataclass(slots=True)
class ConsoleState:
    directory: StaffDirectory
    sessions: SessionStore
    throttle: LoginThrottle
    login_csrf: LoginCsrf
    counters: VerificationCounters
    #: optional ``hook(event: str, *, operator: str, window: str, item: str, result: VerificationResult,
    #: request_id: str, applicant: Applicant)`` called for every console verification (the audit trail
    #: plugs in here; the case's applicant, so that a search by person finds the checks they applied for)
    audit: AuditHook | None = None


CONSOLE = web.AppKey("console", ConsoleState)
SESSION = web.RequestKey("console_session", Session)
#: set when this request's session was ended because its staff account was removed or changed
ACCOUNT_ENDED = web.RequestKey("console_account_ended", bool)
#: the reason SessionStore.drop records for that
ACCOUNT_CHANGED = "account-changed"


# --- helpers -------------------------------------------------------------------------
def _now(request: web.Request):
    return request.app[SERVICES].clock()


def lang_of(request: web.Request) -> str:
    return norm_lang(request.query.get("lang") or request.cookies.get(LANG_COOKIE))


def _html(request: web.Request, text: str, status: int = 200) -> web.Response:
    resp = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    lang = request.query.get("lang")
    if lang in LANGS:  # the language switch: remember the choice (a preference, not a security state)
        resp.set_cookie(LANG_COOKIE, lang, path=COOKIE_PATH, samesite="Strict", secure=request.secure,
                        max_age=365 * 86400)
    return resp


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _session(request: web.Request) -> Session | None:
    """The request's live session. One whose staff account was removed from the store, or whose
    role, window or password changed since sign-in (or whose store became unusable), is dropped
    here, at its next request: the store is re-read when its file changed."""
    state, cookie = request.app[CONSOLE], request.cookies.get(SESSION_COOKIE)
    session = state.sessions.get(cookie, _now(request))
    if session is None:
        if state.sessions.ended_reason(cookie) == ACCOUNT_CHANGED:  # ended by an earlier (JSON) request
            request[ACCOUNT_ENDED] = True
        return None
    if state.directory.unchanged(session.username, session.role, session.window, session.credential):
        return session
    state.sessions.drop(session.id, reason=ACCOUNT_CHANGED)
    request[ACCOUNT_ENDED] = True
    log.warning("console session ended: the account of user=%s window=%s was removed or changed", session.username,
                session.window)
    return None


def _same_origin(request: web.Request) -> bool:
    """Defence in depth next to the CSRF token: a browser's Origin, when sent, must be ours."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


def page(permission: str) -> Callable[[Callable[..., Awaitable[web.StreamResponse]]],
                                      Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A page for signed-in staff holding ``permission``; others go to the sign-in page."""

    def wrap(handler):
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            session = _session(request)
            if session is None:
                query = {"expired": "account" if request.get(ACCOUNT_ENDED) else "1"} \
                    if request.cookies.get(SESSION_COOKIE) else {}
                if request.query.get("lang") in LANGS:  # keep the language chosen in the link
                    query["lang"] = request.query["lang"]
                raise web.HTTPSeeOther("/console/login" + (f"?{urlencode(query)}" if query else ""))
            lang = lang_of(request)
            if permission not in _perms(session):
                return _html(request, message_page(lang, t(lang, "forbidden_page"), t(lang, "forbidden_page"), session),
                             403)
            request[SESSION] = session
            return await handler(request)
        return inner
    return wrap


def api(permission: str, *, state_changing: bool) -> Callable[..., Any]:
    """A JSON endpoint: a live session with ``permission``; a CSRF token when it changes state."""

    def wrap(handler):
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            session = _session(request)
            if session is None:
                raise RequestRejected(errors.UNAUTHENTICATED,
                                      "console session ended: the staff account was removed or changed; sign in again"
                                      if request.get(ACCOUNT_ENDED) else
                                      "console session missing or expired: sign in again")
            if state_changing and (not csrf_ok(session, request.headers.get(CSRF_HEADER))
                                   or not _same_origin(request)):
                raise RequestRejected(errors.PAGE_EXPIRED, "CSRF token missing or wrong")
            if permission not in _perms(session):
                raise RequestRejected(errors.FORBIDDEN, f"role {session.role} may not {permission}")
            request[SESSION] = session
            return await handler(request)
        return inner
    return wrap


def _perms(session: Session) -> frozenset[str]:
    from .accounts import PERMISSIONS

    return PERMISSIONS.get(session.role, frozenset())


async def _form(request: web.Request) -> Any:
    """The posted form; a body that cannot be read (bytes not in its charset, an unknown charset,
    a broken multipart body) is a 400 with a clear message, never an internal error."""
    try:
        return await within_body_deadline(request, request.post)
    except (ValueError, LookupError, HttpProcessingError):
        raise RequestRejected(errors.BAD_REQUEST, "表单内容无法读取（编码或格式错误），请刷新页面后重试 / "
                                                  "the form body could not be read") from None


_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{32}")


def _login_nonce(request: web.Request) -> tuple[str, str]:
    """(nonce, token) of the sign-in form: the browser's nonce cookie when it holds one, so each
    open sign-in tab keeps a valid token (a new nonce per page load broke every tab opened before)."""
    csrf = request.app[CONSOLE].login_csrf
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    return (nonce, csrf.token(nonce)) if _NONCE_RE.fullmatch(nonce) else csrf.issue()


def _login_form_response(request: web.Request, lang: str, message: str, status: int = 200,
                         username: str = "") -> web.Response:
    nonce, token = _login_nonce(request)
    resp = _html(request, login_page(lang, token, message, request.app[SERVICES].settings.demo, username), status)
    resp.set_cookie(LOGIN_COOKIE, nonce, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.secure,
                    max_age=1800)
    return resp


def _set_session_cookie(request: web.Request, resp: web.StreamResponse, value: str) -> None:
    resp.set_cookie(SESSION_COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.secure)


# --- sign-in / sign-out --------------------------------------------------------------
async def root_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/console/")


async def login_form(request: web.Request) -> web.StreamResponse:
    lang = lang_of(request)
    if _session(request) is not None:
        raise web.HTTPSeeOther("/console/")
    message = ""
    if request.query.get("expired") == "account":
        message = t(lang, "account_changed")
    elif request.query.get("expired"):
        message = t(lang, "session_expired")
    elif request.query.get("out"):
        message = t(lang, "logged_out")
    resp = _login_form_response(request, lang, message)
    if request.cookies.get(SESSION_COOKIE):
        resp.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return resp


async def login_submit(request: web.Request) -> web.StreamResponse:
    state, lang, now = request.app[CONSOLE], lang_of(request), _now(request)
    form = await _form(request)
    username = str(form.get("username", ""))[:64].strip().lower()
    password = str(form.get("password", ""))[:MAX_PASSWORD_LENGTH]
    if not state.login_csrf.ok(request.cookies.get(LOGIN_COOKIE), str(form.get("csrf_token", ""))) \
            or not _same_origin(request):
        if _same_origin(request) and "text/html" in request.headers.get("Accept", ""):
            # a browser's stale sign-in page (nonce cookie expired, gateway restarted): the form
            # again with a fresh token and a plain message, not a JSON problem document
            return _login_form_response(request, lang, t(lang, "login_form_expired"), 403, username)
        raise RequestRejected(errors.PAGE_EXPIRED, "sign-in form CSRF token missing or wrong: reload the page")
    client = request.remote or "-"

    def again(message: str, status: int) -> web.Response:
        return _login_form_response(request, lang, message, status, username)

    if not state.throttle.begin(username, client, now):  # locked, or as many guesses in flight as allowed
        log.warning("console sign-in refused (locked): user=%s client=%s", username, client)
        return again(t(lang, "login_locked"), 429)
    try:
        account = await asyncio.get_running_loop().run_in_executor(None, state.directory.authenticate, username,
                                                                   password)
        if account is None:
            state.throttle.failure(username, client, now)
    finally:
        state.throttle.end(username, client)
    if account is None:
        log.info("console sign-in failed: user=%s client=%s", username, client)
        locked = state.throttle.locked(username, client, now)
        return again(t(lang, "login_locked" if locked else "login_failed"), 429 if locked else 401)
    state.throttle.success(username)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        state.sessions.drop(old)
    session = state.sessions.create(account.username, account.role, account.window, now,
                                    credential=credential_digest(account.password_hash))
    log.info("console sign-in: user=%s role=%s window=%s", account.username, account.role, account.window)
    resp = web.HTTPSeeOther("/console/")
    _set_session_cookie(request, resp, session.id)
    resp.del_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    state = request.app[CONSOLE]
    session = _session(request)
    form = await _form(request)
    if session is not None:
        if not csrf_ok(session, str(form.get("csrf_token", ""))) or not _same_origin(request):
            if _same_origin(request) and "text/html" in request.headers.get("Accept", ""):
                # a tab left over from an earlier session: say so, with this session's sign-out button
                lang = lang_of(request)
                return _html(request, message_page(lang, t(lang, "logout"), t(lang, "logout_stale_page"), session),
                             403)
            raise RequestRejected(errors.PAGE_EXPIRED, "CSRF token missing or wrong")
        state.sessions.drop(session.id)
        log.info("console sign-out: user=%s", session.username)
    resp = web.HTTPSeeOther("/console/login?out=1")
    resp.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    raise resp


# --- pages ---------------------------------------------------------------------------
@page("check")
async def check_view(request: web.Request) -> web.StreamResponse:
    return _html(request, check_page(lang_of(request), request[SESSION]))


@page("status")
async def status_view(request: web.Request) -> web.StreamResponse:
    services, current, now = request.app[SERVICES], request.app[LIVE].current, _now(request)
    counters = request.app[CONSOLE].counters
    expiry = material_expiry(current.trust, now, services.settings.trust_expiry_warn_days) if current.trust else None

    def expiring(region: str | None) -> list[dict[str, Any]]:
        return [] if expiry is None else [{"kind": m.kind, "not_after": m.not_after, "days_left": m.days_left}
                                          for m in expiry.expiring if m.region == region]
    rows = []
    for code, info in services.regions.items():
        rt = current.trust.regions.get(code) if current.trust else None
        trust_state = "absent" if rt is None else rt.state_at(now)
        rs = current.status.get(code)
        w = counters.window(code, now)
        rows.append({"code": code, "name": info.name, "format": services.specs[code].family, "trust_state": trust_state,
                     "status_list": None if rs is None else {"fresh": rs.fresh(now), "version": rs.version,
                                                             "age_seconds": int(rs.age(now).total_seconds())},
                     "total": w.total, "error_rate": w.error_rate, "series": w.series, "expiring": expiring(code)})
    version = current.trust.version if current.trust else None
    return _html(request, status_page(lang_of(request), request[SESSION], version, rows, expiring(None)))


@page("audit")
async def audit_view(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    item = request.query.get("item", "")[:64]
    search = request.app.get(AUDIT_SEARCH)
    records: list[dict[str, Any]] = []
    if search is not None:
        records = await search(window=session.window, item=item or None, limit=100)
    return _html(request, audit_page(lang_of(request), session, search is not None, records, item))


@page("check")
async def receipt_view(request: web.Request) -> web.StreamResponse:
    services, session, lang = request.app[SERVICES], request[SESSION], lang_of(request)
    case = session.cases.get(request.match_info["case"])
    if case is None or not case.presented:  # a page the clerk reads, not a JSON problem document
        return _html(request, message_page(lang, t(lang, "receipt_title"), t(lang, "receipt_not_found"), session), 404)
    catalogue = services.catalogue
    view = case_view(case, catalogue, lang)
    jws, digest = case_receipt(signer_for(services.gateway_key), case, catalogue)
    qr = qr_svg(jws, t(lang, "receipt_qr"))
    return _html(request, receipt_page(lang, session, view, jws, qr, digest, services.gateway_key.kid))


# --- JSON calls of console.js --------------------------------------------------------
@api("check", state_changing=False)
async def items_search(request: web.Request) -> web.Response:
    catalogue, lang = request.app[SERVICES].catalogue, lang_of(request)
    _, items = catalogue.search(text=request.query.get("q", "")[:64], limit=MAX_SEARCH_RESULTS)
    return _json({"items": [{"code": i.code, "name": i.name_zh if lang == "zh" else i.name_en, "name_zh": i.name_zh,
                             "department": i.department} for i in items]})


@api("check", state_changing=True)
async def case_open(request: web.Request) -> web.Response:
    services, session, lang = request.app[SERVICES], request[SESSION], lang_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise RequestRejected(errors.BAD_REQUEST, "expected {item, applicant}")
    item = services.catalogue.item(str(body.get("item", ""))[:64])
    if item is None:
        raise RequestRejected(errors.NOT_FOUND, "no such item")
    applicant = parse_applicant(body.get("applicant"))
    case = Case(secrets.token_urlsafe(12), item, applicant, session.username, session.window, _now(request))
    request.app[CONSOLE].sessions.add_case(session, case.id, case)
    return _json(case_view(case, services.catalogue, lang))


def _case(request: web.Request) -> Case:
    case = request[SESSION].cases.get(request.match_info["case"])
    if case is None:
        raise RequestRejected(errors.NOT_FOUND, "no such case in this session")
    return case


@api("check", state_changing=False)
async def case_get(request: web.Request) -> web.Response:
    return _json(case_view(_case(request), request.app[SERVICES].catalogue, lang_of(request)))


@api("check", state_changing=True)
async def case_add_licence(request: web.Request) -> web.Response:
    case = _case(request)
    body = await read_json(request)
    async with case.adding:  # the number, the verification, the audit record and the card: one at a time
        return await _add_licence(request, case, body)


async def _add_licence(request: web.Request, case: Case, body: Any) -> web.Response:
    services, state, session = request.app[SERVICES], request.app[CONSOLE], request[SESSION]
    if len(case.presented) >= MAX_LICENCES_PER_CASE:
        raise RequestRejected(errors.BATCH_TOO_LARGE, f"at most {MAX_LICENCES_PER_CASE} licences per case")
    source = body.get("source") if isinstance(body, dict) else None
    index = len(case.presented)
    now = _now(request)
    try:
        data = decode_presented(body, services.settings)
    except RequestRejected:  # undecodable input is a (malformed) licence, as in the item check API
        presented = Presented.undecodable(index)
        result = None
    else:
        result = verify_now(request.app, data)
        presented = Presented.from_result(index, result)
    state.counters.record(presented.region[0] if presented.region else None, presented.verdict, now)
    if state.audit is not None:  # an undecodable upload too (a MALFORMED card): recorded as the API's batch does
        maybe = state.audit("console.verify", operator=session.username, window=session.window, item=case.item.code,
                            result=result, request_id=request.get(REQUEST_ID, ""), applicant=case.applicant)
        if asyncio.iscoroutine(maybe):
            await maybe
    case.add(presented, "upload" if source == "upload" else "scan", now)
    log.info("console check: user=%s window=%s item=%s licence#%d verdict=%s", session.username, session.window,
             case.item.code, index + 1, presented.verdict)
    return _json(case_view(case, services.catalogue, lang_of(request)))


@api("check", state_changing=True)
async def case_fetch(request: web.Request) -> web.Response:
    """Fetch the licences the case lacks from the issuing regions (gateway/console/fetch.py)."""
    case = _case(request)
    body = await read_json(request)
    async with case.adding:  # numbers, records and cards in order, as for a scan
        return await _fetch_licences(request, case, body)


async def _fetch_licences(request: web.Request, case: Case, body: Any) -> web.Response:
    from .fetch import fetch, plan

    services, state, session, lang = request.app[SERVICES], request.app[CONSOLE], request[SESSION], lang_of(request)
    fetch_plan = plan(request.app, case, body)
    if fetch_plan.query is None:  # all met, or what is missing is not fetched by the applicant's ID: nobody asked
        view = case_view(case, services.catalogue, lang)
        view["fetch"] = {"regions": [], "added": 0, "complete": True}
        return _json(view)
    answers, accepted, complete = await fetch(request.app, fetch_plan.query, request_id=request.get(REQUEST_ID, ""),
                                              window=session.window, operator=session.username)
    added: dict[str, int] = {}
    already: dict[str, int] = {}  # the same licence, judged the same, is already a card of the case
    over: dict[str, int] = {}  # not added: the case holds MAX_LICENCES_PER_CASE licences
    held = {k for p in case.presented if (k := _judged_as(p)) is not None}
    # a valid licence first: a region returning many unusable ones must not crowd the usable one out of the case
    for region, result in sorted(accepted, key=lambda a: a[1].verdict is not Verdict.VALID):
        now = _now(request)
        presented = Presented.from_result(len(case.presented), result)
        key = _judged_as(presented)
        if key is not None and key in held:  # fetched again (an expired one, asked again): one card is enough
            already[region] = already.get(region, 0) + 1
            continue
        if len(case.presented) >= MAX_LICENCES_PER_CASE:
            over[region] = over.get(region, 0) + 1
            continue
        state.counters.record(presented.region[0] if presented.region else None, presented.verdict, now)
        if state.audit is not None:  # recorded before the card exists, as a scanned licence; says it was fetched
            maybe = state.audit("console.fetch", operator=session.username, window=session.window,
                                item=case.item.code, result=result, request_id=request.get(REQUEST_ID, ""),
                                applicant=case.applicant)
            if asyncio.iscoroutine(maybe):
                await maybe
        case.add(presented, "fetch", now)
        if key is not None:
            held.add(key)
        added[region] = added.get(region, 0) + 1
    log.info("console fetch: user=%s window=%s item=%s regions=%s added=%d already=%d over_limit=%d", session.username,
             session.window, case.item.code, ",".join(f"{a['region']}:{a['status']}" for a in answers),
             sum(added.values()), sum(already.values()), sum(over.values()))
    view = case_view(case, services.catalogue, lang)
    view["fetch"] = {
        "regions": [{"region": a["region"], "name": a["name"], "status": a["status"], "added": added.get(a["region"], 0),
                     "rejected": len(a["rejected"]), "already": already.get(a["region"], 0),
                     "over_limit": over.get(a["region"], 0)} for a in answers],
        "added": sum(added.values()), "complete": complete}
    return _json(view)


def _judged_as(p: Presented) -> tuple[str, str, tuple[str, ...]] | None:
    """What makes two cards the same: the licence (its identifier) judged alike (verdict, reasons)."""
    if p.identifier is None:
        return None
    return p.identifier, p.verdict, tuple(r.code for r in p.reasons)


# --- wiring --------------------------------------------------------------------------
#: optional ``async search(window=..., item=..., limit=...) -> list[dict]`` (the audit trail's search)
AUDIT_SEARCH = web.AppKey("console_audit_search", Callable[..., Awaitable[list[dict[str, Any]]]])


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/console"):
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if request.path.startswith("/console/static/"):
            response.headers["Cache-Control"] = "no-cache"


def staff_file(settings: Any) -> Path:
    return Path(settings.console_staff_file or Path(settings.var_dir) / "console" / "staff.json")


def build_state(app: web.Application) -> ConsoleState:
    settings = app[SERVICES].settings
    return ConsoleState(
        directory=StaffDirectory.build(staff_file(settings), settings.demo, make_hasher()),
        sessions=SessionStore(SessionPolicy(idle_timeout=dt.timedelta(seconds=settings.console_idle_timeout_seconds))),
        throttle=LoginThrottle(ThrottlePolicy()),
        login_csrf=LoginCsrf(),
        counters=VerificationCounters(),
    )


def setup(app: web.Application) -> None:
    app[CONSOLE] = build_state(app)
    app.on_response_prepare.append(_security_headers)
    r = app.router
    r.add_get("/console", root_redirect)
    r.add_get("/console/", check_view)
    r.add_get("/console/login", login_form)
    r.add_post("/console/login", login_submit)
    r.add_post("/console/logout", logout)
    r.add_get("/console/status", status_view)
    r.add_get("/console/audit", audit_view)
    r.add_get("/console/receipt/{case}", receipt_view)
    r.add_get("/console/api/items", items_search)
    r.add_post("/console/api/cases", case_open)
    r.add_get("/console/api/cases/{case}", case_get)
    r.add_post("/console/api/cases/{case}/licences", case_add_licence)
    r.add_post("/console/api/cases/{case}/fetch", case_fetch)
    r.add_static("/console/static", STATIC_DIR, follow_symlinks=False, append_version=False)
