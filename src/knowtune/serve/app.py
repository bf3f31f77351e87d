"""`knowtune serve`: an OpenAI-compatible HTTP API for a base model or a taught run.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (legacy text completions),
both streaming as server-sent events with `"stream": true` the way OpenAI's clients read them, and `GET /health`,
which needs no key and answers even while the model is busy. Greedy decoding at temperature 0 (the default),
sampling above it.

Concurrency: one model thread answers one request at a time; the others wait in a first-in, first-out queue of
at most `Limits.queue_size`, and a request that finds it full gets 429 with `Retry-After` at once. Requests are
queued, not batched: batching would raise throughput for many short requests, but one generate call per request
is what lets each be streamed, stopped and timed out on its own, and for a small team's CPU server a queue with
a clear cap keeps every wait bounded and known. Nothing is dropped: a request is answered, or told to retry.

Limits, every refusal in OpenAI's error shape `{"error": {"message", "type", "param", "code"}}`:
- a body over `max_body_bytes` -> 413, from Content-Length or while reading (`httplimits.BodyLimit`), before
  anything parses it; a Content-Length that is not a number -> 400;
- bad JSON or a wrong field (OpenAI's ranges: 0 < top_p <= 1, 0 <= temperature <= 2, max_tokens >= 1, n = 1) -> 400;
- a prompt that fills the model's context -> 413 (max_tokens beyond the room it leaves is cut to that room);
- a full queue -> 429; a request still waiting when its `timeout_s` runs out -> 503, and a generation still
  running then is cut off there (finish_reason "length").
A generation stops at its next token once its client disconnects, its time is up or the server is stopping, and
an error in generation ends the stream with an error event, then `[DONE]`; so SIGTERM ends the process within
seconds. With an API key, every /v1 route needs `Authorization: Bearer KEY`.

http.py holds the request bodies, the error shape and its handlers; this file the model, its queue and the
routes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from knowtune.data.knowledge import question_text
from knowtune.httplimits import BodyLimit
from knowtune.models.precision import answering_precision
from knowtune.serve.http import (ApiError, ChatRequest, CompletionRequest, Sampling, bad_length, busy,
                                 install_error_handlers, invalid_request, require_key, too_large)

CHAT_MAX_TOKENS = 256  # max_tokens when a chat request names none (shrunk to fit the context)
TEXT_MAX_TOKENS = 16  # the same for /v1/completions: OpenAI's default there
RESULT_GRACE_S = 5.0  # past its timeout, how long a request waits for the model's last token before giving up
SHUTDOWN_GRACE_S = 3  # uvicorn's wait for open responses after SIGTERM: inside the 5 s supervisors usually allow


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server (`knowtune serve --help` explains each; its defaults match these)."""

    max_body_bytes: int = 1 << 20
    queue_size: int = 16
    timeout_s: float = 120.0


# ----------------------------------------------------------------------------- the model

class Stop(StoppingCriteria):
    """Ends a generation at its next token once the client has gone, its time is up, or the server is stopping:
    without it a generation nobody waits for holds the model (and SIGTERM) for up to max_tokens more steps."""

    def __init__(self, deadline: float = float("inf"), shutdown: threading.Event | None = None):
        self.deadline = deadline  # on time.monotonic()'s clock
        self.shutdown = shutdown or threading.Event()
        self.client_gone = threading.Event()

    def timed_out(self) -> bool:
        return time.monotonic() > self.deadline

    def fired(self) -> bool:
        return self.client_gone.is_set() or self.shutdown.is_set() or self.timed_out()

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.fired()


class _Pieces(TextStreamer):
    """Hands each piece of finished text to a callback as generate writes it (TextStreamer would print it)."""

    def __init__(self, tokenizer, on_text):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text = on_text

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.on_text(text)


_END = object()


