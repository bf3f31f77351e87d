"""A cap on request bodies, shared by both servers (`knowtune serve` and `knowtune feedback serve`).

`BodyLimit` is ASGI middleware with a limit per path and a default for every other path:
- a Content-Length over the limit gets 413 before a byte of the body is read, and one that is not a number of
  bytes gets 400 (uvicorn itself refuses most of those; other servers and test clients may not);
- a body with no length (chunked) is counted as the app reads it, and `RequestTooLarge` is raised inside the
  app's `receive` the moment the count passes the limit, so an endless upload is cut off there.
Each server says how a refusal looks: `too_large(limit)` returns the 413 (OpenAI's error shape for serve, plain
text for the web app). An app may catch `RequestTooLarge` itself (the web app renders its error page); when it
does not, the exception comes back out here and `too_large` answers, unless the response has already begun.
Every refusal says `Connection: close`, as the client may still be sending the rest of the body.

Why counting rather than buffering the whole body first and replaying it: buffering reads every byte before
the app can say no, and the web app must refuse a stranger's 15 MB import from its cookie alone, then check
the form's CSRF token from the first part, before the rest is read. Counting leaves the reading to the app, in
its own order, and still cuts off a body the moment it passes its limit, which is all serve needs: it reads
the whole body before parsing it, so nothing parses a body over the cap.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response


class RequestTooLarge(Exception):
    """Raised from `receive` once a body has passed its limit: 413."""

    def __init__(self, limit: int):
        super().__init__(f"This request is larger than the {limit // 1024} KiB this page accepts.")
        self.limit = limit


def plain_bad_length() -> Response:
    """The 400 for a Content-Length that is not a number of bytes (`BodyLimit`'s default)."""
    return PlainTextResponse("Content-Length must be a number of bytes.", status_code=400)


class BodyLimit:
    """ASGI middleware: 413 for a request body over its path's limit (see the module docstring).

    Args:
        default: the limit in bytes for a path not in `limits`.
        too_large: the 413 response for a limit, in the server's own error shape.
        limits: path -> limit in bytes, for the paths that differ from the default.
        bad_length: the 400 response for a Content-Length that is not a number.
    """

    def __init__(self, app, default: int, too_large: Callable[[int], Response], limits: dict[str, int] | None = None,
                 bad_length: Callable[[], Response] = plain_bad_length):
        self.app, self.default, self.too_large, self.bad_length = app, default, too_large, bad_length
        self.limits = limits or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default)
        length = Headers(scope=scope).get("content-length")
        if length is not None and not length.isdigit():
            return await _closing(self.bad_length())(scope, receive, send)
        if length is not None and int(length) > limit:
            return await _closing(self.too_large(limit))(scope, receive, send)  # answered with the body unread
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge(limit)
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except RequestTooLarge:
            if started:
                raise  # too late to answer: the server closes the connection
            await _closing(self.too_large(limit))(scope, receive, send)


def _closing(response: Response) -> Response:
    response.headers["Connection"] = "close"
    return response
