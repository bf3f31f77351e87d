"""Passwords (scrypt), the password policy, CSRF tokens and the login rate limit of the rating app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
from datetime import timedelta

from knowtune.web.common_passwords import COMMON_PASSWORDS

# scrypt cost at current guidance (OWASP: N=2^17, r=8, p=1): 128 MiB and ~0.3 s per check on a laptop core.
# Hashes made with other parameters still verify, and are re-made with these at the next sign-in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 17, 8, 1
# Stored hashes are trusted input, but a hand-edited one must not ask for gigabytes: refuse anything beyond.
MAX_SCRYPT_N, MAX_SCRYPT_R, MAX_SCRYPT_P = 2 ** 20, 32, 16
# Each check holds 128 MiB: at most this many run at once, so a burst of sign-ins for many names (each within
# its own limit) queues instead of taking gigabytes; a few at a time keep every core busy.
HASH_SLOTS = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))
MIN_PASSWORD = 8
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5  # failed (or still running) logins per user name in the window
MAX_FAILURES_PER_IP = 20  # failed (or still running) logins from one address in the window
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # the alphabet of secrets.token_urlsafe


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    if not (1 < n <= MAX_SCRYPT_N and 0 < r <= MAX_SCRYPT_R and 0 < p <= MAX_SCRYPT_P and 16 <= dklen <= 64):
        raise ValueError("scrypt parameters out of range")
    # hashlib's default maxmem (32 MiB) is below what N=2^17 needs (128 * r * N bytes, plus a little).
    maxmem = 128 * r * (n + p + 2) + 2 ** 20
    with HASH_SLOTS:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, 32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def needs_rehash(stored: str) -> bool:
    """True when the hash was made with other scrypt parameters than today's (an older, cheaper N)."""
    return not stored.startswith(f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$")


# What an unknown name is checked against, so a wrong name costs as long as a wrong password. Random bytes
# with today's parameters: no password matches it, and making it costs no scrypt run at import time.
DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(secrets.token_bytes(16))}${_b64(secrets.token_bytes(32))}"


def password_problem(password: str, name: str = "") -> str | None:
    """Why this password is refused for this user, or None. Length alone let `password` through: common
    passwords, the user's own name and one character repeated are refused as well."""
    if len(password) < MIN_PASSWORD:
        return f"the password must be at least {MIN_PASSWORD} characters"
    lowered = password.lower()
    core = lowered.strip("0123456789!@#$%^&*()-_=+.,;:?~ ")
    if lowered in COMMON_PASSWORDS or core in COMMON_PASSWORDS:
        return "that password is one of the first any guesser tries"
    if name.strip() and name.strip().lower() in (lowered, core):
        return "the password must not be the user's name"
    if len(set(lowered)) < 4:
        return "the password needs at least 4 different characters"
    return None


def csrf_token(session: dict) -> str:
    """The session's CSRF token, made on first use; every form carries it back."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_malformed(sent) -> bool:
    """A token was sent but cannot be one of ours (not text, other characters, odd length): a bad request,
    told apart from a token that is merely wrong or missing."""
    return sent is not None and not (isinstance(sent, str) and _TOKEN.fullmatch(sent))


def csrf_ok(session: dict, sent) -> bool:
    expected = session.get("csrf")
    if not (isinstance(expected, str) and isinstance(sent, str) and expected and sent):
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())  # bytes: str operands must be ASCII
