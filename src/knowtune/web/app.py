"""`knowtune feedback serve`: the rating web app (FastAPI, server-rendered Jinja2 pages, a little JavaScript).

Raters see a prompt and two answers side by side, pick the better one or a tie, score each 1-5, flag a
wrong fact and may write a corrected answer. Admins import prompts, have the model answer them in the
background, watch agreement between raters and export preference pairs, KTO labels and corrections.

Security: passwords hashed with scrypt (N=2^17) and checked against a list of common ones; sessions in
signed, HttpOnly, SameSite=Lax cookies (Secure with --secure-cookies), signed with a key kept in a 0600 file
and checked against the user's session version on every request, so sign-out, a new password or disabling
ends them; a CSRF token on every form, checked before the body is read beyond a small form; request bodies
capped by path (forms.py); failed logins limited per name and per address, counted in the same transaction
that records them; X-Forwarded-For believed only from --trusted-proxy addresses; every page escapes what it
shows (model output included) and a Content-Security-Policy allows only this site's own script and style.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from knowtune.data import preference
from knowtune.errors import DataError, KnowtuneError
from knowtune.httplimits import BodyLimit
from knowtune.web import auth, forms
from knowtune.web.generate import AnswerWriter
from knowtune.web.keyfile import SigningKey
from knowtune.web.sessions import SignedCookieSessions
from knowtune.web.runs import (DATA_SUFFIXES, TeachLauncher, compare, list_runs, plots_of, progress, row_of, run_detail,
                               run_folder, svg_points)
from knowtune.web.store import Store

HERE = Path(__file__).parent
SESSION_HOURS = 12
HSTS = "max-age=31536000"  # a year: browsers then refuse plain HTTP to this host (only sent with --hsts)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
EXPORTS = {  # name -> (what it holds, rows from ratings)
    "pairs": ("preference pairs {prompt, chosen, rejected} for `knowtune reward train` and `knowtune dpo`",
              lambda r: [p.to_row() for p in preference.preference_pairs(r)]),
    "kto": ("KTO labels {prompt, completion, label} for `knowtune dpo --kto`", preference.kto_labels),
    "corrections": ("corrected answers as chat examples for `knowtune teach`", preference.correction_rows),
    "ratings": ("every rating as stored", lambda r: r),
}


class _Forbidden(Exception):
    pass


class _NotFound(Exception):
    pass


def create_app(store: Store, writer: AnswerWriter | None = None, key: SigningKey | None = None,
               secure_cookies: bool = False, hsts: bool = False, trusted_proxies: tuple[str, ...] = (),
               launcher: TeachLauncher | None = None):
    """The app. key: the cookie-signing key (default: the database's key file, made if missing);
    trusted_proxies: addresses or networks whose X-Forwarded-For names the client (see `trusted_networks`);
    launcher: the runs folder the Runs pages read and start teach runs in (default: ./runs)."""
    launcher = launcher or TeachLauncher(store, Path("runs"))
    app = FastAPI(title="knowtune feedback", docs_url=None, redoc_url=None, openapi_url=None)
    # Middleware added later wraps what was added before: proxy address -> headers -> session -> body limit.
    app.add_middleware(BodyLimit, default=forms.FORM_LIMIT, too_large=forms.too_large,
                       limits={"/admin/import": forms.UPLOAD_LIMIT, "/runs/new": forms.UPLOAD_LIMIT})
    app.add_middleware(SignedCookieSessions, key=key or store.signing_key(), max_age=SESSION_HOURS * 3600,
                       secure=secure_cookies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    store.mark_stale_jobs()
    headers = {**SECURITY_HEADERS, **({"Strict-Transport-Security": HSTS} if hsts else {})}

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in headers.items():
            response.headers.setdefault(k, v)
        return response

    if trusted_proxies:  # without it the socket's address is the client, whatever X-Forwarded-For says
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(trusted_networks(trusted_proxies)))

    def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        user = current_user(request)
        flashes = request.session.pop("flash", [])
        html = env.get_template(template).render(user=user, csrf=auth.csrf_token(request.session), flashes=flashes,
                                                 path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def flash(request: Request, message: str, kind: str = "ok") -> None:
        request.session["flash"] = [*request.session.get("flash", [])[-4:], {"kind": kind, "text": message}]

    def current_user(request: Request):
        """The signed-in user, or None. The cookie's session version must be the user's current one: sign-out,
        a new password and disabling raise it, so a cookie saved before any of them is refused here."""
        if not hasattr(request.state, "user"):
            uid, version = request.session.get("uid"), request.session.get("sv")
            user = store.user(uid) if isinstance(uid, int) else None
            if not (user and user.active and version == user.session_version):
                user = None
                if uid is not None:
                    request.session.clear()  # a dead session: its cookie is cleared with this response
            request.state.user = user
        return request.state.user

    def post(path: str, access: str = "user"):
        """Register a form handler `handler(request, form, user)`, checked from the cheapest end: who may post
        (access "public", "user" or "admin"; from the cookie, before the body is read), then the small form
        and its CSRF token on the event loop, then the handler (database writes, password hashing) in the
        thread pool, so slow work never stalls other requests and writers really do meet at the database lock."""
        def register(handler):
            async def endpoint(request: Request):
                user = None
                if access != "public":
                    user = await run_in_threadpool(require, request, "admin" if access == "admin" else None)
                    if user is None:
                        return login_redirect(request)
                form = await forms.read_form(request)
                forms.check_csrf(request.session, form.get("csrf_token"))
                return await run_in_threadpool(handler, request, form, user)

            endpoint.__name__ = handler.__name__
            app.add_api_route(path, endpoint, methods=["POST"])
            return handler
        return register

    def login_redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    def require(request: Request, role: str | None = None):
        user = current_user(request)
        if user and role and user.role != role:
            raise _Forbidden(f"This page is for {role}s; you are signed in as a {user.role}.")
        return user

    @app.exception_handler(_Forbidden)
    @app.exception_handler(forms.CsrfRefused)
    async def forbidden(request: Request, exc: Exception):
        return page(request, "error.html", status=403, title="Not allowed", message=str(exc))

    @app.exception_handler(forms.BadRequest)
    async def bad_request(request: Request, exc: forms.BadRequest):
        return page(request, "error.html", status=400, title="Bad request", message=str(exc))

    @app.exception_handler(forms.RequestTooLarge)
    async def too_large(request: Request, exc: forms.RequestTooLarge):
        response = page(request, "error.html", status=413, title="Too large", message=str(exc))
        response.headers["Connection"] = "close"  # the rest of the body is not read
        return response

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/")
    def home(request: Request):
        user = current_user(request)
        if user is None:
            return login_redirect(request)
        return RedirectResponse("/admin" if user.role == "admin" else "/rate", status_code=303)

    @app.get("/login")
    def login_page(request: Request, next: str = "/"):
        return page(request, "login.html", next=_safe_next(next))

    @post("/login", access="public")
    def login(request: Request, form, _):
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        next_page = _safe_next(form.get("next", "/"))
        # The socket's address, or the client a --trusted-proxy named (ProxyHeadersMiddleware set it).
        ip = request.client.host if request.client else "?"
        attempt = store.begin_login(name, ip, auth.LOGIN_WINDOW, auth.MAX_FAILURES_PER_NAME, auth.MAX_FAILURES_PER_IP)
        if attempt is None:
            minutes = int(auth.LOGIN_WINDOW.total_seconds() // 60)
            return page(request, "login.html", status=429, next=next_page,
                        error=f"Too many failed sign-ins. Wait {minutes} minutes and try again, or ask an admin.")
        user = store.user_by_name(name)
        ok = auth.verify_password(password, user.password_hash if user else auth.DUMMY_HASH) and bool(user and user.active)
        if not ok:  # the attempt stays recorded as a failure
            return page(request, "login.html", status=401, next=next_page, error="Wrong name or password.")
        store.login_succeeded(attempt)
        if auth.needs_rehash(user.password_hash):  # made at an older, cheaper cost: hash again at today's
            store.update_password_hash(user.id, auth.hash_password(password))
        request.session.clear()  # a fresh session (and CSRF token) at every sign-in
        request.session.update(uid=user.id, sv=user.session_version)
        return RedirectResponse(next_page, status_code=303)

    @post("/logout")
    def logout(request: Request, form, user):
        store.end_sessions(user.id)  # every cookie of this user, a copy saved elsewhere too, stops working
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/rate")
    def rate_page(request: Request):
        user = require(request)
        if user is None:
            return login_redirect(request)
        comp = store.next_comparison(user.id)
        done, total = store.progress(user.id)
        if comp is None:
            return page(request, "rate.html", comp=None, done=done, total=total)
        left, right = _sides(user.id, comp["id"])
        return page(request, "rate.html", comp=comp, left=comp[left], right=comp[right], done=done, total=total)

    @post("/rate")
    def rate(request: Request, form, user):
        try:
            cid = int(form.get("comparison_id", ""))
            fields = _rating_fields(form, _sides(user.id, cid))
        except ValueError as exc:
            flash(request, f"Not saved: {exc}", "error")
            return RedirectResponse("/rate", status_code=303)
        if store.comparison(cid) is None:
            flash(request, "Not saved: that comparison no longer exists.", "error")
            return RedirectResponse("/rate", status_code=303)
        new = store.save_rating(user.id, cid, **fields)
        flash(request, "Saved." if new else "Saved (your earlier rating of this pair was replaced).")
        return RedirectResponse("/rate", status_code=303)

    @app.get("/admin")
    def admin_page(request: Request):
        user = require(request, "admin")
        if user is None:
            return login_redirect(request)
        return admin_view(request)

    def admin_view(request: Request, status: int = 200) -> HTMLResponse:
        ratings = store.rating_rows()
        return page(request, "admin.html", status=status, counts=store.counts(), jobs=store.jobs(), exports=EXPORTS,
                    agreement=preference.agreement(ratings), waiting=len(store.prompts_without_comparison()),
                    users=store.users(), can_generate=writer is not None, generating=bool(writer and writer.busy()))

    @app.get("/admin/jobs.json")
    def jobs_json(request: Request):
        if require(request, "admin") is None:
            return JSONResponse({"error": "sign in"}, status_code=401)
        return {"jobs": store.jobs()}

    @app.post("/admin/import")
    async def import_prompts(request: Request):
        """The one large body: the admin is checked from the cookie, then the CSRF token as the form's first
        part (forms.read_upload), and only then is the file read (up to forms.UPLOAD_LIMIT)."""
        if await run_in_threadpool(require, request, "admin") is None:
            return login_redirect(request)
        form = await forms.read_upload(request)
        return await run_in_threadpool(import_upload, request, form.get("file"))

    def import_upload(request: Request, upload) -> Response:
        """Import the file; a file that is not prompt rows shows the admin page again with 400 and why."""
        if upload is None or isinstance(upload, str) or not upload.filename:
            flash(request, "Choose a JSONL file of prompts to import.", "error")
            return admin_view(request, status=400)
        try:
            rows = forms.parse_prompt_upload(upload.file.read(), upload.filename)
        except DataError as exc:
            flash(request, f"Nothing imported: {exc.message}\n{exc.fix}", "error")
            return admin_view(request, status=400)
        r = store.import_prompts(rows, source=upload.filename)
        flash(request, f"Imported {r['added']} prompts from {upload.filename} ({r['skipped']} already there, "
                       f"{r['comparisons']} comparisons from answers in the file).")
        return RedirectResponse("/admin", status_code=303)

    @post("/admin/generate", access="admin")
    def generate(request: Request, form, user):
        if writer is None:
            flash(request, "This server has no model to write answers with.", "error")
        elif (job := writer.start()) is None:
            flash(request, "Nothing to do: every prompt has answers, or a job is running.", "error")
        else:
            flash(request, f"Started job {job}: the model is writing answers (progress below).")
        return RedirectResponse("/admin", status_code=303)

    # --- the runs dashboard ----------------------------------------------------------------------------
    @app.get("/runs")
    def runs_page(request: Request):
        user = require(request)
        if user is None:
            return login_redirect(request)
        return page(request, "runs.html", runs=list_runs(launcher.root, launcher.names()), root=launcher.root,
                    busy=launcher.busy(), suffixes=",".join(DATA_SUFFIXES))

    def found(request: Request, name: str):
        folder = run_folder(launcher.root, name, launcher.names())
        if folder is None:
            raise _NotFound(f"No run named {name!r} in {launcher.root}.")
        return folder

    @app.get("/runs/compare")
    def compare_page(request: Request):
        if require(request) is None:
            return login_redirect(request)
        names = request.query_params.getlist("run")
        if len(names) != 2 or names[0] == names[1]:
            flash(request, "Tick exactly two different runs to compare.", "error")
            return RedirectResponse("/runs", status_code=303)
        a, b = (run_detail(found(request, n), launcher.names()) for n in names)
        return page(request, "compare.html", a=a, b=b, c=compare(a, b))

    @app.get("/runs/{name}")
    def run_page(request: Request, name: str):
        if require(request) is None:
            return login_redirect(request)
        folder = found(request, name)
        d = run_detail(folder, launcher.names())
        return page(request, "run.html", d=d, progress=progress(folder), loss_svg=svg_points(d["loss"]),
                    dev_svg=svg_points(d["dev_accuracy"]))

    @app.get("/runs/{name}/progress.json")
    def run_progress(request: Request, name: str):
        if require(request) is None:
            return JSONResponse({"error": "sign in"}, status_code=401)
        folder = run_folder(launcher.root, name, launcher.names())
        if folder is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        return {**progress(folder), "status": row_of(folder, launcher.names()).status}  # polled: no more than it needs

    @app.get("/runs/{name}/plots/{plot}")
    def run_plot(request: Request, name: str, plot: str):
        if require(request) is None:
            return login_redirect(request)
        folder = found(request, name)
        if plot not in plots_of(folder):  # only the report's own PNGs, by their listed names
            raise _NotFound(f"No plot {plot!r} in run {name}.")
        return FileResponse(folder / "plots" / plot, media_type="image/png")

    @app.post("/runs/new")
    async def new_run(request: Request):
        """Start a teach run: admins only (from the cookie, before the body), the CSRF token as the form's first
        part, then the file (up to forms.UPLOAD_LIMIT)."""
        if await run_in_threadpool(require, request, "admin") is None:
            return login_redirect(request)
        form = await forms.read_upload(request, max_fields=8)
        return await run_in_threadpool(start_run, request, form)

    def start_run(request: Request, form) -> Response:
        upload, name = form.get("file"), str(form.get("name", "")).strip()
        settings = {}
        try:
            if upload is None or isinstance(upload, str) or not upload.filename:
                raise ValueError("choose a data file.")
            if form.get("epochs"):
                settings["epochs"] = int(str(form.get("epochs")))
            if form.get("learning_rate"):
                settings["learning_rate"] = float(str(form.get("learning_rate")))
            if form.get("method") in ("lora", "full"):
                settings["method"] = form.get("method")
            launcher.start(name, upload.filename, upload.file.read(), settings)
        except ValueError as exc:
            flash(request, f"Not started: {exc}", "error")
            return RedirectResponse("/runs", status_code=303)
        flash(request, f"Started teaching {name}.")
        return RedirectResponse(f"/runs/{name}", status_code=303)

    @app.exception_handler(_NotFound)
    async def not_found(request: Request, exc: _NotFound):
        return page(request, "error.html", status=404, title="Not found", message=str(exc))

    @app.get("/admin/export/{name}.jsonl")
    def export(request: Request, name: str):
        if require(request, "admin") is None:
            return login_redirect(request)
        if name not in EXPORTS:
            return page(request, "error.html", status=404, title="No such export", message=f"Unknown export {name!r}.")
        rows = EXPORTS[name][1](store.rating_rows())
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return Response(body, media_type="application/x-ndjson",
                        headers={"Content-Disposition": f'attachment; filename="{name}.jsonl"'})

    return app


def _safe_next(target) -> str:
    """Only local paths: never redirect a user to another site after sign-in."""
    target = str(target or "/")
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _sides(rater_id: int, comparison_id: int) -> tuple[str, str]:
    """Which stored answer ("a" or "b") shows on the left for this rater: fixed per rater and pair, balanced
    over pairs, so no answer wins by sitting on one side."""
    flip = hashlib.sha256(f"{rater_id}:{comparison_id}".encode()).digest()[0] & 1
    return ("b", "a") if flip else ("a", "b")


def _rating_fields(form, sides: tuple[str, str]) -> dict:
    """Form fields (named by screen side) -> a rating (named by stored answer). Raises ValueError."""
    side = {"left": sides[0], "right": sides[1]}
    choice = form.get("choice")
    if choice not in ("left", "right", "tie"):
        raise ValueError("choose the better answer (left, right) or a tie.")
    out = {"choice": "tie" if choice == "tie" else side[choice], "correction": str(form.get("correction", ""))[:20000]}
    for screen, stored in side.items():
        raw = str(form.get(f"score_{screen}", "") or "")
        if raw and raw not in {"1", "2", "3", "4", "5"}:
            raise ValueError("scores go from 1 to 5.")
        out[f"score_{stored}"] = int(raw) if raw else None
        out[f"wrong_{stored}"] = form.get(f"wrong_{screen}") in ("on", "1", "true")
    return out


def trusted_networks(values) -> list[str]:
    """--trusted-proxy values as networks ("10.0.0.5" -> "10.0.0.5/32"); a typo or "*" is an error, since
    trusting every sender's X-Forwarded-For would let anyone pick the address the login limit counts."""
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as exc:
            raise KnowtuneError(f"--trusted-proxy {value!r} is not an IP address or network.",
                                fix="give the proxy's own address, e.g. --trusted-proxy 127.0.0.1 or 10.0.0.0/24.") from exc
    return networks


def serve(model_ref: str | None, db: str, host: str = "127.0.0.1", port: int = 8080, log=print,
          secure_cookies: bool = False, hsts: bool = False, trusted_proxies: tuple[str, ...] = (),
          key_file: str | None = None, runs_root: Path = Path("runs"), teach_config: str | None = None) -> None:
    import uvicorn

    trusted_networks(trusted_proxies)  # a typo stops here, before anything starts
    store = Store(db)
    key = store.signing_key(key_file)
    if not store.users():
        log(f"No users yet in {store.url}: add one with `knowtune feedback add-user NAME --role admin --db {db}`.")
    writer = AnswerWriter(store, model_ref, log=log) if model_ref else None
    app = create_app(store, writer, key=key, secure_cookies=secure_cookies, hsts=hsts,
                     trusted_proxies=tuple(trusted_proxies), launcher=TeachLauncher(store, Path(runs_root), teach_config))
    proxies = f"X-Forwarded-For believed from {', '.join(trusted_proxies)}" if trusted_proxies else "no proxy trusted"
    log(f"Rating app at http://{host}:{port}/ (database {store.url}; key {key.path}; {proxies}; Ctrl-C stops).")
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 (its default);
    # create_app applies it for --trusted-proxy addresses only.
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
