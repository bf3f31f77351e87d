"""The key that signs session cookies, in a file of its own (mode 0600), and the owner-only mode of the
rating database's files.

Whoever holds the key can sign a cookie for any user, admins included. It used to live in the database,
which was created world-readable; now it sits next to the database (`feedback.db.key`), readable by its
owner only, and `knowtune feedback rotate-key` replaces it: every cookie signed with the old key stops
working at once, also in a server that is running (it reads the file again when the file changes).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from knowtune.errors import KnowtuneError

KEY_BYTES = 48


def private_mode_problem(path: Path) -> str | None:
    """Why `path` is readable by more than its owner, or None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return None if mode & 0o077 == 0 else f"{path} has mode {mode:04o}: group or others can read it"


def make_private(path: Path) -> None:
    """chmod 0600 when group or others have any access (a file made before this check, or by another tool).
    Another user's file is left as it is: only its owner may change its mode, and reading a shared database
    (`knowtune reward train their.db`) must keep working."""
    if path.exists() and private_mode_problem(path) and path.stat().st_uid == os.getuid():
        try:
            path.chmod(0o600)
        except OSError as exc:
            raise KnowtuneError(f"{path} is readable by other users and could not be made private: {exc}",
                                fix=f"run `chmod 600 {path}` as its owner.") from exc


def create_private_file(path: Path) -> bool:
    """Create an empty file readable by its owner only (O_EXCL: never truncates). False when it was there."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        return True
    except (FileExistsError, PermissionError):  # a folder we may not write to: SQLite says so when it opens
        return False


def _write_key(path: Path, replace: bool) -> None:
    """A fresh key, written to a 0600 temporary file and then moved into place in one step, so no reader ever
    sees a half-written key. replace=False: link (fails if another process made the file first)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_key(path: Path) -> bool:
    """Make the key file when it is missing; True when it was made now."""
    try:
        _write_key(path, replace=False)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise KnowtuneError(f"Could not write the cookie-signing key {path}: {exc}",
                            fix="check that the database's folder is writable, or give --key-file.") from exc


def rotate_key(path: Path) -> None:
    """Replace the key: every session cookie signed so far is refused from now on."""
    _write_key(path, replace=True)


def read_key(path: Path) -> str:
    if not path.exists():
        raise KnowtuneError(f"The cookie-signing key {path} is missing.",
                            fix="start `knowtune feedback serve` (it makes one) or run `knowtune feedback rotate-key`.")
    if problem := private_mode_problem(path):
        raise KnowtuneError(f"Refusing the cookie-signing key: {problem}, and whoever reads it can sign in as any user.",
                            fix=f"run `knowtune feedback rotate-key` (a new key, mode 0600), or `chmod 600 {path}`.")
    key = path.read_text().strip()
    if len(key) < 32:
        raise KnowtuneError(f"The cookie-signing key {path} is too short ({len(key)} characters).",
                            fix="run `knowtune feedback rotate-key` to make a new one.")
    return key


class SigningKey:
    """The key as the server uses it: read again whenever the file changed (a rotation replaces the file,
    so its inode changes), so `rotate-key` signs everyone out without a restart. One stat per request."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple | None = None
        self._key = ""

    def current(self) -> str:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return read_key(self.path)  # raises: a missing key refuses every cookie, it never falls back
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._key, self._stamp = read_key(self.path), stamp
        return self._key
