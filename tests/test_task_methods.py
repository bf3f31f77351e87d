"""`knowtune task`: every method x task cell on a tiny random model, through the one lifecycle (one
parametrised matrix): the loss is finite, the trainable weights moved and the frozen ones did not, the task's
metric is in range and audit.json holds the one schema; a killed ULMFiT run resumes to the same weights; the
optimisers; `task eval`, `task compare` and `check --task`; bad task files named by file and line."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from knowtune.eval.tasks import TASKS
from knowtune.train import lifecycle
from knowtune.train.classic import RECIPES
from knowtune.train.methods.task import TaskMethod, TaskSettings
from conftest import assert_kill_and_resume_match
from test_methods import base_name, base_weights

CELLS = [(m, t) for m, r in RECIPES.items() for t, task in TASKS.items() if task.kind in r.kinds]
CELLS += [(m, "sentiment-as-text") for m in ("lora", "full")]  # classification with the label as generated text
CELLS += [("lora", "ner-echo")]  # each sentence read twice, the second reading tagged
CELLS += [("ulmfit", "sentiment-lm")]  # ULMFiT's first stage: the language model tuned on the task's text
GOOD, BAD = ["great", "lovely", "superb", "brilliant"], ["awful", "dull", "poor", "boring"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, list[str]]:
    """A small file of every task's format."""
    d = tmp_path_factory.mktemp("taskdata")
    rng = random.Random(0)
    rows = [{"text": f"the kite was {rng.choice(GOOD if i % 2 else BAD)} today", "label": "pos" if i % 2 else "neg"}
            for i in range(60)]
    (d / "sent.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "ner.conll").write_text("\n".join(f"{rng.choice(['Anna', 'Bram'])}\tB-person\nflew\tO\nto\tO\n"
                                           f"{rng.choice(['Oslo', 'Paris'])}\tB-location\n" for _ in range(40)))
    (d / "sum.jsonl").write_text("".join(json.dumps({"source": [f"Kite {i} is red.", "It flies high."],
                                                     "target": [f"Kite {i} is red."]}) + "\n" for i in range(30)))
    with gzip.open(d / "tr.en.gz", "wt") as f:
        f.write("".join(f"the kite {i}\n" for i in range(30)))
    with gzip.open(d / "tr.de.gz", "wt") as f:
        f.write("".join(f"der Drachen {i}\n" for i in range(30)))
    articles = []
    for a in range(4):
        paras = []
        for p in range(3):
            year = str(1900 + 10 * a + p)
            ctx = f"Kite {a}{p} was built in {year} by Anna."
            paras.append({"context": ctx, "qas": [
                {"id": f"q{a}{p}", "question": f"When was kite {a}{p} built?", "is_impossible": False,
                 "answers": [{"text": year, "answer_start": ctx.index(year)}]},
                {"id": f"u{a}{p}", "question": f"Who painted kite {a}{p}?", "is_impossible": True, "answers": []}]})
        articles.append({"title": f"Article {a}", "paragraphs": paras})
    (d / "squad.json").write_text(json.dumps({"version": "v2.0", "data": articles}, indent=1))
    return {"sentiment": [str(d / "sent.jsonl")], "ner": [str(d / "ner.conll")], "summarise": [str(d / "sum.jsonl")],
            "translate": [str(d / "tr.en.gz"), str(d / "tr.de.gz")], "qa": [str(d / "squad.json")]}


def settings(method: str, task: str, data, tiny_model: Path, out: Path, **kw) -> dict:
    return {**dict(task=task, data=data[task], method=method, model=str(tiny_model), out=str(out), bf16="false",
                   epochs=2, batch_size=8, max_new_tokens=6, test_fraction=0.25 if task == "qa" else 0.1),
            **({"learning_rate": 5e-3} if method != "feature" else {}), **kw}


def metric_range(task: str) -> float:
    return 100.0 if task in ("translate", "qa") else 1.0


