"""Sessions in a signed cookie, like Starlette's SessionMiddleware, with three differences the rating app
needs: the signing key is read from its file on every request (so `rotate-key` signs everyone out of a
running server), a cookie that fails to verify or decode is simply no session (never an error page), and
with `secure=True` the cookie is `Secure` and named `__Host-...`, which browsers only accept over HTTPS,
for this exact host and path /.

The cookie holds the user id and the user's session version; `app.current_user` compares that version with
the database on every request, which is what makes sign-out and disabling take effect (see store.User).
"""

from __future__ import annotations

import base64
import binascii
import json

from itsdangerous import BadSignature, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection

from knowtune.web.keyfile import SigningKey

COOKIE = "knowtune_session"


class SignedCookieSessions:
    """ASGI middleware: scope["session"] is a dict read from the cookie; a changed dict is signed back."""

    def __init__(self, app, key: SigningKey, max_age: int, secure: bool = False):
        self.app, self.key, self.max_age = app, key, max_age
        self.cookie = ("__Host-" if secure else "") + COOKIE
        self.flags = "Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        signer = TimestampSigner(self.key.current())
        sent = HTTPConnection(scope).cookies.get(self.cookie)
        session = self._load(signer, sent)
        scope["session"] = session
        before = json.dumps(session, sort_keys=True)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                changed = json.dumps(session, sort_keys=True) != before
                if changed or (sent and not session):  # a new session, or a dead cookie to clear
                    MutableHeaders(scope=message).append("Set-Cookie", self._set_cookie(signer, session))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _load(self, signer: TimestampSigner, sent: str | None) -> dict:
        if not sent:
            return {}
        try:
            data = json.loads(base64.b64decode(signer.unsign(sent.encode(), max_age=self.max_age), validate=True))
        except (BadSignature, UnicodeError, binascii.Error, ValueError):
            return {}  # forged, expired, signed with a rotated key, or garbage
        return data if isinstance(data, dict) else {}

    def _set_cookie(self, signer: TimestampSigner, session: dict) -> str:
        if not session:
            return f"{self.cookie}=; Max-Age=0; {self.flags}"
        value = signer.sign(base64.b64encode(json.dumps(session).encode())).decode()
        return f"{self.cookie}={value}; Max-Age={self.max_age}; {self.flags}"
