"""The rating app's security findings (issue 16), each reproduced against the real server on 127.0.0.1 (a
subprocess) and a real SQLite file: sessions that outlive sign-out, a password change, disabling or a key
rotation; parallel password guessing; forged X-Forwarded-For; world-readable files; huge anonymous bodies;
malformed tokens and imports; weak passwords and old scrypt costs.

Passwords are hashed at the real cost (scrypt N=2^17, ~0.3 s): each test signs in only a few times."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import stat
import threading
from base64 import b64encode
from pathlib import Path

import httpx
import pytest

from feedback_helpers import PASSWORD, csrf_of, feedback_cli, make_db, prompts, signed_in, start_feedback

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def server(tmp_path):
    """Start a server on a fresh database (rater rita, admin ada, 3 prompts): server(*options) -> (url, db)."""
    procs = []

    def start(*options: str) -> tuple[str, str]:
        db = make_db(tmp_path / "feedback.db", ["rita"], ["ada"], prompts(3))
        proc, url = start_feedback(db, tmp_path / "home", None, *options)
        procs.append(proc)
        return url, db

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def sql(db: str, query: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query, args).fetchall()


def try_login(url: str, name: str, password: str, headers: dict | None = None) -> httpx.Response:
    """One sign-in from a fresh client (its own CSRF token, no cookie from an earlier sign-in)."""
    with httpx.Client(base_url=url, timeout=120) as client:
        token = csrf_of(client.get("/login").text)
        return client.post("/login", data={"name": name, "password": password, "csrf_token": token},
                           headers=headers or {})


def signed_out(client: httpx.Client) -> bool:
    """True when the client's cookie no longer signs it in: /rate sends it to the sign-in page."""
    r = client.get("/rate")
    return r.status_code == 303 and r.headers["location"].startswith("/login")


def copy_of(client: httpx.Client) -> httpx.Client:
    """A second client holding the same cookie, as a thief who saved it would."""
    return httpx.Client(base_url=str(client.base_url), cookies=dict(client.cookies), timeout=60)


