"""Whole-command tests of `knowtune teach` on a tiny random model: artifacts, audit, resume, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import small_pack
from knowtune.cli import app

runner = CliRunner()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def teach_args(pack, model, out, *extra):
    return ["teach", str(pack), "--model", str(model), "--out", str(out), "--batch-size", "8", *extra]


def test_teach_writes_a_complete_run(tmp_path, tiny_model):
    pack = small_pack(tmp_path / "pack.yaml")
    before_hash = sha(pack)
    out = tmp_path / "run"
    result = runner.invoke(app, teach_args(pack, tiny_model, out, "--epochs", "2", "--learning-rate", "5e-3"))
    assert result.exit_code == 0, result.output
    for name in ("config.yaml", "data/train.jsonl", "data/probes_test.jsonl", "data/replay.jsonl",
                 "adapter/adapter_model.safetensors", "metrics.jsonl", "audit.json", "report.md", "report.html",
                 "plots/loss.png"):
        assert (out / name).exists(), name
    assert "before and after" in result.output and "Held-out questions" in result.output
    audit = json.loads((out / "audit.json").read_text())
    groups = audit["summary"]["by_group"]  # each held-out phrasing is also asked the way people type it
    assert len(audit["after"]["retention"]) >= 100 and audit["summary"]["n_probes"] == 24
    assert groups["held-out phrasings"]["n"] == 12 and groups[next(g for g in groups if "people type" in g)]["n"] == 12
    assert "With --grounded: unknown questions declined" in result.output
    assert {f["verdict"] for f in audit["facts"]} <= {"learned", "not learned", "was known", "forgotten"}
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses and all(l == l and l < 1e4 for l in losses)  # finite
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())  # B starts at zero
    assert sha(pack) == before_hash  # the input file is never modified
    # the saved run answers through the same path as the audit
    ask = runner.invoke(app, ["ask", str(out), "Who founded Brindlemoor Kite Works?"])
    assert ask.exit_code == 0, ask.output
    # confidence: thresholds chosen on dev probes, a reliability plot, and a floor that declines
    assert (out / "confidence.json").exists() and (out / "plots" / "reliability.png").exists()
    assert all(0 <= r["confidence"] <= 1 for r in audit["after"]["probes"])
    assert audit["summary"]["n_unknowns"] > 0 and audit["summary"]["unknowns_declined_after"] is not None
    strict = runner.invoke(app, ["ask", str(out), "Who founded Brindlemoor Kite Works?", "--min-confidence", "1"])
    assert strict.exit_code == 0 and "not sure" in strict.output
    auto = runner.invoke(app, ["ask", str(out), "Who founded Brindlemoor Kite Works?", "--min-confidence", "auto"])
    assert auto.exit_code == 0, auto.output
    wrong = runner.invoke(app, ["ask", str(out), "Who?", "--min-confidence", "high"])
    assert wrong.exit_code == 1 and "neither 'auto' nor a number" in wrong.output


def test_report_escapes_model_output(tmp_path):
    from knowtune.eval.report import render_html

    page = render_html("| q | a |\n|---|---|\n| x | <script>alert(1)</script> |\n", "t")
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def _fails_with_advice(args, *needles):
    result = runner.invoke(app, args)
    text = result.output
    assert result.exit_code == 1, text
    assert "Traceback" not in text and "What to do:" in text
    for n in needles:
        assert n in text, (n, text)
    return text


def test_missing_file(tmp_path, tiny_model):
    _fails_with_advice(["teach", str(tmp_path / "nope.jsonl"), "--model", str(tiny_model), "--out", str(tmp_path / "r")], "no such file")
    assert not (tmp_path / "r").exists()
    _fails_with_advice(["check", str(tmp_path / "nope.jsonl")], "no such file")


def test_unknown_model_alias(tmp_path):
    pack = small_pack(tmp_path / "pack.yaml")
    _fails_with_advice(teach_args(pack, "smollm-9000", tmp_path / "r"), "not a known model alias", "knowtune models")


def test_empty_dataset(tmp_path, tiny_model):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _fails_with_advice(teach_args(empty, tiny_model, tmp_path / "r"), "no examples")
    assert empty.read_text() == ""


def test_corrupt_cached_model(tmp_path, tiny_model):
    from knowtune.models.fetch import MARKER, cached_dir

    folder = cached_dir("smollm2-135m")
    folder.mkdir(parents=True)
    for f in tiny_model.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / MARKER).write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    pack = small_pack(tmp_path / "pack.yaml")
    _fails_with_advice(teach_args(pack, "smollm2-135m", tmp_path / "r"), "corrupt", "models pull smollm2-135m --force")


def test_hub_id_offline_gives_a_clear_message(tmp_path):
    pack = small_pack(tmp_path / "pack.yaml")
    _fails_with_advice(teach_args(pack, "nobody/no-such-model", tmp_path / "r"), "Hugging Face hub")


def test_bad_setting_names_the_field(tmp_path, tiny_model):
    pack = small_pack(tmp_path / "pack.yaml")
    _fails_with_advice(teach_args(pack, tiny_model, tmp_path / "r", "--set", "lora_rank=8"), "lora_rank")


def test_settings_precedence(tmp_path):
    from knowtune.train.methods.teach import TeachSettings

    cfg = tmp_path / "teach.yaml"
    cfg.write_text("epochs: 5\nlora_r: 4\n")
    s = TeachSettings.from_sources(cfg, epochs=7, data=["a.jsonl"], batch_size=None)
    assert (s.epochs, s.lora_r, s.batch_size) == (7, 4, TeachSettings().batch_size)
    result = runner.invoke(app, ["teach", str(tmp_path / "none.jsonl"), "--set", "epochs=2", "--set", "lora_r=3",
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "no such file" in result.output  # --set merged with flags, no crash
