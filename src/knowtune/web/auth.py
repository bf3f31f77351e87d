"""Passwords (scrypt), CSRF tokens and the login rate limit of the rating app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

# scrypt cost: 2^14 x 8 x 1 needs 16 MiB and ~50 ms per check: cheap for a login, costly for a guesser.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
MIN_PASSWORD = 8
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5  # failed logins per user name in the window
MAX_FAILURES_PER_IP = 20  # failed logins from one address in the window


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# A dummy hash to check against when the user name is unknown, so a wrong name costs as long as a wrong password.
DUMMY_HASH = hash_password(secrets.token_hex(16))


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"the password must be at least {MIN_PASSWORD} characters"
    return None


def csrf_token(session: dict) -> str:
    """The session's CSRF token, made on first use; every form carries it back."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok(session: dict, sent: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and sent and hmac.compare_digest(expected, sent))


def too_many_failures(name_failures: int, ip_failures: int) -> bool:
    return name_failures >= MAX_FAILURES_PER_NAME or ip_failures >= MAX_FAILURES_PER_IP