def test_a_cookie_saved_before_sign_out_is_refused(server):
    url, db = server()
    rita = signed_in(url, "rita")
    page = rita.get("/rate").text
    saved = copy_of(rita)
    assert not signed_out(saved)  # the copy works while rita is signed in
    r = rita.post("/logout", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 303
    assert signed_out(saved)
    cid = sql(db, "SELECT id FROM comparisons LIMIT 1")[0][0]
    r = copy_of(rita).post("/rate", data={"csrf_token": csrf_of(page), "comparison_id": cid, "choice": "left"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert sql(db, "SELECT count(*) FROM ratings") == [(0,)]


def test_set_password_and_disable_user_end_sessions(server):
    url, db = server()
    rita, ada = signed_in(url, "rita"), signed_in(url, "ada")
    new_password = "a violet kite over the harbour"
    done = feedback_cli("set-password", "rita", "--db", db, "--password-stdin", stdin=new_password + "\n")
    assert done.returncode == 0, done.stderr
    assert signed_out(rita) and not signed_out(ada)
    assert try_login(url, "rita", PASSWORD).status_code == 401  # the old password is gone
    assert not signed_out(signed_in(url, "rita", new_password))

    assert feedback_cli("disable-user", "ada", "--db", db).returncode == 0
    assert signed_out(ada)
    assert try_login(url, "ada", PASSWORD).status_code == 401  # disabled: the right password does not help
    assert feedback_cli("enable-user", "ada", "--db", db).returncode == 0
    assert not signed_out(signed_in(url, "ada"))


def test_rotate_key_signs_everyone_out(server):
    url, db = server()
    key = Path(db + ".key")
    before = key.read_text()
    rita, ada = signed_in(url, "rita"), signed_in(url, "ada")
    done = feedback_cli("rotate-key", "--db", db)
    assert done.returncode == 0, done.stderr
    assert key.read_text() != before and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert signed_out(rita) and signed_out(ada)  # the running server read the new key
    assert not signed_out(signed_in(url, "rita"))


def test_forty_parallel_wrong_logins_for_one_name_get_at_most_five_password_checks(server):
    url, db = server()
    clients = [httpx.Client(base_url=url, timeout=120) for _ in range(40)]
    tokens = [csrf_of(c.get("/login").text) for c in clients]
    start, statuses = threading.Barrier(40), []

    def guess(i: int) -> None:
        start.wait()
        r = clients[i].post("/login", data={"name": "rita", "password": f"guess number {i}", "csrf_token": tokens[i]})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    # Each recorded attempt is one password check, and only a 401 comes from a check.
    checks = sql(db, "SELECT count(*) FROM login_attempts WHERE name = 'rita'")[0][0]
    assert checks == 5 and sorted(statuses) == [401] * 5 + [429] * 35
    assert try_login(url, "rita", PASSWORD).status_code == 429  # locked for the window, right password or not


@pytest.mark.parametrize("trusted, counted", [((), "127.0.0.1"), (("--trusted-proxy", "127.0.0.1"), "203.0.113.7")])
def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(server, trusted, counted):
    url, db = server(*trusted)
    r = try_login(url, "nobody", "wrong password", headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 401
    assert sql(db, "SELECT ip FROM login_attempts") == [(counted,)]


def test_a_forged_x_forwarded_for_does_not_dodge_the_per_address_limit(server):
    url, db = server()
    for i in range(20):  # 20 names, each guessed once, each request claiming another address
        r = try_login(url, f"user{i}", "wrong password", headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert r.status_code == 401
    r = try_login(url, "rita", PASSWORD, headers={"X-Forwarded-For": "198.51.100.99"})
    assert r.status_code == 429  # this address had its 20
    assert sql(db, "SELECT DISTINCT ip FROM login_attempts") == [("127.0.0.1",)]


def test_the_database_its_wal_and_the_key_file_are_owner_only(server, tmp_path):
    old = os.umask(0o022)  # what most systems use: without care, new files come out 0644
    try:
        url, db = server()
        signed_in(url, "rita")  # a write: the -wal file has content
    finally:
        os.umask(old)
    files = [Path(db + suffix) for suffix in ("", "-wal", "-shm", ".key")]
    assert Path(db + "-wal").exists() and Path(db + ".key").exists()
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()} == \
        {f.name: 0o600 for f in files if f.exists()}


def test_an_older_database_is_migrated(tmp_path):
    """A database made before this change: readable by all, the signing key in its meta table, no session
    versions. Opening it mends the mode, drops the key from the table and makes a new key file."""
    from knowtune.web.store import Store

    db = make_db(tmp_path / "old.db", ["rita"])
    sql(db, "ALTER TABLE users DROP COLUMN session_version")
    sql(db, "INSERT INTO meta (key, value) VALUES ('session_secret', 'the-old-key-everyone-could-read')")
    os.chmod(db, 0o644)
    store = Store(db)
    key = store.signing_key()
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert sql(db, "SELECT count(*) FROM meta WHERE key = 'session_secret'") == [(0,)]
    assert store.user_by_name("rita").session_version == 1
    assert key.current() != "the-old-key-everyone-could-read" and len(key.current()) >= 48
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600


def raw_post(url: str, path: str, headers: dict, first_bytes: bytes, cookie: str = "") -> bytes:
    """Send a POST's headers and only the first bytes of its body, then wait for the answer: a server that
    waited for the whole body would time out here."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    lines += [f"Cookie: {cookie}"] if cookie else []
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + first_bytes)
        return s.recv(65536)


def test_an_anonymous_15_mb_post_is_refused_before_it_is_read(server):
    url, _ = server()
    size = 15 * 1024 * 1024
    form = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(size)}
    answer = raw_post(url, "/login", form, b"name=" + b"x" * 1000)
    assert answer.startswith(b"HTTP/1.1 413 ")
    upload = {"Content-Type": "multipart/form-data; boundary=b0undary", "Content-Length": str(size)}
    answer = raw_post(url, "/admin/import", upload, b"--b0undary\r\n")
    assert answer.startswith(b"HTTP/1.1 303 ") and b"location: /login" in answer.lower()
    rita = signed_in(url, "rita")  # a rater may not import either, and is told so before the body is read
    cookie = "; ".join(f"{k}={v}" for k, v in rita.cookies.items())
    answer = raw_post(url, "/admin/import", upload, b"--b0undary\r\n", cookie=cookie)
    assert answer.startswith(b"HTTP/1.1 403 ")
    # No Content-Length (chunked): counted as it arrives, refused once past the form limit.
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5))  # 320 KiB of a promised stream
    answer = raw_post(url, "/login", {"Content-Type": "application/x-www-form-urlencoded",
                                      "Transfer-Encoding": "chunked"}, body)
    assert answer.startswith(b"HTTP/1.1 413 ")


def admin_import(client: httpx.Client, content: bytes, token: str | None = None) -> httpx.Response:
    token = token if token is not None else csrf_of(client.get("/admin").text)
    return client.post("/admin/import", data={"csrf_token": token}, files={"file": ("prompts.jsonl", content)})


def test_bad_tokens_and_bad_imports_get_400_with_a_message(server):
    url, db = server()
    anonymous = httpx.Client(base_url=url, timeout=60)
    csrf_of(anonymous.get("/login").text)
    for token in ("jéton", "x" * 500):
        r = anonymous.post("/login", data={"name": "rita", "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 400 and "CSRF token is malformed" in r.text, token
    garbage = httpx.Client(base_url=url, cookies={"knowtune_session": "not.a.signed.cookie"})
    assert garbage.get("/login").status_code == 200  # a bad cookie is no session, not an error
    r = httpx.get(url + "/login", headers={"Cookie": "knowtune_session=caf\xe9".encode("latin-1")})
    assert r.status_code == 200

    ada = signed_in(url, "ada")
    for content, message in ((b"[" * 100_000, "nested too deeply"),
                             (b'{"prompt": ' + b"[" * 500 + b"]" * 500 + b"}\n", "non-empty \"prompt\""),
                             ('{"prompt": "Un café ?"}'.encode("latin-1"), "is not UTF-8")):
        r = admin_import(ada, content)
        assert r.status_code == 400 and message in r.text.replace("&#34;", '"'), (content[:20], r.text[-800:])
    assert admin_import(ada, b'{"prompt": "fine"}\n', token="wrong-token").status_code == 403
    assert admin_import(ada, b'{"prompt": "fine"}\n', token="jéton").status_code == 400
    assert sql(db, "SELECT count(*) FROM prompts") == [(3,)]  # nothing imported so far
    assert admin_import(ada, b'{"prompt": "A good question?"}\n').status_code == 303
    assert sql(db, "SELECT count(*) FROM prompts") == [(4,)]


def test_an_upload_whose_first_part_is_not_the_csrf_token_is_refused(server):
    url, db = server()
    ada = signed_in(url, "ada")
    token = csrf_of(ada.get("/admin").text)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jsonl\"\r\n\r\n"
            f"{{\"prompt\": \"Sneaked in?\"}}\n\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\""
            f"\r\n\r\n{token}\r\n--{boundary}--\r\n").encode()
    r = ada.post("/admin/import", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 403 and "CSRF" in r.text
    assert sql(db, "SELECT count(*) FROM prompts WHERE text = 'Sneaked in?'") == [(0,)]


def test_common_passwords_and_the_users_own_name_are_refused(tmp_path):
    from knowtune.web.auth import password_problem

    for weak in ("password", "Password123!", "12345678", "qwertyuiop", "letmein2024", "aaaaaaaa1", "margarethe7"):
        assert password_problem(weak, "margarethe") is not None, weak
    assert password_problem(PASSWORD, "margarethe") is None
    db = str(tmp_path / "users.db")
    done = feedback_cli("add-user", "ada", "--role", "admin", "--db", db, "--password-stdin", stdin="password\n")
    assert done.returncode == 1 and "one of the first any guesser tries" in done.stderr
    assert sql(db, "SELECT count(*) FROM users") == [(0,)]


def test_an_old_cheaper_hash_is_upgraded_at_sign_in(server):
    url, db = server()
    salt = os.urandom(16)
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    old = f"scrypt$16384$8$1${b64encode(salt).decode()}${b64encode(digest).decode()}"
    sql(db, "UPDATE users SET password_hash = ? WHERE name = 'rita'", old)
    rita = signed_in(url, "rita")  # the old hash still verifies
    [(new,)] = sql(db, "SELECT password_hash FROM users WHERE name = 'rita'")
    assert new.startswith("scrypt$131072$8$1$") and new != old
    assert not signed_out(rita)  # re-hashing is not a password change: the session stays
    assert not signed_out(signed_in(url, "rita"))  # and the new hash verifies


def test_secure_cookies_and_hsts_are_options(server):
    url, _ = server("--secure-cookies", "--hsts")
    r = httpx.get(url + "/login")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-knowtune_session=") and "Secure" in cookie and "HttpOnly" in cookie
    assert r.headers["strict-transport-security"] == "max-age=31536000"


def test_without_the_options_cookies_work_over_plain_http(server):
    url, _ = server()
    r = httpx.get(url + "/login")
    assert r.headers["set-cookie"].startswith("knowtune_session=") and "Secure" not in r.headers["set-cookie"]
    assert "strict-transport-security" not in r.headers
    assert not signed_out(signed_in(url, "rita"))  # the browser sends it back over http://127.0.0.1
