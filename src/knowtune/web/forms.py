"""Reading what clients send, in the order that keeps strangers cheap: size first, then who, then the body.

- `httplimits.BodyLimit` (installed by app.py) refuses a body over its path's limit with 413: by its
  Content-Length before a byte is read, and by counting the bytes as they arrive (a chunked body has no
  length). Every form but the prompt import is small (FORM_LIMIT); only /admin/import may be large (UPLOAD_LIMIT).
- `read_form` parses a small urlencoded form (no files, few fields).
- `read_upload` is for the import, which app.py only calls for a signed-in admin (that check needs the
  cookie alone). Its CSRF token is the form's first part, checked as soon as that part has arrived and
  before the file is read: the browser sends fields in page order and the hidden csrf_token input comes
  first, `curl -F csrf_token=... -F file=@x` does the same, and the token never has to go into a URL
  (where proxy logs would keep it) or a header (which a plain HTML form cannot set).
- `parse_prompt_upload` turns the file into prompt rows or a DataError (never a crash on odd input).
"""

from __future__ import annotations

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from knowtune.data import preference
from knowtune.errors import DataError
from knowtune.httplimits import RequestTooLarge  # raised by BodyLimit; app.py answers it with its error page
from knowtune.web import auth

FORM_LIMIT = 256 * 1024  # a rating with a 20,000-character correction, percent-encoded, fits
UPLOAD_LIMIT = 20 * 1024 * 1024
FIRST_PART_LIMIT = 4096  # the csrf_token part and its headers, with room to spare
CSRF_EXPIRED = ("This form has expired or did not come from this site (missing or wrong CSRF token). "
                "Go back, reload the page and try again.")


class BadRequest(Exception):
    """400: the request is malformed; the message says what to do."""


class CsrfRefused(Exception):
    """403: the form's CSRF token is missing or wrong."""


def too_large(limit: int) -> PlainTextResponse:
    """The 413 `BodyLimit` answers by Content-Length, before the app runs (a body cut off while it is read
    raises RequestTooLarge instead, which app.py answers with its error page)."""
    return PlainTextResponse(str(RequestTooLarge(limit)), status_code=413)


async def read_form(request: Request) -> FormData:
    """A small urlencoded (or file-less multipart) form; BadRequest when it is malformed."""
    try:
        return await request.form(max_files=0, max_fields=50, max_part_size=FORM_LIMIT)
    except MultiPartException as exc:  # raised as HTTPException(400) inside an app; kept for direct callers
        raise BadRequest(f"The form could not be read: {exc.message}") from exc


def check_csrf(session: dict, sent) -> None:
    if auth.csrf_malformed(sent):
        raise BadRequest("The form's CSRF token is malformed (it must be the token the page gave). "
                         "Reload the page and try again.")
    if not auth.csrf_ok(session, sent):
        raise CsrfRefused(CSRF_EXPIRED)


class _FirstPart:
    """python-multipart callbacks that keep the first part's Content-Disposition and data."""

    def __init__(self):
        self.header, self.value, self.disposition = b"", b"", b""
        self.data = bytearray()
        self.ended = False

    def callbacks(self) -> dict:
        def header_field(d, s, e):
            self.header += d[s:e]

        def header_value(d, s, e):
            self.value += d[s:e]

        def header_end():
            if not self.ended and self.header.lower() == b"content-disposition":
                self.disposition = self.value
            self.header, self.value = b"", b""

        def part_data(d, s, e):
            if not self.ended:
                self.data += d[s:e]

        def part_end():
            self.ended = True

        return {"on_header_field": header_field, "on_header_value": header_value, "on_header_end": header_end,
                "on_part_data": part_data, "on_part_end": part_end}

    def csrf_token(self) -> str | None:
        """The token if the first part is a csrf_token field, else None (bytes that are not UTF-8 become
        U+FFFD, which no token holds: `check_csrf` calls that malformed)."""
        _, options = parse_options_header(self.disposition)
        if options.get(b"name") != b"csrf_token" or b"filename" in options:
            return None
        return self.data.decode("utf-8", errors="replace")


async def read_upload(request: Request, max_files: int = 1, max_fields: int = 4) -> FormData:
    """The multipart form of an upload, whose first part must be a valid csrf_token field (checked before the
    rest of the body is read). Raises BadRequest, CsrfRefused or RequestTooLarge."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadRequest("Send the file as multipart/form-data (the admin page's import form does).")
    first = _FirstPart()
    parser = MultipartParser(params[b"boundary"], first.callbacks())
    stream, seen = request.stream(), []
    try:
        async for chunk in stream:
            seen.append(chunk)
            parser.write(chunk)
            if first.ended or sum(map(len, seen)) > FIRST_PART_LIMIT:
                break
    except FormParserError as exc:
        raise BadRequest("The upload is not valid multipart/form-data.") from exc
    check_csrf(request.session, first.csrf_token() if first.ended else None)

    async def replay():
        for chunk in seen:
            yield chunk
        async for chunk in stream:
            yield chunk

    try:
        return await MultiPartParser(request.headers, replay(), max_files=max_files, max_fields=max_fields,
                                     max_part_size=FIRST_PART_LIMIT).parse()
    except MultiPartException as exc:
        raise BadRequest(f"The upload could not be read: {exc.message}") from exc


def parse_prompt_upload(raw: bytes, name: str) -> list[dict]:
    """Prompt rows from an uploaded JSONL file; DataError for text that is not UTF-8 or not prompt rows,
    including JSON nested too deeply for the parser (a line of 100,000 '[')."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not UTF-8 text (byte {exc.start} cannot be read).",
                        fix="save it as UTF-8 JSONL and import it again.") from exc
    try:
        return preference.parse_prompt_lines(text, name)
    except RecursionError as exc:
        raise DataError(f"{name} has a line nested too deeply (brackets within brackets) to be a prompt row.",
                        fix='each line must be {"prompt": "...", "reference": "...", "answers": ["...", "..."]}; '
                            "nothing was imported.") from exc
