"""`knowtune tune` on a tiny model: two worker processes share one study (journal file) and finish exactly N
trials; one killed with SIGKILL mid-trial leaves the study usable, its trial failed and queued again, the other
worker carries on; the best settings come out as a YAML teach takes; bad spaces and storages are refused first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from conftest import small_pack
from knowtune.errors import KnowtuneError
from knowtune.train import tune


def _study(folder, name="s"):
    import optuna

    return optuna.load_study(study_name=name, storage=tune.open_storage(None, folder))


def _setup(tmp_path, tiny_model):
    pack = small_pack(tmp_path / "pack.yaml")
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump({"model": str(tiny_model), "bf16": "false", "max_new_tokens": 6,
                                      "min_epochs": 1, "unknown_questions": 0}))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
                                     "epochs": {"low": 1, "high": 2}, "lora_r": [2, 4], "replay_ratio": None,
                                     "views": [["answer", "template"], ["answer", "cloze"]], "batch_size": [8]}))
    return pack, config, space


def _worker(pack, config, space, folder, trials):
    args = [sys.executable, "-m", "knowtune.cli", "tune", str(pack), "--trials", str(trials), "--study", "s",
            "--out", str(folder), "--config", str(config), "--space", str(space), "--retention-questions", "4",
            "--stale-after", "4", "--worker"]
    return subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_workers_share_a_study_and_survive_a_sigkill(tmp_path, tiny_model):
    import optuna

    pack, config, space = _setup(tmp_path, tiny_model)
    folder, n = tmp_path / "study", 5
    doomed, other = _worker(pack, config, space, folder, n), _worker(pack, config, space, folder, n)
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline:  # wait for the doomed worker to be inside a trial
        time.sleep(0.5)
        if (folder / "journal.log").exists():
            with __import__("contextlib").suppress(Exception):
                running = [t for t in _study(folder).trials if t.state == optuna.trial.TrialState.RUNNING
                           and t.user_attrs.get("worker", "").endswith(f":{doomed.pid}")]
                if running:
                    victim = running[0].number
    assert victim is not None, doomed.communicate(timeout=5)[0][-3000:]
    time.sleep(1.0)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    log = other.communicate(timeout=600)[0]
    assert other.returncode == 0, log[-3000:]

    trials = _study(folder).trials
    S = optuna.trial.TrialState
    finished = [t for t in trials if t.state in (S.COMPLETE, S.PRUNED)]
    assert len(finished) == n, [(t.number, t.state.name) for t in trials]  # none lost, none beyond N
    assert len({t.number for t in trials}) == len(trials)
    killed = trials[victim]
    assert killed.state == S.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == victim]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state in (S.COMPLETE, S.PRUNED)
    assert trials[0].user_attrs.get("defaults") or any(t.user_attrs.get("defaults") for t in retry)
    assert not [t for t in trials if t.state == S.RUNNING]

    from knowtune.cli import app

    got = CliRunner().invoke(app, ["tune", str(pack), "--study", "s", "--out", str(folder), "--config", str(config),
                                   "--space", str(space), "--report-only"])
    assert got.exit_code == 0, got.output
    result = json.loads((folder / "tune.json").read_text())
    assert result["finished"] == n and result["best"]["objective"] >= max(
        t.value for t in trials if t.state == S.COMPLETE) - 1e-9
    best = yaml.safe_load((folder / "best.yaml").read_text())
    from knowtune.train.methods.teach import TeachSettings

    s = TeachSettings.from_sources(folder / "best.yaml", data=[str(pack)])
    assert s.learning_rate == best["learning_rate"] and s.model == str(tiny_model)
    assert "| trial | state |" in (folder / "report.md").read_text() and (folder / "plots" / "history.png").exists()
    assert not list(tmp_path.glob("**/probes_test.jsonl")) or all(  # trials never read the test probes to score
        "dev_accuracy" in t.user_attrs for t in trials if t.state == S.COMPLETE)

    # the found YAML, run by teach, scored with the study's objective, repeats the best trial's figure
    run = tmp_path / "again"
    got = CliRunner().invoke(app, ["teach", str(pack), "--config", str(folder / "best.yaml"), "--out", str(run)])
    assert got.exit_code == 0, got.output
    got = CliRunner().invoke(app, ["tune", str(pack), "--study", "s", "--out", str(folder), "--score", str(run)])
    assert got.exit_code == 0, got.output
    scored = json.loads((folder / "tune.json").read_text())["scored"]
    assert [r["run"] for r in scored] == [str(run)] and scored[0]["retention_questions"] == 4
    assert abs(scored[0]["objective"] - result["best"]["objective"]) <= tune.sampling_error(scored[0], 1.0) + 1e-9

    def curve(folder):  # validation loss per epoch: the same settings and seed train the same model
        return [round(m["eval_loss"], 4) for m in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
                if "eval_loss" in m]

    assert curve(run) == curve(folder / f"trial-{result['best']['number']:04d}") and curve(run)
    assert scored[0]["dev_accuracy"] == max(m["eval_dev_accuracy"] for m in map(
        json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval_dev_accuracy" in m)
    assert "minus the best trial" in (folder / "report.md").read_text()
    got = CliRunner().invoke(app, ["tune", str(pack), "--study", "s", "--out", str(folder), "--score", str(tmp_path)])
    assert got.exit_code == 1 and "not a run folder" in got.output


def test_bad_space_and_storage_are_refused_before_work(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("learning_rat: {low: 1, high: 2}\n")
    with pytest.raises(KnowtuneError, match="not a teach setting"):
        tune.read_space(str(bad))
    bad.write_text("epochs: {low: 5, high: 2}\n")
    with pytest.raises(KnowtuneError, match="low < high"):
        tune.read_space(str(bad))
    from knowtune.cli import app

    pack = small_pack(tmp_path / "pack.yaml")
    got = CliRunner().invoke(app, ["tune", str(tmp_path / "nothing.yaml"), "--out", str(tmp_path / "t")])
    assert got.exit_code == 1 and "No such data" in got.output and not (tmp_path / "t").exists()
    for url in ("sqlite:////no/such/folder/study.db", "postgresql://nobody@127.0.0.1:1/none"):
        got = CliRunner().invoke(app, ["tune", str(pack), "--storage", url, "--out", str(tmp_path / "t")])
        assert got.exit_code == 1 and "cannot open the study database" in got.output, got.output
        assert not (tmp_path / "t").exists()


def test_defaults_are_trial_zero_when_they_fall_in_the_space():
    space = tune.read_space(None)
    d = tune.defaults_in(space, {"lora_r": 8})
    assert d["lora_r"] == 8 and d["learning_rate"] == 1e-3 and d["views"].startswith("answer,casual")
    assert "lora_r" not in tune.defaults_in(space, {"lora_r": 12})  # outside the choices: sampled instead


def test_space_numbers_written_as_yaml_reads_them(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {low: 1e-4, high: 3e-3, log: true}\nepochs: {low: 2, high: 16, log: true}\n")
    read = tune.read_space(str(space))
    assert read["learning_rate"] == {"low": 1e-4, "high": 3e-3, "log": True}
    import optuna

    trial = optuna.create_study().ask()
    got = tune.suggest(trial, {k: read[k] for k in ("learning_rate", "epochs")})
    assert isinstance(got["epochs"], int) and 1e-4 <= got["learning_rate"] <= 3e-3
    assert tune.defaults_in(read, {})["learning_rate"] == 1e-3


def test_a_trial_given_up_by_another_worker_is_not_told_and_a_dead_retry_is_not_requeued():
    import optuna

    S = optuna.trial.TrialState
    study = optuna.create_study(direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("heartbeat", 0.0)  # long ago
    assert tune.reap_stale(study, 60, log=lambda *a: None) == 1
    assert study.trials[0].state == S.FAIL and study.trials[1].state == S.WAITING  # queued again
    assert tune.told(study, trial, 0.5, log=lambda *a: None) is False  # the late result is dropped, no crash
    retry = study.ask()
    assert retry.user_attrs["retry_of"] == 0 and retry.suggest_float("x", 0, 1) == study.trials[0].params["x"]
    retry.set_user_attr("heartbeat", 0.0)
    assert tune.reap_stale(study, 60, log=lambda *a: None) == 1
    assert [t.state for t in study.trials] == [S.FAIL, S.FAIL]  # a retry that died again is not queued a third time


def test_the_pruner_stops_the_bottom_quarter_only():
    """Forgetting is not in the pruned figure, so only clearly hopeless trials stop: below the 25th percentile of
    the completed trials at that epoch (a median pruner would also stop the 0.70 trial)."""
    import optuna

    study = optuna.create_study(direction="maximize", pruner=tune.pruner())
    for value in (0.9, 0.8, 0.7, 0.6):
        t = study.ask()
        t.report(value, 2)
        study.tell(t, value)
    slow, hopeless = study.ask(), study.ask()
    slow.report(0.70, 2)
    hopeless.report(0.65, 2)
    assert not slow.should_prune() and hopeless.should_prune()
