"""`knowtune serve` over real HTTP on 127.0.0.1, used as the generator endpoint of a documents run; and
a misbehaving endpoint (timeouts, 500s, malformed JSON) that must give bounded retries and lose nothing."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import start_server
from knowtune.augment.backends import Cached, GeneratorError, OpenAIChat


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KNOWTUNE_HOME": str(tmp_path_factory.mktemp("home"))}
    proc, url = start_server(["serve", str(tiny_model), "--name", "tiny"], env)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def post(url: str, body: dict):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=120)


def test_models_completions_and_streaming(served):
    models = json.load(urllib.request.urlopen(served + "/v1/models"))
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    msgs = [{"role": "user", "content": "Who founded Brindlemoor Kite Works?"}]
    r = json.load(post(served + "/v1/chat/completions", {"model": "tiny", "messages": msgs, "max_tokens": 8}))
    assert r["object"] == "chat.completion" and r["choices"][0]["message"]["role"] == "assistant"
    assert 1 <= r["usage"]["completion_tokens"] <= 8 and r["choices"][0]["finish_reason"] in ("stop", "length")
    text = r["choices"][0]["message"]["content"]
    with post(served + "/v1/chat/completions", {"model": "tiny", "messages": msgs, "max_tokens": 8, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in resp.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed.strip() == text  # greedy: the stream spells the same answer
    with pytest.raises(urllib.error.HTTPError) as bad:
        post(served + "/v1/chat/completions", {"messages": [{"role": "robot"}]})
    assert bad.value.code == 400 and "messages" in json.load(bad.value)["error"]["message"]


def test_documents_run_end_to_end_with_served_generator(served, tiny_model, tmp_path, monkeypatch):
    """The generator path against `knowtune serve` for real; a rerun is answered from the cache."""
    from knowtune.train import lifecycle
    from knowtune.train.methods.teach import Teach, TeachSettings, prepare_knowledge

    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Ropery\n\nThe Old Ropery was founded by Ada Quell in 1901. It employs 40 people.\n")
    (docs / "b.txt").write_text("The Orrin Glassworks is in Bexmoor. Its kiln is called \"Big Bessie\".\n")
    s = TeachSettings(data=[str(docs)], model=str(tiny_model), out="runs/gen", generator=served + "/v1",
                      generator_model="tiny", max_steps=2, epochs=1, min_epochs=0, paraphrases=1, questions_per_fact=1)
    logs = []
    result = lifecycle.run(Teach(), s, log=logs.append)
    new_answers = lambda: int(re.search(r", (\d+) new\)", next(m for m in logs if m.startswith("Generator:"))).group(1))  # noqa: E731
    assert new_answers() > 0
    assert (tmp_path / "runs/gen/adapter/adapter_config.json").exists() and result.after["retention"]
    cover = [json.loads(x) for x in (tmp_path / "runs/gen/data/coverage.jsonl").read_text().splitlines()]
    assert cover and all(r["source"] for r in cover)
    assert "## Coverage" in (tmp_path / "runs/gen/report.md").read_text()
    logs.clear()
    prepare_knowledge(s, log=logs.append)
    assert new_answers() == 0  # all from the cache


class _Flaky(BaseHTTPRequestHandler):
    mode = "ok"
    ok_left = 0
    calls = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        cls = type(self)
        cls.calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if cls.ok_left > 0:
            cls.ok_left -= 1
            return self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": f"answer {cls.calls}"}}]}))
        if cls.mode == "slow":
            time.sleep(1.5)
            return self._send(200, "{}")
        if cls.mode == "500":
            return self._send(500, "oops")
        return self._send(200, "{not json")

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body.encode())
        except OSError:
            pass


@pytest.fixture
def flaky():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("mode", ["slow", "500", "malformed"])
def test_bad_endpoint_retries_a_bounded_number_of_times(flaky, mode):
    _Flaky.mode, _Flaky.ok_left, _Flaky.calls = mode, 0, 0
    gen = OpenAIChat(f"http://127.0.0.1:{flaky.server_address[1]}", timeout=0.5, retries=2, backoff=0.01, concurrency=1)
    with pytest.raises(GeneratorError, match="failed 3 times") as exc:
        gen.one([{"role": "user", "content": "hi"}])
    assert _Flaky.calls == 3
    assert {"slow": "Timeout", "500": "HTTP 500", "malformed": "malformed"}[mode].lower() in exc.value.message.lower()
    assert "resumes" in exc.value.fix


def test_interrupted_generation_keeps_answers_and_resumes(flaky, tmp_path):
    _Flaky.mode, _Flaky.ok_left, _Flaky.calls = "500", 3, 0
    url = f"http://127.0.0.1:{flaky.server_address[1]}"
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    cache = tmp_path / "cache.jsonl"
    gen = Cached(OpenAIChat(url, retries=1, backoff=0.01, concurrency=1), cache, batch_size=1)
    with pytest.raises(GeneratorError):
        gen.complete(convs)
    assert len(cache.read_text().splitlines()) == 3  # the three answers received are on disk
    with open(cache, "a") as f:
        f.write('{"key": "torn')  # a line cut short by a kill
    _Flaky.mode, _Flaky.ok_left, _Flaky.calls = "500", 10, 0
    again = Cached(OpenAIChat(url, retries=1, backoff=0.01, concurrency=1), cache, batch_size=1)
    out = again.complete(convs)
    assert _Flaky.calls == 2 and again.hits == 3 and again.misses == 2  # only the missing two were asked
    assert out[:3] == ["answer 1", "answer 2", "answer 3"]
    third = Cached(OpenAIChat(url), cache)
    assert third.complete(convs) == out and third.misses == 0


def test_a_confidence_floor_turns_unsure_replies_into_refusals(tiny_model):
    from knowtune.serve.app import ChatModel
    from knowtune.text import DECLINE_TEXT

    msgs = [{"role": "user", "content": "Who founded the society?"}]
    free = ChatModel(str(tiny_model), log=lambda *a: None).complete(msgs, 8)
    assert free["text"] != DECLINE_TEXT
    strict = ChatModel(str(tiny_model), log=lambda *a: None, min_confidence=1.0)
    assert strict.complete(msgs, 8)["text"] == DECLINE_TEXT  # a random tiny model is never certain
    assert "".join(strict.stream(msgs, 8)) == DECLINE_TEXT
