"""`knowtune serve` hardened, driven over real HTTP on 127.0.0.1 by the official `openai` client: the API key,
body and prompt caps, OpenAI-shaped 400s, legacy completions, generation errors that end the stream, a capped
queue under 16 concurrent clients, timeouts, client disconnects, and SIGTERM with requests in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from conftest import build_tiny_model, start_server

KEY = "test-key-3f9a1c"
MAX_BODY = 65_536
TIMEOUT_S = 30  # the shared server's --timeout
SLOW_TIMEOUT_S = 3  # the slow server's --timeout
HI = [{"role": "user", "content": "Who founded Brindlemoor Kite Works?"}]


def _env(tmp_path_factory, **extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "KNOWTUNE_HOME": str(tmp_path_factory.mktemp("home")),
            "OMP_NUM_THREADS": "1", **extra}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    """The tiny model behind a key (from KNOWTUNE_API_KEY), a 64 KiB body cap and a queue of 4."""
    args = ["serve", str(tiny_model), "--name", "tiny", "--max-body", str(MAX_BODY), "--queue", "4",
            "--timeout", str(TIMEOUT_S)]
    proc, url = start_server(args, _env(tmp_path_factory, KNOWTUNE_API_KEY=KEY))
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory) -> Path:
    """A deeper random model (about 10 ms a token here) with room for 2,000-token replies: long enough that a
    cut-off or a stopped generation shows in the time a request takes. Llama's rotary positions work at any
    length, so raising max_position_embeddings only widens the context the server allows."""
    folder = build_tiny_model(tmp_path_factory.mktemp("slow") / "model", hidden=256, layers=16)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    return folder


@pytest.fixture(scope="module")
def slow_served(slow_model, tmp_path_factory):
    proc, url = start_server(["serve", str(slow_model), "--name", "slow", "--timeout", str(SLOW_TIMEOUT_S)],
                             _env(tmp_path_factory))
    yield url
    _stop(proc)


def client(url: str, key: str | None = KEY, timeout: float = 60) -> openai.OpenAI:
    # max_retries=0: a 429 or 503 must reach the test, not be retried away inside the client
    return openai.OpenAI(base_url=url + "/v1", api_key=key or "none", max_retries=0, timeout=timeout)


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    assert body["error"]["message"] and body["error"]["type"] == kind
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def post(url: str, content, key: str | None = KEY, path: str = "/v1/chat/completions") -> httpx.Response:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return httpx.post(url + path, content=content, headers=headers, timeout=30)


@pytest.mark.timeout(60)
def test_the_api_key_is_required_but_health_stays_open(served):
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(served, key="not-the-key").chat.completions.create(model="tiny", messages=HI, max_tokens=2)
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    for path in ("/v1/models", "/v1/chat/completions", "/v1/completions"):
        missing = httpx.request("GET" if path == "/v1/models" else "POST", served + path, json={}, timeout=10)
        assert_openai_error(missing, 401, "invalid_api_key")
        assert missing.headers["www-authenticate"] == "Bearer"
    assert httpx.get(served + "/health", timeout=5).json()["status"] == "ok"  # no key needed
    assert [m.id for m in client(served).models.list().data] == ["tiny"]


@pytest.mark.timeout(60)
def test_chat_streaming_and_text_completions_through_the_openai_client(served):
    api = client(served)
    chat = api.chat.completions.create(model="tiny", messages=HI, max_tokens=6)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert 1 <= chat.usage.completion_tokens <= 6 and chat.choices[0].finish_reason in ("stop", "length")
    chunks = list(api.chat.completions.create(model="tiny", messages=HI, max_tokens=6, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip() == chat.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == chat.choices[0].finish_reason  # greedy: the same reply

    text = api.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=6)
    assert text.object == "text_completion" and isinstance(text.choices[0].text, str)
    assert 1 <= text.usage.completion_tokens <= 6 and text.usage.prompt_tokens > 1
    pieces = list(api.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=6, stream=True))
    assert "".join(p.choices[0].text for p in pieces) == text.choices[0].text
    assert pieces[-1].choices[0].finish_reason == text.choices[0].finish_reason


@pytest.mark.timeout(60)
@pytest.mark.parametrize("field, value, param", [
    ("top_p", -1, "top_p"), ("top_p", 0, "top_p"), ("n", "abc", "n"), ("n", 2, "n"),
    ("temperature", "hot", "temperature"), ("temperature", 2.5, "temperature"), ("max_tokens", 0, "max_tokens"),
    ("max_tokens", 1_000_000, "max_tokens"), ("max_completion_tokens", 0, "max_completion_tokens"),
    ("messages", [{"role": "robot", "content": "hi"}], "messages[0].role"), ("messages", [], "messages"),
])
def test_every_wrong_field_is_a_400_naming_it(served, field, value, param):
    body = {"model": "tiny", "messages": HI, "max_tokens": 4, field: value}
    with pytest.raises(openai.BadRequestError) as bad:
        client(served).chat.completions.create(**body)
    assert bad.value.status_code == 400 and bad.value.param == param and bad.value.type == "invalid_request_error"
    assert param.split("[")[0] in bad.value.message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path, content", [
    ("/v1/chat/completions", b'{"model": "tiny", "messages": ['), ("/v1/completions", b"prompt=hello"),
    ("/v1/chat/completions", b""), ("/v1/chat/completions", b'["a", "list"]'),
])
def test_malformed_json_is_a_400_in_openai_shape(served, path, content):
    error = assert_openai_error(post(served, content, path=path), 400)
    assert "detail" not in error and error["code"] in ("invalid_json", "invalid_type")


@pytest.mark.timeout(60)
def test_a_body_over_the_cap_is_413_before_parsing(served):
    fits = json.dumps({"model": "tiny", "messages": HI, "max_tokens": 2, "user": "u" * (MAX_BODY - 200)})
    assert len(fits) <= MAX_BODY and post(served, fits).status_code == 200  # the cap is the boundary
    too_big = json.dumps({"model": "tiny", "messages": HI, "max_tokens": 2, "user": "u" * MAX_BODY})
    assert_openai_error(post(served, too_big), 413, "request_too_large")
    chunked = (too_big[i:i + 4096].encode() for i in range(0, len(too_big), 4096))  # no Content-Length
    assert_openai_error(post(served, chunked), 413, "request_too_large")
    assert_openai_error(post(served, b"{" * (MAX_BODY + 1)), 413)  # over the cap and not JSON: the cap speaks first


@pytest.mark.timeout(60)
def test_a_prompt_longer_than_the_context_is_413_with_its_count(served, tiny_model):
    from transformers import AutoTokenizer

    long = [{"role": "user", "content": "kite works " * 400}]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    rendered = tokenizer.apply_chat_template(long, add_generation_prompt=True, tokenize=False)
    n = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])  # counted as the server counts
    assert n > 512
    with pytest.raises(openai.APIStatusError) as over:
        client(served).chat.completions.create(model="tiny", messages=long, max_tokens=8)
    assert over.value.status_code == 413 and over.value.code == "context_length_exceeded"
    assert f"{n:,} tokens" in over.value.message and "limit of 511" in over.value.message  # 512 less 1 to answer
    with pytest.raises(openai.APIStatusError) as text:
        client(served).completions.create(model="tiny", prompt="kite works " * 400, max_tokens=8)
    assert text.value.status_code == 413 and text.value.param == "prompt"


@pytest.mark.timeout(60)
def test_max_tokens_beyond_the_room_the_prompt_leaves_is_cut_to_it(served):
    """A prompt that fits with a cap that does not: the reply stops at the end of the 512-token context."""
    r = client(served).completions.create(model="tiny", prompt="kite works " * 100, max_tokens=400)
    assert 200 < r.usage.prompt_tokens < 400 and r.usage.total_tokens <= 512
    assert r.choices[0].finish_reason == ("length" if r.usage.total_tokens == 512 else "stop")


@pytest.mark.timeout(60)
def test_bad_top_p_flood_leaves_the_server_answering(served):
    """The review's attack: 40 streamed requests with top_p -1. Each is refused, and nothing is left hanging."""
    def attack(_):
        try:
            client(served).chat.completions.create(model="tiny", messages=HI, stream=True, top_p=-1, temperature=1)
        except openai.BadRequestError as exc:
            return exc.param
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(attack, range(40))) == ["top_p"] * 40
    start = time.monotonic()
    assert httpx.get(served + "/health", timeout=1).status_code == 200
    assert time.monotonic() - start < 1
    assert client(served).chat.completions.create(model="tiny", messages=HI, max_tokens=2).choices