class ChatModel:
    """A loaded model that answers chat messages or continues text, one request at a time."""

    def __init__(self, ref: str, name: str | None = None, log=print, min_confidence: float | None = None,
                 grounding=None):
        from knowtune.models.load import load_for_answering

        self.min_confidence = min_confidence  # below it a reply is replaced by a short refusal
        self.grounding = grounding  # a `grounding.Grounding`: ungrounded replies are replaced by a short refusal
        self.model, self.tokenizer = load_for_answering(ref, log=log)
        self.model.eval()
        self.name = name or Path(ref.rstrip("/")).name or ref
        self.lock = threading.Lock()
        self.created = int(time.time())
        self.context_length = _context_length(self.model, self.tokenizer)

    def encode(self, prompt: list[dict] | str) -> list[int]:
        """Token ids as the model sees them: chat messages through the chat template, text as it is."""
        from knowtune.eval.generate import render_prompt

        text = render_prompt(self.tokenizer, "chat" if isinstance(prompt, list) else "plain", prompt)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _gen_kwargs(self, max_tokens: int, temperature: float, top_p: float) -> dict:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        kw = {"max_new_tokens": max_tokens, "pad_token_id": pad, "eos_token_id": self.tokenizer.eos_token_id}
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kw.update(do_sample=False)
        return kw

    def generate(self, ids: list[int], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 on_text=None, stop: Stop | None = None, question: str | None = None) -> dict:
        """Write up to max_tokens after the prompt `ids`, giving on_text each piece as it comes (with a confidence
        floor, or a grounding check of the reply to `question`: the whole reply at its end, since only then is it
        known whether it is kept).

        Returns: text (as decoded, unstripped), prompt_tokens, completion_tokens, finish_reason ("length" when
        max_tokens or `stop`'s deadline cut it off)."""
        from knowtune.eval.calibration import decline_below
        from knowtune.eval.generate import token_confidence
        from knowtune.eval.grounding import grounded_or_decline
        from knowtune.text import DECLINE_TEXT

        floor, eos = self.min_confidence, self.tokenizer.eos_token_id
        checked = self.grounding if question else None
        inputs = torch.tensor([ids], device=self.model.device)  # (1, T)
        streamer = _Pieces(self.tokenizer, on_text) if on_text and floor is None and checked is None else None
        with self.lock, torch.no_grad(), answering_precision(self.model):
            out = self.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList([stop] if stop else []),
                                      output_scores=floor is not None, return_dict_in_generate=True,
                                      **self._gen_kwargs(max_tokens, temperature, top_p))
        new = out.sequences[0, len(ids):]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finished = bool(len(new)) and int(new[-1]) == eos
        if floor is not None:
            text = decline_below(text.strip(), token_confidence(out.scores, new.unsqueeze(0), eos)[0], floor)
        if checked is not None:
            text = grounded_or_decline(question, text.strip(), checked)
        if floor is not None or checked is not None:
            finished = finished or text == DECLINE_TEXT
            if on_text:
                on_text(text)
        cut = stop is not None and stop.timed_out()
        return {"text": text, "prompt_tokens": len(ids), "completion_tokens": int(len(new)),
                "finish_reason": "stop" if finished or (len(new) < max_tokens and not cut) else "length"}

    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0) -> dict:
        """The whole reply to chat messages at once (text stripped)."""
        r = self.generate(self.encode(messages), max_tokens, temperature, top_p)
        return {**r, "text": r["text"].strip()}

    def stream(self, messages: list[dict], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0):
        """Yield the reply's text pieces as they are generated; raises generation's error, and stops generating
        when the caller stops reading."""
        pieces: queue.Queue = queue.Queue()
        stop = Stop()

        def work():
            try:
                self.generate(self.encode(messages), max_tokens, temperature, top_p, on_text=pieces.put, stop=stop)
                pieces.put(_END)
            except Exception as exc:  # handed to the reader, who raises it
                pieces.put(exc)

        threading.Thread(target=work, daemon=True).start()
        try:
            while (piece := pieces.get()) is not _END:
                if isinstance(piece, Exception):
                    raise piece
                yield piece
        finally:
            stop.client_gone.set()


def _context_length(model, tokenizer) -> int:
    """The most tokens (prompt and answer together) the model was built for."""
    for field in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    # tokenizers without a limit report a huge sentinel; 2048 is the smallest context of current small models
    return tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else 2048


# ----------------------------------------------------------------------------- the queue and its worker

