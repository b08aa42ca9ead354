"""The console's ASGI application (Starlette): every page at ``/PATH`` has a
JSON twin at ``/api/v1/PATH`` made from the same view function, so both pass
the same permission checks (in the library) and write the same access log.

Who is asking: a session cookie (``__Host-alpr_session``: Secure, HttpOnly,
SameSite=Strict) from the sign-in form, or ``Authorization: Bearer <personal
token>`` for scripts and dispatch systems. A state-changing request with a
session cookie must carry the session's CSRF token (form field ``csrf`` or
header ``X-CSRF-Token``) and, when the browser sends one, a same-origin
``Origin``; a Bearer request carries no ambient credential and needs neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import CentralConfig
from ..errors import AuthenticationError, CentralError, PermissionDenied, StoreError
from ..governance.audit import AccessLog, utcnow
from ..governance.users import Permission as P
from ..governance.users import Role, User, UserDirectory
from ..hotlist.hits import HitBook
from ..hotlist.matcher import connect
from . import alertsview, fleetview, hitsview, operator, oversight
from .backend import Backend, plain

logger = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-alpr_session"
SIGN_IN_COOKIE = "__Host-alpr_signin"
# Live hits and hotlists (issues 21/22) are pages over central/hotlist/; the navigation entry stays hidden
# unless the library exists and the page is registered, so it never links to nothing.
HITS_AVAILABLE = importlib.util.find_spec("central.hotlist") is not None
MAX_UPLOAD = 256 * 1024 * 1024   # a hotlist CSV (1,000,000 rows are about 60 MB)


@dataclasses.dataclass(frozen=True)
class Page:
    path: str
    title: str
    template: str
    view: Callable
    summary: str
    params: tuple[str, ...] = ()
    action: Callable | None = None       # POST handler (same path), returns the page's data
    action_params: tuple[str, ...] = ()


PAGES = (
    Page("/search", "Search", "search.html", operator.search,
         "Search reads (exact, wildcard, tolerant). Purpose and case number are required before any result; "
         "every page is logged.", ("plate", "match", "range", "since", "until", "camera", "purpose", "case", "page")),
    Page("/reads/{read_id}", "Read", "read.html", operator.read_detail,
         "One read: crop, context image, alternates, confidence, camera, position. Logged (read-view). POST "
         "text (with purpose and case): the plate the image shows, confirming or correcting the read; kept as a "
         "labelled example for site adaptation. Logged (read-label).",
         ("purpose", "case"), action=operator.confirm_read, action_params=("text",)),
    Page("/hits", "Live hits", "hits.html", hitsview.hits,
         "Recent hits, newest first (status filter). New hits arrive live from /api/v1/hits/stream "
         "(server-sent events). Logged (hits-list).", ("status", "limit")),
    Page("/hits/{hit_id}", "Hit", "hit.html", hitsview.hit_detail,
         "One hit: crop, context image, the read, the list entry, match kind and the verification so far "
         "(images=1: the crop and context image in base64 in the JSON). Logged (hit-view).", ("images",)),
    Page("/hits/{hit_id}/visual", "Hit", "hit.html", hitsview.hit_detail,
         "Step 1, the visual check: result=yes (the image shows the listed plate) or result=misread with "
         "true_text (what the image really shows).", (), hitsview.check_visual, ("result", "true_text")),
    Page("/hits/{hit_id}/source", "Hit", "hit.html", hitsview.hit_detail,
         "Step 2 (after a yes visual check), the source check: result=yes (still wanted) or "
         "result=no-longer-wanted.", (), hitsview.check_source, ("result", "note")),
    Page("/hits/{hit_id}/disposition", "Hit", "hit.html", hitsview.hit_detail,
         "Step 3, close the hit: dispatched (only when both checks said yes), no-action, misread, stale-entry, "
         "duplicate.", (), hitsview.dispose, ("disposition", "note")),
    Page("/hotlists", "Hotlists", "hotlists.html", hitsview.hotlists,
         "Hotlists: category, current version, active entries. POST creates an empty list (manage-hotlist): "
         "name, category (a configured one), description.", (), hitsview.create_list,
         ("name", "category", "description")),
    Page("/hotlists/{name}", "Hotlist", "hotlist.html", hitsview.hotlist,
         "One hotlist: its versions and entries (current, all with show=all, or an earlier version); "
         "search by plate. Logged (hotlist-view).", ("plate", "version", "show")),
    Page("/hotlists/{name}/add", "Hotlist", "hotlist.html", hitsview.hotlist,
         "Add an entry (a new version; manage-hotlist).", (), hitsview.add_entry,
         ("plate", "state", "reason", "source_agency", "source_ref", "case_number", "expires")),
    Page("/hotlists/{name}/remove", "Hotlist", "hotlist.html", hitsview.hotlist,
         "Remove (entered in error) or expire (kind=expire) an entry, with a reason (a new version).", (),
         hitsview.remove_entry, ("entry_id", "kind", "reason")),
    Page("/hotlists/{name}/import", "Hotlist", "hotlist.html", hitsview.hotlist,
         "Import a CSV file (multipart field file; mode=delta|replace; skip_bad). Atomic: a file with bad lines "
         "is refused whole and every bad line is named (problems).", (), hitsview.import_csv,
         ("file", "mode", "skip_bad")),
    Page("/approvals", "Approvals", "approvals.html", oversight.approvals,
         "Pending legal holds and sharing requests (supervisor).", (),
         None),
    Page("/approvals/hold", "Approvals", "approvals.html", oversight.approvals,
         "Approve a pending legal hold (a supervisor other than the requester).", (),
         oversight.approve_hold, ("hold_id",)),
    Page("/approvals/share", "Approvals", "approvals.html", oversight.approvals,
         "Approve or deny a pending sharing request (not one's own).", (),
         oversight.decide_share, ("request_id", "decision", "note")),
    Page("/accounts", "Accounts", "accounts.html", oversight.accounts,
         "Account review: roles, last activity, inactive accounts, lockouts."),
    Page("/fleet", "Fleet", "fleet.html", fleetview.fleet,
         "Every device: status, online, last seen, last read, certificate expiry; a map of cameras."),
    Page("/alerts", "Alerts", "alerts.html", alertsview.alerts,
         "What needs attention: the open fleet alerts and the latest raised and cleared, of the devices "
         "the user may see (a business: its own)."),
    Page("/enrollment", "Enrollment", "enrollment.html", fleetview.enrollment,
         "Outstanding enrollment tokens; POST creates one (shown once).", (),
         fleetview.create_enrollment, ("owner", "device_id", "cameras", "location", "latitude", "longitude",
                                       "expires")),
    Page("/business", "My cameras", "business.html", fleetview.business,
         "A business's own cameras' health, its agreement's terms and how its cameras' data was shared.",
         ("business",)),
    Page("/business/withdraw", "Withdraw", "withdrawn.html", fleetview.business,
         "Withdraw the business from the program (confirm with the business id).", ("business",),
         fleetview.withdraw, ("confirm", "reason", "business")),
    Page("/audit/log", "Access log", "audit_log.html", oversight.audit_log,
         "The access log, newest first, filtered by user, purpose, case, action and time.",
         ("user", "purpose", "case", "action", "since", "until", "page")),
    Page("/audit/verify", "Verify", "audit_verify.html", oversight.audit_verify,
         "Verify the access log's hash chain, optionally against a published head.", ("expect_head",)),
    Page("/audit/devices", "Device logs", "device_logs.html", oversight.device_logs,
         "Each device's audit log: records, gaps and signature checks."),
    Page("/sharing", "Sharing", "sharing.html", oversight.sharing_record,
         "Agreements, sharing requests and the recipients data was exported to."),
    Page("/reports", "Reports", "report.html", oversight.report,
         "The transparency report of a period (2026-Q3, 2026-08, 2026).", ("period",)),
)

NAV = (
    ("Search", "/search", lambda u: u.can(P.SEARCH)),
    ("Live hits", "/hits", lambda u: HITS_AVAILABLE and any(p.path == "/hits" for p in PAGES)
     and u.can(P.VIEW_HITS)),
    ("Hotlists", "/hotlists", lambda u: u.can(P.VIEW_HOTLIST) or u.can(P.MANAGE_HOTLIST)),
    ("Approvals", "/approvals", lambda u: u.can(P.APPROVE_HOLD) or u.can(P.APPROVE_SHARE)),
    ("Fleet", "/fleet", lambda u: u.can(P.DEVICE_HEALTH_ALL)),
    ("Enrollment", "/enrollment", lambda u: u.can(P.ENROLL)),
    ("My cameras", "/business", lambda u: u.can(P.DEVICE_HEALTH_OWN)),
    ("Alerts", "/alerts", lambda u: u.can(P.DEVICE_HEALTH_ALL) or u.can(P.DEVICE_HEALTH_OWN)),
    ("Access log", "/audit/log", lambda u: u.can(P.READ_AUDIT)),
    ("Verify", "/audit/verify", lambda u: u.can(P.READ_AUDIT)),
    ("Device logs", "/audit/devices", lambda u: u.can(P.READ_AUDIT)),
    ("Sharing", "/sharing", lambda u: u.can(P.READ_REPORTS)),
    ("Reports", "/reports", lambda u: u.can(P.READ_REPORTS)),
    ("Accounts", "/accounts", lambda u: u.can(P.REVIEW_ACCOUNTS) or u.can(P.READ_AUDIT)),
)


class SignInThrottle:
    """Failed sign-ins per client address in the last minute (in memory)."""

    def __init__(self, per_minute: int, monotonic=time.monotonic) -> None:
        self.per_minute, self._mono, self._seen = per_minute, monotonic, {}
        self._lock = threading.Lock()

    def blocked(self, remote: str) -> bool:
        with self._lock:
            q = self._seen.get(remote)
            now = self._mono()
            while q and now - q[0] > 60:
                q.popleft()
            return bool(q) and len(q) >= self.per_minute

    def failed(self, remote: str) -> None:
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen.setdefault(remote, deque()).append(self._mono())


class ConsoleApp:
    STREAM_SESSION_CHECK = 15.0   # seconds between checks that a hit stream's session is still valid
    def __init__(self, cfg: CentralConfig, *, clock=utcnow, monotonic=time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self._local = threading.local()
        self._backends: list[Backend] = []
        self._streams: set[threading.Event] = set()
        self._lock = threading.Lock()
        self.throttle = SignInThrottle(cfg.console.sign_in_per_minute, monotonic)
        self.env = Environment(loader=PackageLoader("central.console", "templates"),
                               autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if hasattr(v, "strftime") else (
            v.replace("T", " ")[:19] if isinstance(v, str) else "—" if v is None else v)
        routes = [Route("/", self.home), Route("/sign-in", self.sign_in, methods=["GET", "POST"]),
                  Route("/sign-out", self.sign_out, methods=["POST"]),
                  Route("/account/password", self.password, methods=["GET", "POST"]),
                  Route("/api/v1/openapi.json", self.openapi),
                  Route("/api/v1/me", self.me),
                  Route("/api/v1/hits/stream", self.hit_stream),
                  Route("/hits/{hit_id:int}/thumb", self.hit_thumb),
                  Route("/api/v1/hits/{hit_id:int}/thumb", self.hit_thumb),
                  Route("/reads/{read_id}/{part:str}", self.image),
                  Route("/api/v1/reads/{read_id}/{part:str}", self.image),
                  Mount("/static", StaticFiles(packages=[("central.console", "static")]), name="static")]
        for page in PAGES:
            methods = ["GET", "POST"] if page.action else ["GET"]
            routes.append(Route(page.path, self._endpoint(page, api=False), methods=methods))
            routes.append(Route("/api/v1" + page.path, self._endpoint(page, api=True), methods=methods))
        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield
            self.close()
        self.app = Starlette(routes=routes, lifespan=lifespan)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            async def send_with_headers(message):
                if message["type"] == "http.response.start":
                    message.setdefault("headers", [])
                    message["headers"] += _SECURITY_HEADERS
                await send(message)
            return await self.app(scope, receive, send_with_headers)
        return await self.app(scope, receive, send)

    # -- plumbing ------------------------------------------------------------------
    def backend(self) -> Backend:
        b = getattr(self._local, "backend", None)
        if b is None:
            b = self._local.backend = Backend(self.cfg, clock=self.clock, reads=self._reads())
            with self._lock:
                self._backends.append(b)
        return b

    def _reads(self):
        """PostgreSQL: one read store (a pool of up to 4 connections) for every worker thread."""
        if self.cfg.store.type != "postgresql":
            return None
        with self._lock:
            if getattr(self, "_read_store", None) is None:
                from ..store.postgres import PostgresStore
                self._read_store = PostgresStore(self.cfg.store.url, min_size=0, max_size=4)
            return self._read_store

    def close(self) -> None:
        with self._lock:
            for stop in self._streams:   # open hit streams end within a poll
                stop.set()
            for b in self._backends:
                try:
                    b.close()
                except Exception:  # noqa: BLE001 - closing on shutdown; nothing to do about it
                    pass
            self._backends.clear()
            if getattr(self, "_read_store", None) is not None:
                self._read_store.close()
                self._read_store = None

    def _who(self, request: Request) -> tuple[User, object]:
        """(user, session); session is None for a Bearer token."""
        b = self.backend()
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return UserDirectory(b.conn, clock=self.clock).authenticate(header[7:].strip()), None
        session = b.auth.session(request.cookies.get(SESSION_COOKIE))
        return session.user, session

    def _csrf_ok(self, request: Request, session, form) -> bool:
        if session is None:
            return True   # Bearer: no ambient credential a forged request could borrow
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            return False
        return self.backend().auth.csrf_ok(session, form.get("csrf") or request.headers.get("x-csrf-token"))

    def render(self, template: str, status: int = 200, **ctx) -> HTMLResponse:
        user = ctx.get("user")
        nav = [(label, path) for label, path, allowed in NAV if user is not None and allowed(user)]
        html = self.env.get_template(template).render(nav=nav, cfg=self.cfg, **ctx)
        return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})

    def _refuse(self, request: Request, api: bool, status: int, message: str, user=None, session=None):
        if api:
            return JSONResponse({"error": message, "status": status}, status, headers={"Cache-Control": "no-store"})
        if status == 401:
            note = "expired" if "ended" in message else ""
            return RedirectResponse(f"/sign-in?next={quote(request.url.path)}&note={note}", 303)
        return self.render("error.html", status, user=user, csrf=session.csrf if session else "",
                           title={403: "Not allowed", 404: "Not found", 503: "Try again"}.get(status, "Refused"),
                           message=message)

    def _log_denied(self, user: User, request: Request, reason: str) -> None:
        AccessLog(self.backend().conn, clock=self.clock).append(
            user=user.name, organization=user.organization, action="console-denied",
            detail={"path": request.url.path, "method": request.method, "reason": reason[:200]})

    # -- pages ---------------------------------------------------------------------
    def _endpoint(self, page: Page, *, api: bool):
        async def endpoint(request: Request):
            try:
                user, session = await run_in_threadpool(self._who, request)
            except AuthenticationError as exc:
                return self._refuse(request, api, 401, str(exc))
            # Keys starting with "_" are the views' own (a notice after an action), never a caller's.
            params = {k: v for k, v in request.query_params.items() if not k.startswith("_")}
            view = page.action if request.method == "POST" else page.view
            if request.method == "POST":
                form = await request.form(max_part_size=1024 * 1024)
                if not await run_in_threadpool(self._csrf_ok, request, session, form):
                    await run_in_threadpool(self._log_denied, user, request, "CSRF token missing or wrong")
                    return self._refuse(request, api, 403, "this request lacks its CSRF token (reload the page "
                                                          "and try again)", user, session)
                for k, v in form.multi_items():
                    if k == "csrf" or k.startswith("_"):
                        continue
                    if isinstance(v, str):
                        params[k] = v
                    elif k in page.action_params:   # an upload (a hotlist CSV): read here, bounded
                        data = await v.read(MAX_UPLOAD + 1)
                        if len(data) > MAX_UPLOAD:
                            return self._refuse(request, api, 413, f"the file is larger than "
                                                                   f"{MAX_UPLOAD // 2**20} MiB", user, session)
                        params[k] = data
            try:
                data = await run_in_threadpool(view, self.backend(), user, params, **request.path_params)
            except PermissionDenied as exc:
                await run_in_threadpool(self._log_denied, user, request, str(exc))
                return self._refuse(request, api, 403, str(exc), user, session)
            except CentralError as exc:
                return await self._failed(request, page, api, user, session, params, exc)
            if api:
                return JSONResponse(plain(data), headers={"Cache-Control": "no-store"})
            return self.render(page.template, user=user, csrf=session.csrf if session else "", page=page,
                               title=page.title, d=data)
        return endpoint

    async def _failed(self, request, page: Page, api: bool, user, session, params, exc):
        message = str(exc)
        if isinstance(exc, StoreError):   # the database is unreachable or busy: try again
            logger.warning("console request failed: %s", exc)
            return self._refuse(request, api, 503, "the database is busy or unreachable; try again shortly",
                                user, session)
        problems = [{"line": n, "why": why} for n, why in getattr(exc, "problems", ())]
        if api:
            body = {"error": message, "status": 400, **({"problems": problems} if problems else {})}
            return JSONResponse(body, 400, headers={"Cache-Control": "no-store"})
        data = {}
        if page.view is operator.search:  # show the form again, filled in, with the reason
            data = await run_in_threadpool(operator.form_only, self.backend(), params)
        elif page.view is not operator.read_detail and request.method == "POST":
            try:
                data = await run_in_threadpool(page.view, self.backend(), user, {}, **request.path_params)
            except CentralError:
                data = {}
        return self.render(page.template if data else "error.html", 400, user=user,
                           csrf=session.csrf if session else "", page=page, title=page.title, d=data,
                           error=message, message=message, problems=problems)

    async def home(self, request: Request):
        try:
            user, _ = await run_in_threadpool(self._who, request)
        except AuthenticationError:
            return RedirectResponse("/sign-in", 303)
        if user.role is Role.AUDITOR:   # an auditor's work starts at the access log, not the fleet
            return RedirectResponse("/audit/log", 303)
        for _, path, allowed in NAV:
            if allowed(user):
                return RedirectResponse(path, 303)
        return self._refuse(request, False, 403, "your role has no console pages", user)

    async def me(self, request: Request):
        try:
            user, session = await run_in_threadpool(self._who, request)
        except AuthenticationError as exc:
            return self._refuse(request, True, 401, str(exc))
        return JSONResponse({"name": user.name, "organization": user.organization, "role": user.role.value,
                             "pages": [path for _, path, allowed in NAV if allowed(user)],
                             "csrf": session.csrf if session else None})

    async def hit_stream(self, request: Request):
        """New hits as server-sent events (``event: hit``, ``id:`` the hit id). Resumes after the
        ``Last-Event-ID`` header or the ``after`` parameter; refused (before any byte) without view-hits.
        The stream has its own connection and ends when the client goes, the user loses the role, or the
        console stops."""
        try:
            user, session = await run_in_threadpool(self._who, request)
        except AuthenticationError as exc:
            return self._refuse(request, True, 401, str(exc))
        after = request.headers.get("last-event-id") or request.query_params.get("after")
        stop = threading.Event()
        conn = connect(self.cfg.store.database)
        try:
            chunks = await run_in_threadpool(HitBook(conn, clock=self.clock).sse, user, after, stop)
        except PermissionDenied as exc:
            conn.close()
            await run_in_threadpool(self._log_denied, user, request, str(exc))
            return self._refuse(request, True, 403, str(exc), user, session)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._streams.add(stop)

        busy = threading.Lock()

        def pull():
            with busy:
                return next(chunks, None)

        def finish():   # after the chunk in flight (it returns within a poll once stop is set)
            with busy:
                conn.close()

        token = request.cookies.get(SESSION_COOKIE)
        checked = time.monotonic()

        async def body():
            nonlocal checked
            try:
                while not stop.is_set():
                    chunk = await run_in_threadpool(pull)
                    if chunk is None:
                        break
                    if session is not None and time.monotonic() - checked >= self.STREAM_SESSION_CHECK:
                        # Watching is not activity: a stream ends with its session (sign-out, idle or
                        # absolute timeout), so an unattended screen stops showing hits.
                        checked = time.monotonic()
                        if not await run_in_threadpool(self.backend().auth.still_valid, token):
                            break
                    yield chunk
            finally:   # the client went (the task is cancelled: no await here) or the stream ended
                stop.set()
                with self._lock:
                    self._streams.discard(stop)
                threading.Thread(target=finish, name="hit-stream-close", daemon=True).start()
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def image(self, request: Request):
        return await self._jpeg(request, operator.read_image, (dict(request.query_params),
                                request.path_params["read_id"], request.path_params["part"]), CentralError, 400)

    async def hit_thumb(self, request: Request):
        """A hit's crop for the hits list (``view-hits``: business, admin and field-tech get 403)."""
        return await self._jpeg(request, hitsview.hit_thumb, ({}, request.path_params["hit_id"]), LookupError, 404)

    async def _jpeg(self, request: Request, produce, args: tuple, other: type[Exception], status: int):
        """An image ``produce(backend, user, *args)`` returns, for a signed-in user: 401 without a
        session, 403 (logged) when refused, ``status`` for an ``other`` error."""
        api = request.url.path.startswith("/api/")
        try:
            user, session = await run_in_threadpool(self._who, request)
        except AuthenticationError as exc:
            return self._refuse(request, api, 401, str(exc))
        try:
            jpeg = await run_in_threadpool(produce, self.backend(), user, *args)
        except PermissionDenied as exc:
            await run_in_threadpool(self._log_denied, user, request, str(exc))
            return self._refuse(request, api, 403, str(exc), user, session)
        except other as exc:
            return self._refuse(request, api, status, str(exc), user, session)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    # -- sign-in -------------------------------------------------------------------
    async def sign_in(self, request: Request):
        remote = request.client.host if request.client else ""
        nxt = request.query_params.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
            nxt = "/"
        if request.method == "GET":
            token = secrets.token_urlsafe(24)
            note = {"expired": "Your session ended. Sign in again.",
                    "changed": "Your password was changed. Sign in with the new one."}.get(request.query_params.get("note", ""), "")
            resp = self.render("sign_in.html", title="Sign in", csrf=token, next=nxt, notice=note)
            resp.set_cookie(SIGN_IN_COOKIE, token, secure=True, httponly=True, samesite="strict", path="/")
            return resp
        form = dict(await request.form())
        presented, cookie = form.get("csrf") or "", request.cookies.get(SIGN_IN_COOKIE) or ""
        if not presented or not secrets.compare_digest(presented, cookie):
            return self.render("sign_in.html", 403, title="Sign in", csrf="", next=nxt,
                               error="The sign-in form expired. Reload the page and try again.")
        if self.throttle.blocked(remote):
            return self.render("sign_in.html", 429, title="Sign in", csrf=cookie, next=nxt,
                               error="Too many failed sign-ins from this address. Wait a minute.")
        try:
            signed = await run_in_threadpool(self.backend().auth.sign_in, form.get("name", ""),
                                             form.get("password", ""), remote=remote)
        except AuthenticationError as exc:
            self.throttle.failed(remote)
            return self.render("sign_in.html", 401, title="Sign in", csrf=cookie, next=nxt, error=str(exc),
                               name=form.get("name", "")[:64])
        resp = RedirectResponse(nxt, 303)
        resp.set_cookie(SESSION_COOKIE, signed.token, secure=True, httponly=True, samesite="strict", path="/")
        resp.delete_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return resp

    async def sign_out(self, request: Request):
        try:
            user, session = await run_in_threadpool(self._who, request)
        except AuthenticationError:
            return RedirectResponse("/sign-in", 303)
        form = dict(await request.form())
        if not await run_in_threadpool(self._csrf_ok, request, session, form):
            return self._refuse(request, False, 403, "this request lacks its CSRF token", user, session)
        await run_in_threadpool(self.backend().auth.sign_out, request.cookies.get(SESSION_COOKIE))
        resp = RedirectResponse("/sign-in", 303)
        resp.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return resp

    async def password(self, request: Request):
        """Change one's own password (browser sessions only: a token holder uses 'user passwd')."""
        try:
            user, session = await run_in_threadpool(self._who, request)
        except AuthenticationError as exc:
            return self._refuse(request, False, 401, str(exc))
        if session is None:
            return self._refuse(request, False, 403, "use 'alpr-central user passwd' with a token", user)
        ctx = dict(user=user, csrf=session.csrf, title="Change your password")
        if request.method == "GET":
            return self.render("password.html", **ctx)
        form = dict(await request.form())
        if not await run_in_threadpool(self._csrf_ok, request, session, form):
            await run_in_threadpool(self._log_denied, user, request, "CSRF token missing or wrong")
            return self._refuse(request, False, 403, "this request lacks its CSRF token", user, session)
        if form.get("new") != form.get("confirm"):
            return self.render("password.html", 400, error="The two new passwords differ.", **ctx)
        remote = request.client.host if request.client else ""
        try:
            await run_in_threadpool(self.backend().auth.change_own_password, user, form.get("current", ""),
                                    form.get("new", ""), remote=remote)
        except CentralError as exc:
            return self.render("password.html", 400, error=str(exc), **ctx)
        resp = RedirectResponse("/sign-in?note=changed", 303)
        resp.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return resp

    async def openapi(self, request: Request):
        from .openapi import document
        return JSONResponse(document(PAGES))


_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: https: http:; style-src 'self'; "
                                 b"script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    # URLs carry plates, purposes and case numbers: never to another origin (a tile server). Same-origin
    # requests keep theirs, so Chromium sends a real Origin (not "null") for the CSRF check.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"strict-transport-security", b"max-age=31536000"),
]


def create_app(cfg: CentralConfig, *, clock=utcnow, monotonic=time.monotonic) -> ConsoleApp:
    return ConsoleApp(cfg, clock=clock, monotonic=monotonic)