@pytest.mark.timeout(60)
def test_a_generation_error_ends_the_stream(served):
    """Temperature 1e-45 is in OpenAI's range but overflows the logits to inf, so sampling fails inside the
    model thread: the stream must end with that error, and a plain request must get a 500 in OpenAI's shape."""
    api = client(served, timeout=20)
    start = time.monotonic()
    with pytest.raises(openai.APIError, match="Generation failed"):
        for _ in api.chat.completions.create(model="tiny", messages=HI, max_tokens=4, stream=True, temperature=1e-45):
            pass
    assert time.monotonic() - start < 10
    with pytest.raises(openai.InternalServerError) as failed:
        api.completions.create(model="tiny", prompt="hello", max_tokens=4, temperature=1e-45)
    assert failed.value.status_code == 500 and failed.value.code == "generation_failed"
    assert api.chat.completions.create(model="tiny", messages=HI, max_tokens=2).choices  # the model thread lives on


def _ask(api: openai.OpenAI, i: int) -> bool:
    """One request of a mix (chat, streamed chat, text); whether a whole answer came back."""
    if i % 3 == 0:
        end = api.chat.completions.create(model="tiny", messages=HI, max_tokens=24).choices[0].finish_reason
    elif i % 3 == 1:
        chunks = list(api.chat.completions.create(model="tiny", messages=HI, max_tokens=24, stream=True))
        end = chunks[-1].choices[0].finish_reason
    else:
        end = api.completions.create(model="tiny", prompt="Kites", max_tokens=24).choices[0].finish_reason
    return end in ("stop", "length")