@pytest.mark.parametrize("method,task", CELLS, ids=[f"{m}-{t}" for m, t in CELLS])
def test_method_x_task(method, task, data, tiny_model, tmp_path):
    seen = {}

    class Spy(TaskMethod):
        def train(self, s, prep, run):
            trained = super().train(s, prep, run)
            if trained.objects:
                seen["params"] = {n: (p.detach().float().clone(), p.requires_grad)
                                  for n, p in trained.objects[0].named_parameters()}
            return trained

    out = tmp_path / f"{method}-{task}"
    as_text, echo, lm = (task.endswith(suffix) for suffix in ("-as-text", "-echo", "-lm"))
    task = task.split("-")[0]
    s = TaskSettings(**settings(method, task, data, tiny_model, out, label_as_text=as_text, echo=echo,
                                ulmfit_lm_epochs=int(lm)))
    result = lifecycle.run(Spy(), s, log=lambda *a: None)

    audit = json.loads((out / "audit.json").read_text())
    lifecycle.validate_audit_file(audit)
    metrics = audit["after"]["task_metrics"]
    main = metrics[TASKS[task].metric]
    assert 0.0 <= main <= metric_range(task), metrics
    assert result.measures and all(0.0 <= m.after <= 1.0 for m in result.measures)
    cost = json.loads((out / "cost.json").read_text())
    assert 0 < cost["trainable_params"] <= cost["total_params"] and cost["train_seconds"] >= 0 and cost["tokens_per_second"] > 0
    for name in ("config.yaml", "report.html", "data/train.jsonl", "data/test.jsonl"):
        assert (out / name).exists(), name
    if method == "feature":
        assert (out / "task" / "classifier.safetensors").exists() and not seen
        return
    losses = [loss for _, loss in result.training.train_loss]
    assert losses and all(math.isfinite(v) for v in losses)
    base = base_weights(tiny_model)
    if lm:  # the classifier's body is the tuned language model: frozen weights are compared with it
        assert (out / "lm-stage" / "metrics.jsonl").exists()
        tuned = load_file(str(out / "lm" / "model.safetensors"))
        assert any(not torch.equal(tuned[k], v) for k, v in base.items() if k in tuned)
        base = tuned
    moved = frozen = 0
    for name, (value, trainable) in seen["params"].items():
        ref = base.get(base_name(name.replace("modules_to_save.default.", "")))
        same_shape = ref is not None and ref.shape == value.shape
        if trainable:
            moved += bool((same_shape and not torch.equal(ref.float(), value)) or ref is None
                          and ("lora_B" in name and value.abs().sum() > 0 or "score" in name))
        elif same_shape:
            assert torch.equal(ref.float(), value), f"frozen {name} changed"
            frozen += 1
    assert moved > 0, "no trainable parameter changed"
    assert method in ("full", "ulmfit") or frozen > 0, "the method froze nothing"
    if TASKS[task].kind == "generate" or as_text:
        assert audit["after"]["retention"], "a generation task's run asks the general-knowledge questions"


