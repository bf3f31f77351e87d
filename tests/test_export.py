"""`knowtune export` on a tiny taught run: the hf folder loads with transformers alone and answers as the run
did; the GGUF file (llama, and a tiny qwen2) reads back through transformers' GGUF loader with the same
tokens and the same logits; quantised files stay close; a run whose audit disagrees fails the export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import small_pack
from knowtune.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("export")
    pack = small_pack(folder / "pack.yaml", n_facts=4)
    out = folder / "run"
    got = runner.invoke(app, ["teach", str(pack), "--model", str(tiny_model), "--out", str(out), "--epochs", "1",
                              "--learning-rate", "5e-3", "--batch-size", "8", "--set", "unknown_questions=0"])
    assert got.exit_code == 0, got.output
    return out


def _logits(model, tokenizer, text="Who founded Brindlemoor Kite Works?"):
    import torch

    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0].float()


def test_hf_export_loads_with_transformers_alone_and_answers_as_the_run(run, tmp_path):
    out = tmp_path / "hf"
    got = runner.invoke(app, ["export", str(run), "--format", "hf", "--dtype", "f32", "--out", str(out)])
    assert got.exit_code == 0, got.output
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] and record["held_out"]["same_answer"] == 1.0 and record["retention"]["same_answer"] == 1.0
    assert record["held_out"]["questions"] == len(json.loads((run / "audit.json").read_text())["after"]["probes"])
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    script = (f"import sys, transformers\n"
              f"m = transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
              f"t = transformers.AutoTokenizer.from_pretrained({str(out)!r})\n"
              "ids = t.apply_chat_template([{'role': 'user', 'content': 'Who founded it?'}], add_generation_prompt=True, return_tensors='pt', return_dict=True)\n"
              "print(len(m.generate(**ids, max_new_tokens=3, do_sample=False)[0]))\n"
              "assert not [k for k in sys.modules if k.startswith('knowtune')] and 'peft' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_gguf_reads_back_with_the_same_tokens_and_logits(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from knowtune.models.load import load_for_inference

    path = tmp_path / "tiny-f32.gguf"
    got = runner.invoke(app, ["export", str(run), "--format", "gguf", "--dtype", "f32", "--out", str(path)])
    assert got.exit_code == 0, got.output
    assert json.loads(path.with_suffix(".export.json").read_text())["held_out"]["same_answer"] == 1.0
    modelfile = path.with_suffix(".Modelfile").read_text()
    assert f"FROM ./{path.name}" in modelfile and "<|im_start|>{{ .Role }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    merged, tokenizer = load_for_inference(str(run), log=lambda *a: None)
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name)
    back_tok = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    for text in ("Who founded Brindlemoor Kite Works in 1987?", "<|im_start|>user\nhi<|im_end|>", "  odd  spacing\n\n"):
        assert back_tok(text)["input_ids"] == tokenizer(text)["input_ids"], text
    assert (_logits(back, tokenizer) - _logits(merged, tokenizer)).abs().max() < 1e-4  # query/key layout undone exactly

    q8 = tmp_path / "tiny-q8_0.gguf"
    got = runner.invoke(app, ["export", str(run), "--format", "gguf", "--quant", "q8_0", "--out", str(q8)])
    assert got.exit_code == 0, got.output
    assert q8.stat().st_size < 0.5 * path.stat().st_size
    back8 = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=q8.name)
    exact = _logits(merged, tokenizer)
    assert (_logits(back8, tokenizer) - exact).abs().max() < 0.05 * exact.abs().max()


def test_qwen2_gguf_round_trip(tiny_model, tmp_path):
    """The registry's other architecture: biases on q/k/v, no rotary re-layout."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from knowtune.serve.export import write_gguf

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # non-zero biases, so a dropped or misnamed one shows
            layer.self_attn.q_proj.bias.normal_()
            layer.self_attn.k_proj.bias.normal_()
    path = write_gguf(model, tokenizer, tmp_path / "qwen.gguf", "f32", None, "qwen2")
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name)
    assert back.config.model_type == "qwen2"
    assert (_logits(back, tokenizer) - _logits(model, tokenizer)).abs().max() < 1e-4


def test_bad_exports_are_refused_and_a_disagreeing_export_fails(run, tmp_path):
    got = runner.invoke(app, ["export", str(tmp_path), "--format", "hf"])
    assert got.exit_code == 1 and "not a knowtune run folder" in got.output
    got = runner.invoke(app, ["export", str(run), "--format", "hf", "--quant", "q8_0"])
    assert got.exit_code == 1 and "GGUF files only" in got.output
    got = runner.invoke(app, ["export", str(run), "--format", "onnx"])
    assert got.exit_code == 1 and "not a format" in got.output
    # a run whose audit says every answer was right: the export (the same model) is 100% off by comparison
    copy = tmp_path / "claims"
    shutil.copytree(run, copy)
    audit = json.loads((copy / "audit.json").read_text())
    for row in audit["after"]["probes"]:
        row["correct"] = not row["correct"]
    (copy / "audit.json").write_text(json.dumps(audit))
    got = runner.invoke(app, ["export", str(copy), "--format", "hf", "--dtype", "f32", "--out", str(tmp_path / "x")])
    assert got.exit_code == 1 and "does not answer like the run" in got.output
    assert json.loads((tmp_path / "x" / "export.json").read_text())["passed"] is False