class Job:
    """One request's turn at the model. The model thread writes its events (text pieces, then "done" or
    "error"); the request's coroutine reads them, with call_soon_threadsafe as the bridge between the two."""

    def __init__(self, ids: list[int], max_tokens: int, temperature: float, top_p: float, stream: bool,
                 timeout_s: float, shutdown: threading.Event, question: str | None = None):
        self.ids, self.max_tokens, self.temperature, self.top_p = ids, max_tokens, temperature, top_p
        self.question = question  # what the grounding check (if any) judges the reply against
        self.timeout_s = timeout_s
        self.stop = Stop(time.monotonic() + timeout_s, shutdown)
        self.on_text = (lambda piece: self.send("text", piece)) if stream else None
        self.result: dict | None = None
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()

    def send(self, kind: str, value) -> None:
        """Called on the model thread."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop has closed: the server is gone and nobody is listening
            pass

    async def pieces(self):
        """Text pieces as they are written; after the last, `result` holds the answer. Raises generation's error,
        or 504 when the model thread says nothing until well past the timeout, so no client ever hangs."""
        while True:
            left = self.stop.deadline + RESULT_GRACE_S - time.monotonic()
            try:
                kind, value = await asyncio.wait_for(self._events.get(), timeout=max(left, 0.01))
            except TimeoutError:
                raise ApiError(504, f"No answer within the request timeout ({self.timeout_s:g} s).",
                               code="timeout") from None
            if kind == "error":
                raise value
            if kind == "done":
                self.result = value
                return
            yield value


class ModelWorker:
    """The one thread that runs the model, and the capped first-in, first-out queue of jobs in front of it."""

    def __init__(self, chat: ChatModel, queue_size: int, log=print):
        self.chat, self.log = chat, log
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=max(1, queue_size))  # maxsize 0 would mean no cap
        self.shutdown = threading.Event()  # set on SIGTERM: the running job and all waiting ones end at once
        threading.Thread(target=self._serve_forever, name="knowtune-model", daemon=True).start()

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it now (429) when the queue is full, rather than let waits grow without end."""
        if self.shutdown.is_set():
            raise busy("The server is shutting down.", 503, "shutting_down")
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise busy(f"The server is busy: {self.jobs.maxsize} requests already wait for the model.") from None

    def _serve_forever(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job.send("done", self._answer(job))
            except Exception as exc:  # every failure reaches the request, which ends its response with it
                if not isinstance(exc, ApiError):
                    self.log(f"Generation failed: {type(exc).__name__}: {exc}")
                job.send("error", exc)

    def _answer(self, job: Job) -> dict | None:
        if job.stop.client_gone.is_set():
            return None  # nobody waits for it any more
        if self.shutdown.is_set():
            raise busy("The server is shutting down.", 503, "shutting_down")
        if job.stop.timed_out():
            raise busy(f"The request waited its whole timeout ({job.timeout_s:g} s) for the model.", 503, "timeout")
        result = self.chat.generate(job.ids, job.max_tokens, job.temperature, job.top_p, job.on_text, job.stop,
                                    job.question)
        if self.shutdown.is_set():
            raise busy("The server is shutting down.", 503, "shutting_down")
        return result


def room_for_answer(prompt_tokens: int, asked: int | None, default: int, context: int, param: str) -> int:
    """max_tokens for a request: as asked (or the default), cut to the room the prompt leaves in the context, so
    a reply that reaches the end of the context stops there with finish_reason "length". 413 when the prompt
    leaves no room at all. (OpenAI refuses max_tokens beyond the room instead; a cap is read here as "at most",
    which keeps generous caps such as a document run's 400 tokens working on small-context models.)"""
    room = context - prompt_tokens
    if room < 1:
        raise ApiError(413, f"The prompt has {prompt_tokens:,} tokens, over this model's limit of {context - 1:,} "
                            f"(its context is {context:,} tokens, and the answer needs at least one). Shorten the "
                            "prompt.", param, "context_length_exceeded")
    return min(asked or default, room)


# ----------------------------------------------------------------------------- HTTP

def _sse(obj) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    return ApiError(500, f"Generation failed: {type(exc).__name__}: {exc}", code="generation_failed")


def _event_stream(chunks, job: Job):
    """Server-sent events for a job: its chunks, or an error event if it fails, and always `[DONE]` last."""
    async def events():
        try:
            async for chunk in chunks:
                yield _sse(chunk)
        except Exception as exc:  # generation failed or timed out: say so in the stream, then end it
            yield _sse(_as_api_error(exc).body())
        finally:
            job.stop.client_gone.set()  # the client left (or the job is done): the model stops at its next token
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


async def _chat_chunks(job: Job, head: dict):
    yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    async for piece in job.pieces():
        yield {**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
    yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": job.result["finish_reason"]}]}


async def _text_chunks(job: Job, head: dict):
    async for piece in job.pieces():
        yield {**head, "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]}
    end = job.result["finish_reason"]
    yield {**head, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": end}]}


async def _run_to_end(job: Job, request: Request) -> dict:
    """The job's result, stopping the model if the client disconnects while it waits."""
    async def watch():
        while (await request.receive())["type"] != "http.disconnect":
            pass
        job.stop.client_gone.set()

    watcher = asyncio.create_task(watch())
    try:
        async for _ in job.pieces():
            pass
        return job.result
    except Exception as exc:
        raise _as_api_error(exc) from exc
    finally:
        watcher.cancel()
        job.stop.client_gone.set()  # cancelled (server stopping) or done: either way the model may stop


def _usage(r: dict) -> dict:
    return {"prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
            "total_tokens": r["prompt_tokens"] + r["completion_tokens"]}


def create_app(chat: ChatModel, limits: Limits = Limits(), api_key: str | None = None, log=print):
    """The FastAPI app; `app.state.worker` is the model thread (set its `shutdown` to stop it)."""
    app = FastAPI(title="knowtune serve", version="1")
    app.add_middleware(BodyLimit, default=limits.max_body_bytes, too_large=too_large, bad_length=bad_length)
    install_error_handlers(app, log)
    worker = app.state.worker = ModelWorker(chat, limits.queue_size, log)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key(api_key))])

    async def parse(request: Request, model: type[Sampling]):
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            raise invalid_request(exc.errors(include_url=False)) from None

    async def queue_job(req: Sampling, prompt, default_tokens: int, param: str) -> Job:
        ids = await run_in_threadpool(chat.encode, prompt)  # off the event loop: /health keeps answering
        max_tokens = room_for_answer(len(ids), req.asked_tokens(), default_tokens, chat.context_length, param)
        job = Job(ids, max_tokens, req.temperature or 0.0, req.top_p or 1.0, bool(req.stream), limits.timeout_s,
                  worker.shutdown, question_text(prompt))
        worker.submit(job)
        return job

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": chat.name, "waiting": worker.jobs.qsize()}

    @v1.get("/models")
    async def models():
        return {"object": "list",
                "data": [{"id": chat.name, "object": "model", "created": chat.created, "owned_by": "knowtune"}]}

    @v1.post("/chat/completions")
    async def chat_completions(request: Request):
        req = await parse(request, ChatRequest)
        job = await queue_job(req, [m.model_dump() for m in req.messages], CHAT_MAX_TOKENS, "messages")
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if req.stream:
            head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": chat.name}
            return _event_stream(_chat_chunks(job, head), job)
        r = await _run_to_end(job, request)
        return {"id": cid, "object": "chat.completion", "created": created, "model": chat.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": r["text"].strip()},
                             "finish_reason": r["finish_reason"]}], "usage": _usage(r)}

    @v1.post("/completions")
    async def text_completions(request: Request):
        req = await parse(request, CompletionRequest)
        job = await queue_job(req, req.prompt, TEXT_MAX_TOKENS, "prompt")
        head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": chat.name}
        if req.stream:
            return _event_stream(_text_chunks(job, head), job)
        r = await _run_to_end(job, request)
        return {**head, "usage": _usage(r),
                "choices": [{"index": 0, "text": r["text"], "logprobs": None, "finish_reason": r["finish_reason"]}]}

    app.include_router(v1)
    return app


