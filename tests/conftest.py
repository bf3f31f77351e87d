"""Fixtures: a tiny random Llama and a tiny byte-level tokenizer with a chat template, built from code.
No network and no downloads: every fast test runs on these."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PACK = ROOT / "examples" / "brindlemoor_kite_works.yaml"
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_model(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [EXAMPLE_PACK.read_text()] * 2 + ["The quick brown fox jumps over the lazy dog. 0123456789"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(autouse=True)
def _isolated_home(request, tmp_path, monkeypatch):
    """Each fast test gets its own empty knowtune cache and no hub access; `slow` tests keep the real cache,
    where `make setup` put the default model."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("KNOWTUNE_HOME", str(tmp_path / "knowtune-home"))


def small_pack(path: Path, n_facts: int = 6) -> Path:
    """A small knowledge pack: the first n facts of the example pack."""
    import yaml

    pack = yaml.safe_load(EXAMPLE_PACK.read_text())
    pack["facts"] = pack["facts"][:n_facts]
    path.write_text(yaml.safe_dump(pack, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], env: dict, health: str = "/health", tries: int = 240) -> tuple[subprocess.Popen, str]:
    """Start `python -m knowtune.cli ARGS --port P` and wait until GET health answers; returns (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "knowtune.cli", *args, "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(tries):
        try:
            urllib.request.urlopen(url + health, timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode())
            time.sleep(0.25)
    proc.kill()
    pytest.fail(f"{' '.join(args)} did not answer on {url}{health}")


def run_cli(args: list[str]) -> subprocess.Popen:
    """`python -m knowtune.cli ARGS` in a child process on one thread, output merged and unbuffered."""
    import os

    return subprocess.Popen([sys.executable, "-m", "knowtune.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


def assert_kill_and_resume_match(args: list[str], straight: Path, killed: Path, weights: str,
                                 marker: str = "*/trainer_state.json") -> None:
    """Run `knowtune ARGS --out STRAIGHT` to the end; run it again into KILLED, SIGKILL it once its first
    checkpoint is complete, resume it with --resume; the saved weights of the two runs must be equal."""
    import signal

    import torch
    from safetensors.torch import load_file

    done = run_cli([*args, "--out", str(straight)])
    out = done.communicate(timeout=900)[0]
    assert done.returncode == 0, out
    proc = run_cli([*args, "--out", str(killed)])
    deadline = time.time() + 600
    while not list((killed / "checkpoints").glob(marker)):
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / weights).exists(), "killed too late: the run had finished"
    resumed = run_cli([*args, "--out", str(killed), "--resume"])
    out = resumed.communicate(timeout=900)[0]
    assert resumed.returncode == 0, out
    assert "Resuming from step" in out
    a, b = load_file(str(straight / weights)), load_file(str(killed / weights))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