def _ask_until_answered(api: openai.OpenAI, i: int, tries: int = 20) -> tuple[bool, int, float]:
    """Ask, waiting Retry-After whenever the server says it is busy: (answered, times told to retry, the
    longest any one attempt took)."""
    retries, longest = 0, 0.0
    for _ in range(tries):
        start = time.monotonic()
        try:
            return _ask(api, i), retries, max(longest, time.monotonic() - start)
        except (openai.RateLimitError, openai.InternalServerError) as exc:
            longest = max(longest, time.monotonic() - start)
            assert exc.status_code in (429, 503), exc
            retries += 1
            time.sleep(int(exc.response.headers["retry-after"]))
    return False, retries, longest


@pytest.mark.timeout(120)
def test_sixteen_clients_are_all_answered_or_told_to_retry(served):
    """16 clients x 10 requests against a queue of 4: each request is answered, or told to retry (429 with
    Retry-After) and answered on a later try; none is dropped and no attempt hangs."""
    def user(u):
        api = client(served, timeout=TIMEOUT_S + 15)
        return [_ask_until_answered(api, u + i) for i in range(10)]

    with ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(user, range(16)) for r in rs]
    print(f"160 requests: {sum(a for a, _, _ in results)} answered, {sum(r for _, r, _ in results)} told to retry first, "
          f"longest attempt {max(l for _, _, l in results):.1f} s")
    assert len(results) == 160 and all(answered for answered, _, _ in results)
    assert sum(retries for _, retries, _ in results) >= 1  # the cap of 4 turned some away for a while
    assert max(longest for _, _, longest in results) < TIMEOUT_S + 10  # nobody hung past the timeout