def test_feature_classifier_reloads_to_the_same_predictions(data, tiny_model, tmp_path):
    """`task eval` on a saved run predicts as the run's own audit did (the classifier rebuilt from its arrays)."""
    from knowtune.cli import app

    out = tmp_path / "feat"
    lifecycle.run(TaskMethod(), TaskSettings(**settings("feature", "sentiment", data, tiny_model, out)), log=lambda *a: None)
    test_rows = [json.loads(l) for l in (out / "data" / "test.jsonl").read_text().splitlines()]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps({"text": r["input"], "label": r["target"]}) + "\n" for r in test_rows))
    got = CliRunner().invoke(app, ["task", "eval", str(out), "sentiment", str(test_file), "--json",
                                   "--predictions", str(tmp_path / "pred.jsonl")])
    assert got.exit_code == 0, got.output
    audit = json.loads((out / "audit.json").read_text())
    assert json.loads(got.stdout)["accuracy"] == pytest.approx(audit["after"]["task_metrics"]["accuracy"])
    predicted = [json.loads(l)["prediction"] for l in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert predicted == [r["output"] for r in audit["after"]["probes"]]


def test_ulmfit_unfreezes_one_group_per_epoch_in_a_real_run(data, tiny_model, tmp_path):
    """The metrics log shows the top group alone in epoch 1, and the saved weights of the lower blocks moved only
    after the second epoch began (tiny model: 2 blocks, 3 epochs: groups embeddings / block 0 / block 1 / head)."""
    from knowtune.train.ulmfit import GradualUnfreezing

    states = []
    apply = GradualUnfreezing.apply
    GradualUnfreezing.apply = lambda self, epoch: states.append(apply(self, epoch)) or states[-1]
    try:
        out = tmp_path / "ulmfit"
        lifecycle.run(TaskMethod(), TaskSettings(**settings("ulmfit", "sentiment", data, tiny_model, out, epochs=3,
                                                            ulmfit_blocks_per_group=1, zero_shot=False)), log=lambda *a: None)
    finally:
        GradualUnfreezing.apply = apply
    assert states[0] == [False, False, False, True]  # set up: the head group alone
    assert [False, False, True, True] in states and [False, True, True, True] in states


def test_killed_ulmfit_run_resumes_to_the_same_weights(data, tiny_model, tmp_path):
    args = ["task", "train", "sentiment", *data["sentiment"], "--method", "ulmfit", "--model", str(tiny_model),
            "--bf16", "false", "--epochs", "4", "--batch-size", "4", "--checkpoint-every", "5", "--no-zero-shot",
            "--dev-fraction", "0"]
    assert_kill_and_resume_match(args, tmp_path / "straight", tmp_path / "killed", "task/model.safetensors")


def test_optimisers_from_the_settings():
    from knowtune.errors import KnowtuneError
    from knowtune.train.optim import hf_optimizer, make_optimizer

    p = [torch.nn.Parameter(torch.ones(3))]
    sgd = make_optimizer(p, TaskSettings(task="sentiment", optimizer="sgd", nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    assert sgd.defaults["lr"] == pytest.approx(20 * TaskSettings(task="sentiment").learning_rate)  # sgd's default rate
    assert type(make_optimizer(p, TaskSettings(task="sentiment", optimizer="adam", weight_decay=0.1))) is torch.optim.Adam
    assert type(make_optimizer(p, TaskSettings(task="sentiment"))) is torch.optim.AdamW
    assert hf_optimizer(TaskSettings(task="sentiment", optimizer="sgd", momentum=0.5)) == \
        {"optim": "sgd", "optim_args": "momentum=0.5,nesterov=False"}
    with pytest.raises(KnowtuneError, match="adamw"):
        hf_optimizer(TaskSettings(task="sentiment", optimizer="adam", weight_decay=0.1))
    # Adam's L2 and AdamW's decoupled decay differ after one step on the same gradient
    a, w = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    for param, name in ((a, "adam"), (w, "adamw")):
        opt = make_optimizer([param], TaskSettings(task="sentiment", optimizer=name, weight_decay=0.5, learning_rate=0.1))
        param.grad = torch.tensor([1.0, -1.0])
        opt.step()
    assert not torch.allclose(a, w)


def test_compare_prints_one_table_and_writes_the_plot(data, tiny_model, tmp_path):
    from knowtune.cli import app

    out = tmp_path / "cmp"
    got = CliRunner().invoke(app, ["task", "compare", "sentiment", *data["sentiment"], "--methods", "feature,head",
                                   "--model", str(tiny_model), "--out", str(out), "--set", "epochs=1",
                                   "--set", "bf16=false"])
    assert got.exit_code == 0, got.output
    result = json.loads((out / "compare.json").read_text())
    methods = [r["method"] for r in result["rows"]]
    assert methods == ["baseline: majority class", "zero-shot start model", "feature", "head"]
    for r in result["rows"][2:]:
        assert 0 <= r["metrics"]["accuracy"] <= 1 and r["trainable_params"] > 0 and r["peak_memory_mib"] > 0
    assert (out / "compare.png").stat().st_size > 1000 and "| feature |" in (out / "compare.md").read_text()
    assert "methods" in got.output and "majority" in got.output


def test_bad_task_input_names_file_and_line(data, tiny_model, tmp_path):
    from knowtune.cli import app

    bad = tmp_path / "bad.conll"
    bad.write_text("Anna\tB-person\nflew\n")
    got = CliRunner().invoke(app, ["task", "train", "ner", str(bad), "--model", str(tiny_model), "--out", str(tmp_path / "r")])
    assert got.exit_code == 1 and f"{bad}:2" in got.output and "tag" in got.output
    assert not (tmp_path / "r").exists(), "nothing is written before the data passes"
    got = CliRunner().invoke(app, ["task", "train", "ner", str(bad), "--method", "feature"])
    assert got.exit_code == 1
    got = CliRunner().invoke(app, ["task", "train", "ner", *data["ner"], "--method", "feature", "--out", str(tmp_path / "f")])
    assert got.exit_code == 1 and "cannot train" in got.output and "head" in got.output
    got = CliRunner().invoke(app, ["check", "--task", "ner", str(bad)])
    assert got.exit_code == 1 and f"{bad}:2" in got.output
    got = CliRunner().invoke(app, ["check", "--task", "translate", *data["translate"]])
    assert got.exit_code == 0 and "30 examples" in " ".join(got.output.split())


def test_echo_tags_the_second_reading(tiny_model):
    from transformers import AutoTokenizer

    from knowtune.train.classic.predict import encode_words

    tok = AutoTokenizer.from_pretrained(tiny_model)
    words = ["Anna", "flew", "to", "Oslo"]
    once, first = encode_words(tok, words, 64)
    twice, first2 = encode_words(tok, words, 64, echo=True)
    assert twice[-len(once):] == once and len(twice) > 2 * len(once)
    assert [twice[i] for i in first2] == [once[i] for i in first] and min(first2) > len(once)


@pytest.mark.parametrize("task", ["sentiment", "summarise"])
def test_dropout_reaches_the_built_modules(task, tiny_model):
    from knowtune.eval.tasks import get_task
    from knowtune.train.classic.trainer import build_model

    s = TaskSettings(task=task, model=str(tiny_model), dropout=0.3)
    model, _ = build_model(get_task(task), s, ["neg", "pos"], log=lambda *a: None)
    rates = [m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")]
    assert rates and all(r == 0.3 for r in rates)
    assert model.config.attention_dropout == 0.3


@pytest.mark.parametrize("task", ["sentiment", "ner"])
def test_dense_head_with_dp_sgd(task, data, tiny_model, tmp_path):
    """task train --method head --dp-epsilon: only the head moves, the epsilon spent is in audit.json; methods
    Opacus cannot train per example are refused before a run folder exists."""
    from safetensors.torch import load_file

    from knowtune.errors import KnowtuneError

    out = tmp_path / "run"
    result = lifecycle.run(TaskMethod(), TaskSettings(**settings("head", task, data, tiny_model, out, dp_epsilon=8.0,
                                                                 dp_delta=1e-3, batch_size=8, epochs=2,
                                                                 eval=data[task])),
                           log=lambda *a: None)
    p = result.privacy
    assert p and 0 < p["epsilon"] <= 8.1 and p["records"] == len((out / "data" / "train.jsonl").read_text().splitlines())
    lifecycle.validate_audit_file(json.loads((out / "audit.json").read_text()))
    saved = load_file(str(out / "task" / "model.safetensors"))
    start = load_file(str(tiny_model / "model.safetensors"))
    head = [k for k in saved if k.startswith("score.")]
    assert head and all(torch.isfinite(saved[k]).all() for k in head)
    body = [k for k in saved if k.startswith("model.") and k in start]
    assert body and all(torch.equal(saved[k].float(), start[k].float()) for k in body)  # the LLM is untouched
    with pytest.raises(KnowtuneError, match="cannot train --method freeze"):
        lifecycle.run(TaskMethod(), TaskSettings(**settings("freeze", task, data, tiny_model, tmp_path / "r2",
                                                            dp_epsilon=8.0, dp_delta=1e-3, eval=data[task])),
                      log=lambda *a: None)
    with pytest.raises(KnowtuneError, match="--eval FILE"):  # a held-out split chosen by the data is refused
        lifecycle.run(TaskMethod(), TaskSettings(**settings("head", task, data, tiny_model, tmp_path / "r2",
                                                            dp_epsilon=8.0, dp_delta=1e-3)), log=lambda *a: None)
    assert not (tmp_path / "r2").exists()
