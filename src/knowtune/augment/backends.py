"""Generator backends: one interface, two real implementations, and a disk cache in front of either.

- `OpenAIChat`: any OpenAI-compatible `/v1/chat/completions` endpoint (base URL, model name, API key from
  an environment variable). Requests run a few at a time; timeouts, connection errors, HTTP 429 / 5xx and
  malformed JSON are retried with exponential backoff, a bounded number of times.
- `LocalModel`: any model knowtune can load (alias, folder, run), batched greedy generation.
- `Cached`: every answer is appended to a JSONL file under its content hash as soon as it arrives, so a
  rerun costs nothing and an interrupted generation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from knowtune.errors import KnowtuneError

Conversation = list[dict]  # chat messages


class GeneratorError(KnowtuneError):
    pass


class Generator(Protocol):
    name: str  # backend + model: part of every cache key

    def complete(self, conversations: list[Conversation], max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        ...


class _Retryable(Exception):
    pass


class OpenAIChat:
    def __init__(self, base_url: str, model: str = "default", api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, retries: int = 4, backoff: float = 1.0, concurrency: int = 4):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model, self.api_key_env = model, api_key_env
        self.timeout, self.retries, self.backoff, self.concurrency = timeout, retries, backoff, concurrency
        self.name = f"openai:{self.base_url}:{model}"

    def complete(self, conversations: list[Conversation], max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda c: self.one(c, max_tokens, temperature), conversations))

    def one(self, messages: Conversation, max_tokens: int = 256, temperature: float = 0.0) -> str:
        payload = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return self._post(payload)
            except _Retryable as exc:
                last = str(exc)
                if attempt < self.retries:
                    time.sleep(self.backoff * 2 ** attempt)
        raise GeneratorError(f"The generator at {self.base_url} failed {self.retries + 1} times; last error: {last}.",
                             fix="check that the endpoint is up (curl its /models), the model name and the API key; "
                                 "answers received so far are cached, so running the same command again resumes.")

    def _post(self, payload: dict) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(payload).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
            detail = exc.read()[:300].decode(errors="replace")
            raise GeneratorError(f"The generator at {self.base_url} refused the request: HTTP {exc.code} {detail}",
                                 fix="check the model name and the API key (read from ${})."
                                     .format(self.api_key_env)) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from exc
        try:
            return json.loads(body)["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retryable(f"malformed response ({body[:120]!r})") from exc


class LocalModel:
    def __init__(self, ref: str, batch_size: int = 16, log=print):
        self.ref, self.batch_size, self.log = ref, batch_size, log
        self.model = self.tokenizer = None  # loaded on first use: a fully cached rerun never loads it
        self.name = f"local:{Path(ref).resolve() if Path(ref).exists() else ref}"

    def complete(self, conversations: list[Conversation], max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        """Greedy answers (temperature is ignored: the cache must give the same answer as a rerun)."""
        from knowtune.eval.generate import GenerationSettings, generate_answers
        from knowtune.models.load import load_for_inference

        if self.model is None:
            self.model, self.tokenizer = load_for_inference(self.ref, log=self.log)
        return generate_answers(self.model, self.tokenizer, [("chat", c) for c in conversations],
                                GenerationSettings(max_new_tokens=max_tokens, batch_size=self.batch_size))


def cache_key(name: str, messages: Conversation, max_tokens: int, temperature: float) -> str:
    blob = json.dumps({"backend": name, "messages": messages, "max_tokens": max_tokens, "temperature": temperature},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class Cached:
    """A generator with an append-only answer cache (one JSON line per answer, keyed by content hash)."""

    def __init__(self, inner: Generator, path: str | Path, batch_size: int = 16):
        self.inner, self.path, self.batch_size = inner, Path(path), batch_size
        self.name = inner.name
        self.hits = self.misses = 0
        self.answers: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:  # a line cut short by a kill is skipped; its answer is asked again
                    row = json.loads(line)
                    self.answers[row["key"]] = row["output"]
                except (ValueError, KeyError, TypeError):
                    continue

    def complete(self, conversations: list[Conversation], max_tokens: int = 256, temperature: float = 0.0,
                 progress=None) -> list[str]:
        keys = [cache_key(self.name, c, max_tokens, temperature) for c in conversations]
        todo = list(dict.fromkeys(k for k in keys if k not in self.answers))
        self.hits += len(keys) - len(todo)
        by_key = dict(zip(keys, conversations))
        if progress:
            progress(len(keys) - len(todo))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            outputs = self.inner.complete([by_key[k] for k in batch], max_tokens, temperature)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
            with open(self.path, "a", encoding="utf-8") as f:
                if torn:  # the last line was cut short by a kill: start a fresh line
                    f.write("\n")
                for k, out in zip(batch, outputs):
                    self.answers[k] = out
                    f.write(json.dumps({"key": k, "output": out}, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.misses += len(batch)
            if progress:
                progress(sum(keys.count(k) for k in batch))
        return [self.answers[k] for k in keys]


def make_generator(spec: str, model: str = "default", api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                   retries: int = 4, cache_dir: str | Path | None = None, log=print) -> Cached:
    """An http(s) URL -> OpenAIChat; anything else -> LocalModel (alias, folder, run). Always cached."""
    from knowtune.models.fetch import knowtune_home

    if spec.startswith(("http://", "https://")):
        inner: Generator = OpenAIChat(spec, model, api_key_env, timeout, retries)
    else:
        inner = LocalModel(spec, log=log)
    folder = Path(cache_dir) if cache_dir else knowtune_home() / "generations"
    return Cached(inner, folder / (hashlib.sha256(inner.name.encode()).hexdigest()[:16] + ".jsonl"))