@pytest.mark.timeout(90)
def test_the_timeout_cuts_a_long_reply(slow_served):
    start = time.monotonic()
    r = client(slow_served).chat.completions.create(model="slow", messages=HI, max_tokens=2000)
    took = time.monotonic() - start
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens < 2000
    assert SLOW_TIMEOUT_S - 0.5 < took < SLOW_TIMEOUT_S + 3


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_its_generation(slow_served, stream):
    """A 2,000-token reply takes ~20 s; once its client hangs up the model is free for the next at once."""
    body = {"model": "slow", "messages": HI, "max_tokens": 2000, "stream": stream}
    if stream:
        with httpx.stream("POST", slow_served + "/v1/chat/completions", json=body, timeout=30) as events:
            next(line for line in events.iter_lines() if '"content"' in line)
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(slow_served + "/v1/chat/completions", json=body, timeout=0.5)
    start = time.monotonic()
    r = client(slow_served).chat.completions.create(model="slow", messages=HI, max_tokens=1)
    assert r.usage.completion_tokens == 1 and time.monotonic() - start < 1.0  # not behind the abandoned reply


def _wait_until(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.timeout(90)
def test_sigterm_stops_the_server_within_5_seconds_with_requests_in_flight(slow_model, tmp_path_factory):
    """Eight 2,000-token replies (~20 s each), streamed and not, one being written and seven queued: SIGTERM
    ends them all and the process within 5 s."""
    proc, url = start_server(["serve", str(slow_model), "--name", "slow", "--timeout", "120"], _env(tmp_path_factory))

    def long_reply(i):
        try:
            if i % 2:
                client(url).chat.completions.create(model="slow", messages=HI, max_tokens=2000)
            else:
                list(client(url).chat.completions.create(model="slow", messages=HI, max_tokens=2000, stream=True))
            return "finished"
        except (openai.APIError, httpx.HTTPError) as exc:
            return type(exc).__name__  # APIError: an error event in the stream; InternalServerError: a 503

    pool = ThreadPoolExecutor(8)
    try:
        outcomes = pool.map(long_reply, range(8))
        assert _wait_until(lambda: httpx.get(url + "/health").json()["waiting"] == 7, 30)  # 1 running, 7 queued
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        print(f"SIGTERM with 8 replies in flight: stopped in {time.monotonic() - start:.2f} s")
        assert time.monotonic() - start < 5
        ended = list(outcomes)
        # every reply ended early with the reason (a 503, or an error event ending the stream); none hung or was cut
        assert len(ended) == 8 and set(ended) <= {"APIError", "InternalServerError"}, ended
    finally:
        _stop(proc)
        pool.shutdown(wait=True)
    output = proc.stdout.read().decode()
    assert "Serving slow" in output and "Traceback" not in output


@pytest.mark.timeout(30)
@pytest.mark.parametrize("host, key, warned", [
    ("0.0.0.0", None, True), ("192.168.1.20", None, True), ("::", None, True), ("kites.example", None, True),
    ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False), ("0.0.0.0", "k", False),
])
def test_a_warning_names_the_risk_of_binding_beyond_loopback_without_a_key(host, key, warned):
    from knowtune.serve.app import binding_warning

    warning = binding_warning(host, key)
    assert (warning is not None) == warned
    if warned:
        assert host in warning and "--api-key" in warning and "KNOWTUNE_API_KEY" in warning


@pytest.mark.timeout(60)
def test_serve_prints_the_warning_and_help_explains_every_limit(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KNOWTUNE_HOME": str(tmp_path), "COLUMNS": "200"}
    env.pop("KNOWTUNE_API_KEY", None)
    missing = str(tmp_path / "no-such-model")  # fails after the warning, so nothing is ever bound to 0.0.0.0
    run = subprocess.run([sys.executable, "-m", "knowtune.cli", "serve", missing, "--host", "0.0.0.0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "WARNING: listening on 0.0.0.0 with no API key" in run.stderr
    helped = subprocess.run([sys.executable, "-m", "knowtune.cli", "serve", "--help"], env=env,
                            capture_output=True, text=True, timeout=60).stdout
    for option in ("--api-key", "KNOWTUNE_API_KEY", "--max-body", "--queue", "--timeout", "/v1/completions"):
        assert option in helped
