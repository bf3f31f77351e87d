"""`knowtune feedback serve`: the rating web app (FastAPI, server-rendered Jinja2 pages, a little JavaScript).

Raters see a prompt and two answers side by side, pick the better one or a tie, score each 1-5, flag a
wrong fact and may write a corrected answer. Admins import prompts, have the model answer them in the
background, watch agreement between raters and export preference pairs, KTO labels and corrections.

Security: passwords hashed with scrypt; sessions in signed, HttpOnly, SameSite=Lax cookies; a CSRF token
on every form, checked on every POST; failed logins rate-limited per name and per address; every page
escapes what it shows (model output included) and a Content-Security-Policy allows only this site's own
script and style files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from knowtune.data import preference
from knowtune.errors import DataError
from knowtune.web import auth
from knowtune.web.generate import AnswerWriter
from knowtune.web.store import Store

HERE = Path(__file__).parent
SESSION_HOURS = 12
MAX_UPLOAD = 20 * 1024 * 1024
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


def create_app(store: Store, writer: AnswerWriter | None = None, secure_cookies: bool = False):
    app = FastAPI(title="knowtune feedback", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=store.secret(), session_cookie="knowtune_session",
                       max_age=SESSION_HOURS * 3600, same_site="lax", https_only=secure_cookies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    store.mark_stale_jobs()

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        user = current_user(request)
        flashes = request.session.pop("flash", [])
        html = env.get_template(template).render(user=user, csrf=auth.csrf_token(request.session), flashes=flashes,
                                                 path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def flash(request: Request, message: str, kind: str = "ok") -> None:
        request.session["flash"] = [*request.session.get("flash", [])[-4:], {"kind": kind, "text": message}]

    def current_user(request: Request):
        uid = request.session.get("uid")
        user = store.user(uid) if uid else None
        return user if user and user.active else None

    async def checked_form(request: Request) -> dict:
        """The POSTed form, after its CSRF token was checked."""
        form = await request.form(max_part_size=MAX_UPLOAD)
        if not auth.csrf_ok(request.session, form.get("csrf_token")):
            raise _Forbidden("This form has expired or did not come from this site (missing or wrong CSRF token). "
                             "Go back, reload the page and try again.")
        return form

    def post(path: str):
        """Register a form handler `handler(request, form)`: the form is read and its CSRF token checked on the
        event loop, then the handler (database writes, password hashing) runs in the thread pool, so slow work
        never stalls other requests and writers really do meet at the database lock."""
        def register(handler):
            async def endpoint(request: Request):
                form = await checked_form(request)
                return await run_in_threadpool(handler, request, form)

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
    async def forbidden(request: Request, exc: _Forbidden):
        return page(request, "error.html", status=403, title="Not allowed", message=str(exc))

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

    @post("/login")
    def login(request: Request, form):
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        ip = request.client.host if request.client else "?"
        if auth.too_many_failures(*store.recent_failures(name, ip, auth.LOGIN_WINDOW)):
            minutes = int(auth.LOGIN_WINDOW.total_seconds() // 60)
            return page(request, "login.html", status=429, next=_safe_next(form.get("next", "/")),
                        error=f"Too many failed sign-ins. Wait {minutes} minutes and try again, or ask an admin.")
        user = store.user_by_name(name)
        ok = auth.verify_password(password, user.password_hash if user else auth.DUMMY_HASH) and bool(user and user.active)
        store.record_login(name, ip, ok)
        if not ok:
            return page(request, "login.html", status=401, next=_safe_next(form.get("next", "/")),
                        error="Wrong name or password.")
        request.session.clear()  # a fresh session (and CSRF token) at every sign-in
        request.session["uid"] = user.id
        return RedirectResponse(_safe_next(form.get("next", "/")), status_code=303)

    @post("/logout")
    def logout(request: Request, form):
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
    def rate(request: Request, form):
        user = require(request)
        if user is None:
            return login_redirect(request)
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
        ratings = store.rating_rows()
        return page(request, "admin.html", counts=store.counts(), jobs=store.jobs(), exports=EXPORTS,
                    agreement=preference.agreement(ratings), waiting=len(store.prompts_without_comparison()),
                    users=store.users(), can_generate=writer is not None, generating=bool(writer and writer.busy()))

    @app.get("/admin/jobs.json")
    def jobs_json(request: Request):
        if require(request, "admin") is None:
            return JSONResponse({"error": "sign in"}, status_code=401)
        return {"jobs": store.jobs()}

    @post("/admin/import")
    def import_prompts(request: Request, form):
        if require(request, "admin") is None:
            return login_redirect(request)
        upload = form.get("file")
        if upload is None or not getattr(upload, "filename", ""):
            flash(request, "Choose a JSONL file of prompts to import.", "error")
            return RedirectResponse("/admin", status_code=303)
        raw = upload.file.read()
        try:
            rows = preference.parse_prompt_lines(raw.decode("utf-8-sig"), upload.filename)
        except UnicodeDecodeError:
            flash(request, f"{upload.filename} is not UTF-8 text: save it as UTF-8 JSONL and import it again.", "error")
            return RedirectResponse("/admin", status_code=303)
        except DataError as exc:
            flash(request, f"{exc.message}\n{exc.fix}", "error")
            return RedirectResponse("/admin", status_code=303)
        r = store.import_prompts(rows, source=upload.filename)
        flash(request, f"Imported {r['added']} prompts from {upload.filename} ({r['skipped']} already there, "
                       f"{r['comparisons']} comparisons from answers in the file).")
        return RedirectResponse("/admin", status_code=303)

    @post("/admin/generate")
    def generate(request: Request, form):
        if require(request, "admin") is None:
            return login_redirect(request)
        if writer is None:
            flash(request, "This server has no model to write answers with.", "error")
        elif (job := writer.start()) is None:
            flash(request, "Nothing to do: every prompt has answers, or a job is running.", "error")
        else:
            flash(request, f"Started job {job}: the model is writing answers (progress below).")
        return RedirectResponse("/admin", status_code=303)

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


def serve(model_ref: str | None, db: str, host: str = "127.0.0.1", port: int = 8080, log=print) -> None:
    import uvicorn

    store = Store(db)
    if not store.users():
        log(f"No users yet in {store.url}: add one with `knowtune feedback add-user NAME --role admin --db {db}`.")
    writer = AnswerWriter(store, model_ref, log=log) if model_ref else None
    app = create_app(store, writer)
    log(f"Rating app at http://{host}:{port}/ (database {store.url}; Ctrl-C stops).")
    uvicorn.run(app, host=host, port=port, log_level="warning")
