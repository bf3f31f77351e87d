"""The HTTP face of `knowtune serve`: the request bodies it accepts, with OpenAI's ranges, and every refusal in
OpenAI's error shape `{"error": {"message", "type", "param", "code"}}` (the API key's 401, a wrong field's 400,
a full queue's 429, a body over the cap's 413), never FastAPI's `{"detail": ...}` nor a bare 500. app.py has
the model, its queue and the routes.
"""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

MAX_TOKENS_CAP = 4096  # the most one request may ask for: minutes of CPU for the default model already
RETRY_AFTER_S = 1  # what a 429/503 asks a client to wait; OpenAI's clients add their own backoff on top


# ----------------------------------------------------------------------------- requests

class _Strict(BaseModel):
    # strict, as OpenAI is: "0.5" is not a number; fields this server does not use (user, seed, ...) are ignored
    model_config = ConfigDict(strict=True, extra="ignore")


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class Sampling(_Strict):
    """Fields chat and text completions share, with OpenAI's ranges."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_CAP)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_CAP)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=1)  # one answer per request
    stream: bool | None = None

    def asked_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str = Field(min_length=1)


# ----------------------------------------------------------------------------- errors

class ApiError(Exception):
    """A refusal or failure answered in OpenAI's error shape, with its HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def busy(message: str, status: int = 429, code: str = "queue_full") -> ApiError:
    return ApiError(status, f"{message} Retry after {RETRY_AFTER_S} s.", code=code,
                    headers={"Retry-After": str(RETRY_AFTER_S)})


def invalid_request(errors: list[dict]) -> ApiError:
    """A 400 for the first thing wrong in a request, worded for people: which field, what was wrong, what came."""
    err = errors[0]
    param = _param_name(err["loc"]) or None
    if err["type"] == "json_invalid":
        return ApiError(400, f"The request body is not valid JSON ({err['msg']}).", code="invalid_json")
    if err["type"] == "missing":
        return ApiError(400, f"Missing required parameter '{param}'.", param, "missing_required_parameter")
    code = "invalid_type" if err["type"].endswith(("_type", "_parsing")) else "invalid_value"
    where = f"'{param}'" if param else "request body"
    got = repr(err.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    return ApiError(400, f"Invalid {where}: {err['msg']} (got {got}).", param, code)


def _param_name(loc) -> str:
    """pydantic's ('body', 'messages', 0, 'role') as OpenAI names it: messages[0].role."""
    name = ""
    for part in loc:
        if part == "body" and not name:
            continue
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def too_large(limit: int) -> JSONResponse:
    """The 413 for a body over the cap (`httplimits.BodyLimit` answers with it)."""
    return ApiError(413, f"The request body is over this server's limit of {limit:,} bytes "
                         "(knowtune serve --max-body).", code="request_too_large").response()


def bad_length() -> JSONResponse:
    """The 400 for a Content-Length that is not a number of bytes (`httplimits.BodyLimit` answers with it)."""
    return ApiError(400, "Content-Length must be a number of bytes.", code="invalid_content_length").response()


def require_key(api_key: str | None):
    """A FastAPI dependency: 401 unless `Authorization: Bearer <api_key>` (compared in constant time)."""
    async def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), api_key.encode()):
            raise ApiError(401, "Missing or wrong API key: send the header `Authorization: Bearer KEY` with this "
                                "server's key.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    return check


def install_error_handlers(app, log) -> None:
    """Every error in OpenAI's shape: never FastAPI's `{"detail": ...}`, never a bare 500."""
    app.add_exception_handler(ApiError, lambda request, exc: exc.response())
    app.add_exception_handler(RequestValidationError,
                              lambda request, exc: invalid_request(list(exc.errors())).response())

    def http_error(request, exc: HTTPException):
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}. This server has "
                        "/v1/models, /v1/chat/completions, /v1/completions and /health.", code=str(exc.status_code),
                        headers=exc.headers).response()

    def crash(request, exc: Exception):
        log(f"Internal error on {request.url.path}: {type(exc).__name__}: {exc}")
        return ApiError(500, f"Internal server error ({type(exc).__name__}).", code="internal_error").response()

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, crash)