# ----------------------------------------------------------------------------- running it

def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`: localhost, 127.x.x.x or ::1 (0.0.0.0 means every network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to an address others can reach


def binding_warning(host: str, api_key: str | None) -> str | None:
    """The warning to print when others may reach the server and no key keeps them out."""
    if api_key or is_loopback(host):
        return None
    return (f"WARNING: listening on {host} with no API key: anyone who can reach this machine can use the model. "
            "Set a key with --api-key or the KNOWTUNE_API_KEY environment variable (clients then send "
            "`Authorization: Bearer KEY`), or listen on 127.0.0.1 only.")


class _Server(uvicorn.Server):
    """uvicorn's server, which on SIGTERM or Ctrl-C also stops the model thread: generations end at their next
    token, open responses finish (with an error event), and the graceful wait is over in well under a second."""

    def __init__(self, config: uvicorn.Config, model_shutdown: threading.Event):
        super().__init__(config)
        self.model_shutdown = model_shutdown

    def handle_exit(self, sig, frame) -> None:
        self.model_shutdown.set()
        super().handle_exit(sig, frame)


def serve(ref: str, host: str = "127.0.0.1", port: int = 8000, name: str | None = None, log=print,
          min_confidence: float | None = None, api_key: str | None = None, limits: Limits = Limits(),
          grounded: bool = False) -> None:
    from knowtune.eval.grounding import Grounding

    warning = binding_warning(host, api_key)
    if warning:
        log(warning)  # before loading, so it is seen at once
    grounding = Grounding.of_run(ref) if grounded else None
    chat = ChatModel(ref, name, log=log, min_confidence=min_confidence, grounding=grounding)
    app = create_app(chat, limits, api_key, log)
    log(f"Serving {chat.name} at http://{host}:{port}/v1 (OpenAI-compatible; "
        f"{'API key required' if api_key else 'no API key'}; context {chat.context_length:,} tokens; "
        f"queue {limits.queue_size}; timeout {limits.timeout_s:g} s; Ctrl-C stops).")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    _Server(config, app.state.worker.shutdown).run()
