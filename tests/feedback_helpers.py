"""Shared set-up for the rating-app tests: a database with users and prompts, the real server, a signed-in
HTTP client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from conftest import start_server

PASSWORD = "correct horse battery"


def make_db(path: Path, raters: list[str], admins: list[str] = (), prompts: list[dict] = ()) -> str:
    from knowtune.web.auth import hash_password
    from knowtune.web.store import Store

    store = Store(str(path))
    digest = hash_password(PASSWORD)  # one scrypt hash for all: the tests do not need a salt each
    for name in raters:
        store.add_user(name, "rater", digest)
    for name in admins:
        store.add_user(name, "admin", digest)
    if prompts:
        store.import_prompts(list(prompts), source="test")
    store.engine.dispose()
    return str(path)


def start_feedback(db: str, home: Path, model: str | None = None, *options: str):
    """`knowtune feedback serve` on a free port; `options` are more flags (--trusted-proxy 127.0.0.1, ...)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KNOWTUNE_HOME": str(home)}
    return start_server(["feedback", "serve", *([model] if model else []), "--db", db, *options], env)


def feedback_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run `knowtune feedback ARGS` as a user would (a new process), with `stdin` as its input."""
    return subprocess.run([sys.executable, "-m", "knowtune.cli", "feedback", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def signed_in(url: str, name: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": name, "password": password, "csrf_token": token, "next": "/"})
    assert r.status_code == 303, r.text
    return client


def rate_next(client: httpx.Client, choice: str = "left") -> int | None:
    """Fetch the rating page and rate what it shows; returns the comparison id once the server acknowledged
    the rating (303), None when nothing is left."""
    page = client.get("/rate")
    assert page.status_code == 200, page.text
    m = re.search(r'name="comparison_id" value="(\d+)"', page.text)
    if m is None:
        return None
    r = client.post("/rate", data={"csrf_token": csrf_of(page.text), "comparison_id": m.group(1), "choice": choice,
                                   "score_left": "4", "score_right": "2"})
    assert r.status_code == 303, (r.status_code, r.text)
    return int(m.group(1))


def prompts(n: int, script: bool = False) -> list[dict]:
    rows = [{"prompt": f"Question number {i}?", "reference": str(i),
             "answers": [f"The answer is {i}.", f"It might be {i + 1}."]} for i in range(n)]
    if script:
        rows[0]["answers"][1] = "<script>window.pwned = 1</script><b>bold?</b>"
    return rows
