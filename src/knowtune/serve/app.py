"""`knowtune serve`: an OpenAI-compatible HTTP API for a base model or a taught run.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` (with `"stream": true` as server-sent events, the
way OpenAI's clients read them), `GET /health`. One model per server; requests are answered one at a time
(a lock around generation), which is what a CPU serves best. Greedy decoding at temperature 0 (the
default), sampling above it. Bind to 127.0.0.1 unless you mean to expose it: there is no authentication.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import torch


class ChatModel:
    """A loaded model that answers chat messages, one request at a time."""

    def __init__(self, ref: str, name: str | None = None, log=print, min_confidence: float | None = None):
        from knowtune.models.load import load_for_inference

        self.min_confidence = min_confidence  # below it a reply is replaced by a short refusal
        self.model, self.tokenizer = load_for_inference(ref, log=log)
        self.model.eval()
        self.name = name or Path(ref.rstrip("/")).name or ref
        self.lock = threading.Lock()
        self.created = int(time.time())

    def _inputs(self, messages: list[dict]):
        from knowtune.eval.generate import render_prompt

        text = render_prompt(self.tokenizer, "chat", messages)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        return {k: v.to(self.model.device) for k, v in ids.items()}

    def _gen_kwargs(self, max_tokens: int, temperature: float, top_p: float) -> dict:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        kw = {"max_new_tokens": max_tokens, "pad_token_id": pad, "eos_token_id": self.tokenizer.eos_token_id}
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kw.update(do_sample=False)
        return kw

    @torch.no_grad()
    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0) -> dict:
        inputs = self._inputs(messages)
        from knowtune.eval.calibration import DECLINE_TEXT, decline_below
        from knowtune.eval.generate import token_confidence

        floor = self.min_confidence
        with self.lock:
            out = self.model.generate(**inputs, **self._gen_kwargs(max_tokens, temperature, top_p),
                                      output_scores=floor is not None, return_dict_in_generate=True)
        new = out.sequences[0, inputs["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        finished = bool(len(new)) and int(new[-1]) == self.tokenizer.eos_token_id
        if floor is not None:
            text = decline_below(text, token_confidence(out.scores, new.unsqueeze(0), self.tokenizer.eos_token_id)[0], floor)
            finished = finished or text == DECLINE_TEXT
        return {"text": text, "prompt_tokens": int(inputs["input_ids"].shape[1]), "completion_tokens": int(len(new)),
                "finish_reason": "stop" if finished or len(new) < max_tokens else "length"}

    def stream(self, messages: list[dict], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0):
        """Yield text pieces as they are generated (with a confidence floor: the whole reply at once, since
        whether it is kept is known only at its end)."""
        from transformers import TextIteratorStreamer

        if self.min_confidence is not None:
            yield self.complete(messages, max_tokens, temperature, top_p)["text"]
            return
        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        kwargs = {**inputs, **self._gen_kwargs(max_tokens, temperature, top_p), "streamer": streamer}

        def work():
            with self.lock, torch.no_grad():
                self.model.generate(**kwargs)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        for piece in streamer:
            if piece:
                yield piece
        thread.join()


def create_app(chat: ChatModel):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="knowtune serve", version="1")

    @app.exception_handler(HTTPException)
    async def openai_error(request: Request, exc: HTTPException):  # OpenAI's error shape
        return JSONResponse({"error": {"message": exc.detail, "type": "invalid_request_error", "code": exc.status_code}},
                            status_code=exc.status_code)

    @app.get("/health")
    def health():
        return {"status": "ok", "model": chat.name}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": chat.name, "object": "model", "created": chat.created, "owned_by": "knowtune"}]}

    @app.post("/v1/chat/completions")
    def completions(body: dict):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
                for m in messages):
            raise HTTPException(400, "`messages` must be a non-empty list of {role: system|user|assistant, content: str}.")
        if int(body.get("n") or 1) != 1:
            raise HTTPException(400, "Only n=1 is supported.")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 0.0)
        top_p = float(body.get("top_p") if body.get("top_p") is not None else 1.0)
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096 or not 0 <= temperature <= 2:
            raise HTTPException(400, "max_tokens must be 1..4096 and temperature 0..2.")
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.get("stream"):
            def events():
                head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": chat.name}
                yield _sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
                for piece in chat.stream(messages, max_tokens, temperature, top_p):
                    yield _sse({**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                yield _sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        r = chat.complete(messages, max_tokens, temperature, top_p)
        return {"id": cid, "object": "chat.completion", "created": created, "model": chat.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": r["text"]},
                             "finish_reason": r["finish_reason"]}],
                "usage": {"prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
                          "total_tokens": r["prompt_tokens"] + r["completion_tokens"]}}

    return app


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def serve(ref: str, host: str = "127.0.0.1", port: int = 8000, name: str | None = None, log=print,
          min_confidence: float | None = None) -> None:
    import uvicorn

    chat = ChatModel(ref, name, log=log, min_confidence=min_confidence)
    log(f"Serving {chat.name} at http://{host}:{port}/v1 (OpenAI-compatible; Ctrl-C stops).")
    uvicorn.run(create_app(chat), host=host, port=port, log_level="warning")
