"""Experiment tracking on a tiny teach run: TensorBoard event files by default holding every logged training
step and the audit's figures; an MLflow run (a file store) with the settings, the metrics by step, the audit's
figures and the report; --no-tensorboard writes none; an unreachable tracking server is a clear error."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from conftest import small_pack
from knowtune.cli import app

runner = CliRunner()


def _teach(tmp_path, tiny_model, out, *extra):
    pack = small_pack(tmp_path / "pack.yaml", n_facts=3)
    return runner.invoke(app, ["teach", str(pack), "--model", str(tiny_model), "--out", str(out), "--epochs", "2",
                               "--learning-rate", "5e-3", "--batch-size", "4", "--set", "unknown_questions=0", *extra])


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_by_default_and_mlflow_when_asked(tmp_path, tiny_model):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, store = tmp_path / "run", tmp_path / "mlruns"
    got = _teach(tmp_path, tiny_model, run, "--mlflow", str(store), "--mlflow-experiment", "tests")
    assert got.exit_code == 0, got.output
    losses = [(r["step"], r["loss"]) for r in _rows(run) if "loss" in r]
    assert len(losses) >= 2

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert [(e.step, round(e.value, 5)) for e in events.Scalars("train/loss")] == [(s, round(v, 5)) for s, v in losses]
    assert "eval/dev_accuracy" in tags and "audit/probe_accuracy_after" in tags, tags
    audit = json.loads((run / "audit.json").read_text())
    assert abs(events.Scalars("audit/probe_accuracy_after")[-1].value - audit["summary"]["probe_accuracy_after"]) < 1e-6

    client = MlflowClient(store.resolve().as_uri())
    experiment = client.get_experiment_by_name("tests")
    [found] = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    assert float(found.data.params["learning_rate"]) == 5e-3
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert sorted((m.step, round(m.value, 5)) for m in history) == [(s, round(v, 5)) for s, v in losses]
    assert abs(found.data.metrics["audit/probe_accuracy_after"] - audit["summary"]["probe_accuracy_after"]) < 1e-6
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"audit.json", "report.md", "config.yaml"} <= artifacts, artifacts


def test_no_tensorboard_and_an_unreachable_server(tmp_path, tiny_model):
    run = tmp_path / "quiet"
    got = _teach(tmp_path, tiny_model, run, "--no-tensorboard")
    assert got.exit_code == 0, got.output
    assert not (run / "tensorboard").exists()
    got = _teach(tmp_path, tiny_model, tmp_path / "nowhere", "--mlflow", "http://127.0.0.1:9/")
    assert got.exit_code == 1 and "cannot reach the tracking store" in got.output, got.output
