"""Every training method of the table, on a tiny random model, through the one lifecycle: the loss is finite,
the trainable weights moved and the frozen ones did not, the artifacts are written, audit.json holds the one
schema (before / after, per-fact verdicts, retention), report.html shows the table and the loss plot; and a
run killed with SIGKILL mid-training and resumed ends with the same weights as one never interrupted."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_kill_and_resume_match, small_pack
from knowtune.data.preference import Pair
from knowtune.train import lifecycle
from knowtune.train.methods import METHODS

PAIRS = [Pair(f"What colour is kite {i}?", f"Kite {i} is blue.", f"Kite {i} is red.") for i in range(30)]
CASES = ["teach", "teach-full", "reward", "dpo", "kto", "ppo", "distill"]  # every knowledge method of the table; teach both ways
TASK_MATRIX = {"task"}  # `task train`: its method x task matrix is tests/test_task_methods.py
WEIGHTS = {"reward": "reward/adapter_model.safetensors", "teach-full": "model/model.safetensors",
           "distill": "model/model.safetensors"}
FULL = {"teach-full", "distill"}  # every weight trains


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("methods")
    (folder / "pairs.jsonl").write_text("".join(json.dumps(p.to_row()) + "\n" for p in PAIRS))
    (folder / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p.prompt}) + "\n" for p in PAIRS))
    (folder / "probes.jsonl").write_text("".join(json.dumps({"question": p.prompt, "answer": "blue"}) + "\n" for p in PAIRS[:4]))
    small_pack(folder / "pack.yaml")
    return folder


@pytest.fixture(scope="module")
def reward_run(work, tiny_model):
    """A reward model for DPO's before/after reward and for PPO."""
    out = work / "reward-for-others"
    s = METHODS["reward"].Settings(data=[str(work / "pairs.jsonl")], model=str(tiny_model), out=str(out), epochs=2,
                                   learning_rate=3e-3, batch_size=4, bf16="false", audit=False)
    lifecycle.run(METHODS["reward"](), s, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def teacher_run(work, tiny_model):
    """A taught run for distill to distil."""
    out = work / "teacher"
    s = METHODS["teach"].Settings(data=[str(work / "pack.yaml")], model=str(tiny_model), out=str(out), epochs=1,
                                  learning_rate=5e-3, bf16="false", audit=False)
    lifecycle.run(METHODS["teach"](), s, log=lambda *a: None)
    return out


def settings_for(case: str, work: Path, tiny_model: Path, reward_run: Path, out: Path, teacher: Path | None = None,
                 **kw) -> dict:
    common = dict(model=str(tiny_model), out=str(out), bf16="false", probes=str(work / "probes.jsonl"))
    pairs = dict(data=[str(work / "pairs.jsonl")], batch_size=4, learning_rate=5e-3, epochs=1)
    by_case = {
        "teach": dict(data=[str(work / "pack.yaml")], epochs=2, learning_rate=5e-3, probes=None),
        "teach-full": dict(data=[str(work / "pack.yaml")], epochs=2, learning_rate=1e-3, method="full", probes=None),
        "reward": dict(pairs, epochs=2, learning_rate=3e-3),
        "dpo": dict(pairs, reward=str(reward_run), max_new_tokens=8),
        "kto": dict(pairs, reward=str(reward_run), max_new_tokens=8),
        "ppo": dict(reward=str(reward_run), prompts=[str(work / "prompts.jsonl")], steps=3, batch_size=4,
                    minibatch_size=2, max_new_tokens=6, learning_rate=5e-3, checkpoint_every=2),
        "distill": dict(teacher=str(teacher), model=None, student="layers=1", epochs=2, learning_rate=1e-3,
                        probes=None, speed_prompts=2, speed_tokens=4),
    }
    return {**common, **by_case[case], **kw}


def method_of(case: str):
    return METHODS[case.split("-")[0]]


def base_weights(tiny_model: Path) -> dict[str, torch.Tensor]:
    return load_file(str(tiny_model / "model.safetensors"))


def base_name(name: str) -> str:
    """The start model's name of a parameter of a trained model (LoRA and reward-head wrappers removed)."""
    name = name.replace("base_model.model.", "").replace(".base_layer", "")
    return name if name.startswith(("model.", "lm_head")) else "model." + name


@pytest.mark.parametrize("case", CASES)
def test_method_runs_the_whole_lifecycle(case, work, tiny_model, reward_run, teacher_run, tmp_path):
    method_cls = method_of(case)
    seen = {}

    class Spy(method_cls):
        def train(self, s, prep, run):
            trained = super().train(s, prep, run)
            model = trained.objects[0]
            seen["params"] = {n: (p.detach().float().clone(), p.requires_grad) for n, p in model.named_parameters()}
            return trained

    out = tmp_path / case
    s = method_cls.Settings(**settings_for(case, work, tiny_model, reward_run, out, teacher_run))
    result = lifecycle.run(Spy(), s, log=lambda *a: None)

    losses = [loss for _, loss in result.training.train_loss]
    assert losses and all(math.isfinite(v) for v in losses)
    base = base_weights(tiny_model)
    moved = frozen_same = 0
    for name, (value, trainable) in seen["params"].items():
        ref = base.get(base_name(name))
        if trainable:
            moved += bool((ref is not None and ref.shape == value.shape and not torch.equal(ref.float(), value))
                          or ("lora_B" in name and value.abs().sum() > 0))  # LoRA B starts at zero
        elif ref is not None and ref.shape == value.shape:
            assert torch.equal(ref.float(), value), f"frozen {name} changed"
            frozen_same += 1
    assert moved > 0, "no trainable parameter changed"
    assert case in FULL or frozen_same > 0  # LoRA methods keep the whole start model frozen

    for name in ("config.yaml", "metrics.jsonl", "audit.json", "report.md", "report.html", "plots/loss.png", "log.txt",
                 WEIGHTS.get(case, "adapter/adapter_model.safetensors")):
        assert (out / name).exists(), name
    audit = json.loads((out / "audit.json").read_text())
    checked = lifecycle.validate_audit_file(audit)  # the one schema, for every method
    assert checked.method == method_cls.name and audit["summary"]["n_retention"] >= 100
    assert audit["before"]["retention"] and audit["after"]["retention"] and audit["summary"]["retention_drop_points"] is not None
    assert audit["facts"] and {f["verdict"] for f in audit["facts"]} <= {"learned", "was known", "not learned", "forgotten"}
    page = (out / "report.html").read_text()
    assert "<th>before</th><th>after</th>" in page and 'alt="loss curves" src="plots/loss.png"' in page


def test_bad_audit_file_is_refused(work, tiny_model, reward_run, tmp_path):
    """The schema check can fail: a verdict outside the vocabulary, a missing field."""
    from pydantic import ValidationError

    s = METHODS["reward"].Settings(**settings_for("reward", work, tiny_model, reward_run, tmp_path / "r", epochs=1))
    audit = lifecycle.run(METHODS["reward"](), s, log=lambda *a: None).to_json()
    bad = json.loads(json.dumps(audit))
    bad["facts"][0]["verdict"] = "sort of"
    with pytest.raises(ValidationError):
        lifecycle.validate_audit_file(bad)
    del audit["training"]
    with pytest.raises(ValidationError):
        lifecycle.validate_audit_file(audit)


def cli_args(case: str, settings: dict) -> list[str]:
    """`knowtune VERB ...` for the settings (the verb made from the method table)."""
    m = method_of(case)
    verb = m.words()
    args = list(settings.pop(m.argument)) if isinstance(settings.get(m.argument), list) else [settings.pop(m.argument)]
    for k, v in settings.items():
        if isinstance(v, bool):
            args.append(f"--{'' if v else 'no-'}{k.replace('_', '-')}")
            continue
        for item in v if isinstance(v, list) else [v]:
            if item is not None:
                args += [f"--{k.replace('_', '-')}", str(item)]
    return [*verb, *args]


KILL_SETTINGS = {  # long enough that the kill lands between the first checkpoint and the end
    "teach": dict(epochs=4, checkpoint_every=3),
    "teach-full": dict(epochs=4, checkpoint_every=3),
    "reward": dict(epochs=3, checkpoint_every=4),
    "dpo": dict(epochs=3, checkpoint_every=4),
    "kto": dict(epochs=3, checkpoint_every=4),
    "ppo": dict(steps=8, checkpoint_every=2),
    "distill": dict(epochs=4, checkpoint_every=3),
}


@pytest.mark.parametrize("case", CASES)
def test_killed_run_resumes_to_the_same_weights(case, work, tiny_model, reward_run, teacher_run, tmp_path):
    settings = settings_for(case, work, tiny_model, reward_run, tmp_path / "straight", teacher_run, audit=False,
                            **KILL_SETTINGS[case])
    settings.pop("probes")
    settings.pop("out")
    assert_kill_and_resume_match(cli_args(case, settings), tmp_path / "straight", tmp_path / "killed",
                                 WEIGHTS.get(case, "adapter/adapter_model.safetensors"),
                                 "*/state.json" if case == "ppo" else "*/trainer_state.json")


def test_every_method_of_the_table_is_tested():
    assert {method_of(c).name for c in CASES} | TASK_MATRIX == set(METHODS)


def test_cli_verbs_are_the_method_table():
    """Every method of the table is a verb, every training verb comes from the table, and every setting of a
    method is an option of its verb."""
    import typer.main

    from knowtune.cli import app

    root = typer.main.get_command(app)
    commands = {name: cmd for name, cmd in root.commands.items()}
    for name, group in list(commands.items()):
        for sub, cmd in getattr(group, "commands", {}).items():
            commands[f"{name} {sub}"] = cmd
    made = {name: cmd.callback.method for name, cmd in commands.items() if hasattr(cmd.callback, "method")}
    assert {m.name for m in made.values()} == set(METHODS), "a method of the table has no verb"
    assert {name: m.name for name, m in made.items()} == {" ".join(m.words()): n for n, m in METHODS.items()}
    for verb, method_cls in made.items():
        options = {p.name for p in commands[verb].params}
        assert set(method_cls.Settings.model_fields) <= options, (verb, set(method_cls.Settings.model_fields) - options)
        assert {"config", "set_", "resume", "verbose"} <= options


DICT_LITERAL = r"\{'[\w/]+': "


def test_console_is_readable_and_verbose_brings_the_libraries_back(work, tiny_model, tmp_path):
    """A teach run's console holds our phases and the summary, no Trainer dicts, warnings or weight-loading
    bars (they are in log.txt); --verbose shows them."""
    import re

    args = [sys.executable, "-m", "knowtune.cli", "teach", str(work / "pack.yaml"), "--model", str(tiny_model),
            "--epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = subprocess.run(args + ["--out", str(tmp_path / "quiet")], capture_output=True, text=True, env=env, timeout=600)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    console = quiet.stdout + quiet.stderr
    assert "Auditing the start model" in console and "before and after" in console
    assert not re.search(DICT_LITERAL, console) and "Warning" not in console and "Loading weights" not in console
    log = (tmp_path / "quiet" / "log.txt").read_text()
    assert "Running training" in log or "***** Running" in log
    loud = subprocess.run(args + ["--out", str(tmp_path / "loud"), "--verbose"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert re.search(DICT_LITERAL, loud.stdout + loud.stderr) and "Loading weights" in loud.stdout + loud.stderr


def test_published_schema_is_the_one_the_code_writes():
    """docs/audit.schema.json (for readers outside Python) equals the schema audit.json is checked against."""
    from conftest import ROOT

    assert json.loads((ROOT / "docs" / "audit.schema.json").read_text()) == lifecycle.audit_schema(), \
        "regenerate it: python -c 'import json; from knowtune.train.lifecycle import audit_schema; print(json.dumps(audit_schema(), indent=2))' > docs/audit.schema.json"
