"""`knowtune task train TASK DATA... --method M`: fine-tune for a task (issue 19) with one of the classic
transfer-learning methods (`train/classic`), as a recipe read top to bottom.

prepare  read the task's files (`eval/tasks.py`: readers and metric), hold out the test examples (--eval files,
         else a seeded share; QA by article) and the dev examples early stopping scores
train    `feature`: encode the texts with the frozen LLM, fit the classifier; every other method: the Trainer
         of `classic/trainer.py` with the recipe's trainable weights, early stopping on the dev metric; its cost
         (trainable parameters, time, peak memory, tokens/s) goes to cost.json
audit    the task's metric on the test examples, from the start model (zero-shot, where it can do the task
         at all) and from the saved run loaded as `knowtune task eval` loads it; generation tasks also ask the
         general-knowledge questions (forgetting)

The lifecycle (`train/lifecycle.py`) does the rest: run folder, saving, audit.json, the report, --resume.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from knowtune.config import EpochSettings, GenerationGroup, LoraSettings, OptimSettings, RunSettings
from knowtune.errors import KnowtuneError
from knowtune.eval.audit import AuditSet
from knowtune.eval.tasks import (TASKS, Example, Task, correct, example_row, get_task, labels_as_text, labels_of,
                                 language_options, split)
from knowtune.io import write_json
from knowtune.train.lifecycle import Measure, Method, Prepared, Run, Trained
from knowtune.train.private import PrivacySettings, plan

RATES = {"feature": 1e-3, "head": 1e-3, "freeze": 5e-5, "ulmfit": 3e-4, "lora": 5e-4, "dora": 5e-4, "full": 3e-5}
LONG_INPUT_TASKS = ("qa", "summarise", "summarize")  # passages and abstracts: max_length 384 by default, else 128
SGD_RATE_FACTOR = 20  # sgd's default rate is the method's Adam rate times this


class TaskSettings(RunSettings, EpochSettings, OptimSettings, LoraSettings, GenerationGroup, PrivacySettings):
    DEFAULTS = {"epochs": 3, "batch_size": 16, "warmup_ratio": 0.06, "max_new_tokens": 64}
    task: Literal["sentiment", "classify", "ner", "summarise", "summarize", "translate", "qa"] = Field(..., description="; ".join(f"{t.name}: {t.help}" for t in TASKS.values()) + ".")
    data: list[str] = Field(default_factory=list, description="Training files of the task (translation: source file then target file).")
    method: Literal["feature", "head", "freeze", "ulmfit", "lora", "dora", "full"] = Field("lora", description="feature: frozen LLM features + a scikit-learn classifier; head: a new dense head on the frozen LLM (fine-tuning I); freeze: the top --unfreeze-top blocks and the head; ulmfit: gradual unfreezing, discriminative rates, slanted triangular schedule; lora / dora: adapters; full: every weight (fine-tuning II). Default learning rates: " + ", ".join(f"{k} {v:g}" for k, v in RATES.items()) + f" (sgd: {SGD_RATE_FACTOR}x).")
    eval: list[str] = Field(default_factory=list, description="Test files (same format as the data; translation: source then target). None: --test-fraction of the data is held out (QA: whole articles).")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the data held out as the test set when no --eval file is given.")
    dev: list[str] = Field(default_factory=list, description="Dev files for early stopping. None: --dev-fraction of the training data.")
    dev_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the training data held out to choose the epoch (early stopping) when no --dev file is given.")
    dev_examples: int = Field(300, ge=0, description="Most dev examples scored at each evaluation (0: all; generation tasks write an answer for each: keep it small there).")
    max_train_examples: int = Field(0, ge=0, description="Train on a seeded sample of this many examples (0: all); the report says so.")
    max_test_examples: int = Field(0, ge=0, description="Score a seeded sample of this many test examples (0: all).")
    max_length: int = Field(128, ge=8, description="Longest input text in tokens (default 128; qa and summarise 384); longer ones lose their end (QA: the passage's).")
    dropout: float | None = Field(None, ge=0, lt=1, description="Dropout rate for attention, hidden states and the classifier, where the architecture has them (None: the model's own; a token head's default 0.1).")
    early_stopping_patience: int = Field(2, ge=1, description="Evaluations without a better dev metric before stopping (the best epoch is kept).")
    unfreeze_top: int = Field(2, ge=1, description="freeze: how many of the top transformer blocks train.")
    ulmfit_factor: float = Field(2.6, gt=1, description="ulmfit: each lower layer group's rate is the rate above divided by this.")
    ulmfit_blocks_per_group: int = Field(0, ge=0, description="ulmfit: transformer blocks per layer group (0: as many as spread the blocks over the epochs, so the last epoch trains them all).")
    ulmfit_lm_epochs: int = Field(0, ge=0, description="ulmfit: epochs of the paper's first stage, the language model tuned on the task's own training text before the classifier is built on it (0: skip).")
    layer: int = Field(-1, description="feature: the hidden layer pooled (0: embeddings, -1: the last block).")
    pooling: Literal["mean", "last"] = Field("mean", description="feature: mean of the text's token states, or the last token's.")
    classifier: Literal["logreg", "mlp"] = Field("logreg", description="feature: logistic regression or a small MLP (scikit-learn).")
    classifier_c: float = Field(0.1, gt=0, description="feature: inverse regularisation strength of the logistic regression.")
    echo: bool = Field(False, description="ner: read each sentence twice and tag the second reading, so the state at every word has seen the whole sentence (a causal LLM otherwise sees only the words before it); twice the tokens.")
    label_as_text: bool = Field(False, description="Classification as generation: the model learns to answer with the label's text (its language-model head, no new one); the prediction is the label it finds most likely. Any method but feature and head.")
    zero_shot: bool = Field(True, description="Score the start model on the test examples before training (zero-shot: generation tasks write an answer for each, slow on a CPU; classification compares the labels' likelihood).")
    source_language: str | None = Field(None, description="translate: the source language's name (default: from the file suffix, e.g. .en).")
    target_language: str | None = Field(None, description="translate: the target language's name (default: from the file suffix, e.g. .de).")

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, values):
        """The method's own learning rate unless one is given."""
        if isinstance(values, dict):
            rate = RATES.get(values.get("method", "lora"), 5e-4) * (SGD_RATE_FACTOR if values.get("optimizer") == "sgd" else 1)
            long_inputs = values.get("task") in LONG_INPUT_TASKS
            values = {**cls.DEFAULTS, "learning_rate": rate, "max_length": 384 if long_inputs else 128, **values}
        return values

    def default_run_name(self) -> str:
        return f"{get_task(self.task).name}-{self.method}"


@dataclass
class TaskData:
    task: Task
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    labels: list[str]
    opts: dict  # prompt options (translation's language names)
    note: str = ""
    budget: object = None  # train.private.Budget: DP-SGD's plan (--dp-epsilon)


def sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """A seeded sample of n examples in their original order (all of them when n is 0 or more than there are)."""
    if not n or n >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def prepare_task(s: TaskSettings) -> TaskData:
    task = get_task(s.task)
    if not s.data:
        raise KnowtuneError("No training files given.", fix=f"run `knowtune task train {task.name} FILE...`.")
    if s.label_as_text:
        if task.kind != "sequence":
            raise KnowtuneError("--label-as-text is for classification tasks.", fix=f"leave it out for {task.name}.")
        task = labels_as_text(task)
    method_kinds = _recipe(s.method).kinds
    if task.kind not in method_kinds:
        raise KnowtuneError(f"The {s.method} method cannot train a {task.name} task ({task.kind} task).",
                            fix="choose one of: " + ", ".join(n for n, r in _recipes().items() if task.kind in r.kinds) + ".")
    examples = task.read(s.data)
    if s.eval:
        rest, test = examples, task.read(s.eval)
    else:
        rest, test = split(examples, s.test_fraction, s.seed)
    if s.dev:
        train, dev = rest, task.read(s.dev)
    else:  # DP-SGD trains every example given (no early stopping, nothing held out by the data)
        train, dev = split(rest, 0 if s.dp_epsilon else s.dev_fraction, s.seed + 1)
    notes = []
    if s.max_train_examples and s.max_train_examples < len(train):
        notes.append(f"trained on a seeded sample of {s.max_train_examples:,} of {len(train):,} examples")
    train = sample(train, s.max_train_examples, s.seed)
    if s.max_test_examples and s.max_test_examples < len(test):
        notes.append(f"tested on a seeded sample of {s.max_test_examples:,} of {len(test):,} examples")
    test = sample(test, s.max_test_examples, s.seed)
    dev = sample(dev, s.dev_examples, s.seed)
    if not train or not test:
        raise KnowtuneError(f"{len(train)} training and {len(test)} test examples: both are needed.",
                            fix="give more data, or a test file with --eval.")
    labels = sorted({e.target for e in train}) if s.label_as_text else labels_of(task, train)
    if task.kind == "sequence" or s.label_as_text:
        unseen = sorted({e.target for e in test + dev} - set(labels))
        if unseen:
            raise KnowtuneError(f"Labels in the test or dev data never seen in training: {', '.join(unseen)}.",
                                fix="add training examples of those labels.")
    if task.kind == "token":  # a tag only the test or dev data use still gets an output
        labels = labels_of(task, train + dev + test)
    opts = language_options(task, s.eval or s.data, s.source_language, s.target_language)
    if s.label_as_text:
        opts["labels"] = labels
    if task.kind == "token":
        opts["echo"] = s.echo
    return TaskData(task, train, dev, test, labels, opts, "; ".join(notes))


def _recipes():
    from knowtune.train.classic import RECIPES

    return RECIPES


def _recipe(name: str):
    return _recipes()[name]


def peak_memory_mib() -> float:
    """This process's peak resident memory so far (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class TaskMethod(Method):
    name = "task"
    verb = "task train"
    help = ("Fine-tune for a task (sentiment or other labels, NER, summarisation, translation, extractive QA) with "
            "a classic transfer-learning method: frozen features + classifier, a dense head, the top blocks, ULMFiT, "
            "LoRA / DoRA, or every weight. Scores the task's metric on held-out examples before and after.")
    Settings = TaskSettings
    argument = ("task", "data")
    per_fact = False
    loaded: tuple | None = None  # (run folder, TaskModel) of the after-audit

    def prepare(self, s: TaskSettings, log) -> Prepared:
        if s.dp_epsilon and not s.eval:
            raise KnowtuneError("Under --dp-epsilon the test set must be its own file: holding out part of the "
                                "training data is a choice the data makes, which the privacy accountant does not see.",
                                fix="give the test examples with --eval FILE.")
        if s.dp_epsilon and s.max_train_examples:
            raise KnowtuneError("--max-train-examples samples the training data, a choice the privacy accountant "
                                "does not see.", fix="leave it out with --dp-epsilon (subsample the file yourself).")
        d = prepare_task(s)
        if s.dp_epsilon:
            if s.method != "head":
                raise KnowtuneError(
                    f"--dp-epsilon cannot train --method {s.method}: DP-SGD needs a gradient per training example, "
                    "which Opacus gives for the dense head on the frozen model"
                    + (" (feature trains a scikit-learn classifier, not by gradient)" if s.method == "feature" else
                       "; for the transformer's own blocks it would hold one copy of their gradients per example"),
                    fix="use --method head with --dp-epsilon (or teach --method lora --dp-epsilon for knowledge).")
            d.budget = plan(s, len(d.train), s.epochs, "examples")
            log(f"DP-SGD: {len(d.train):,} training examples, one privacy unit each; noise multiplier "
                f"{d.budget.noise_multiplier:.3f} for epsilon {s.dp_epsilon:g} at delta {d.budget.delta:.2g}; "
                f"{s.epochs} epochs, no early stopping.")
        files = {"train": [example_row(d.task, e) for e in d.train], "dev": [example_row(d.task, e) for e in d.dev],
                 "test": [example_row(d.task, e) for e in d.test]}
        labels = f", {len(d.labels)} labels" if d.labels else ""
        return Prepared(AuditSet(), d, files, f"{d.task.name}: {len(d.train):,} training, {len(d.dev):,} dev and "
                        f"{len(d.test):,} test examples{labels}" + (f" ({d.note})" if d.note else "") + ".")

    def train(self, s: TaskSettings, prep: Prepared, run: Run) -> Trained:
        d: TaskData = prep.data
        recipe = _recipe(s.method)()
        write_json(run.dir / "labels.json", d.labels)
        start = time.time()
        if not recipe.gradient:
            return self._train_features(s, d, run, start)
        if d.budget:
            return self._train_private(recipe, s, d, run)
        from knowtune.train.classic.trainer import train_gradient
        from knowtune.train.hf import train_resumable

        trainer, guard = train_gradient(recipe, d.task, s, d, run, d.opts)
        n_train = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        run.log(f"Training {s.method} on {len(trainer.train_dataset):,} rows ({'bf16' if trainer.args.bf16 else 'fp32'}, "
                f"{s.optimizer}).")
        train_resumable(trainer, run, run.verbose)
        st = trainer.state
        tokens = sum(len(r) for r in trainer.train_dataset["input_ids"]) * (st.epoch or 0)
        from knowtune.io import read_jsonl

        stepping = [m["train_runtime"] for m in read_jsonl(run.metrics) if "train_runtime" in m]  # the Trainer's own time
        self._write_cost(run, s, trainable=_trainable_after(trainer.model, s.method, n_train),
                         total=sum(p.numel() for p in trainer.model.parameters()), seconds=time.time() - start,
                         tokens=tokens, stepping=stepping[-1] if stepping else None)
        model = trainer.model
        if d.task.kind != "generate":
            folder = "task"
            extra = lambda tmp: write_json(tmp / "labels.json", d.labels)  # noqa: E731
        else:
            folder = "adapter" if s.method in ("lora", "dora") else "model"
            extra = None
        return Trained(folder, (model, trainer.processing_class), st.global_step, st.epoch, extra_files=extra,
                       diverged_at=guard.diverged_at, best_checkpoint=st.best_model_checkpoint,
                       best_metric=st.best_metric, note=d.note)

    def _train_private(self, recipe, s: TaskSettings, d: TaskData, run: Run) -> Trained:
        """The dense head trained with DP-SGD (`train/private.py`): one row per training example, its own loss."""
        import torch

        from knowtune.eval.report import privacy_sentence
        from knowtune.train.classic.predict import collate
        from knowtune.models.precision import use_bf16
        from knowtune.train.classic.trainer import build_model, encode_rows, frozen_in_bf16
        from knowtune.train.hf import cpu_training_attention
        from knowtune.train.optim import make_optimizer
        from knowtune.train.private import train_private

        torch.manual_seed(s.seed)
        model, tokenizer = build_model(d.task, s, d.labels, run.log)
        cpu_training_attention(model)
        frozen_in_bf16(model, recipe, use_bf16(s.bf16))
        model, groups = recipe.setup(model, s)
        rows = list(encode_rows(d.task, tokenizer, d.train, d.labels, s, d.opts))

        def per_example(_m, batch):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            labels = batch["labels"]
            if logits.dim() == 2:  # sequence: one label per example
                return torch.nn.functional.cross_entropy(logits, labels, reduction="none")
            losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # (B, T)
            return losses.sum(1) / (labels != -100).sum(1).clamp(min=1)

        budget = train_private(model, rows, lambda b: collate(b, tokenizer.pad_token_id), per_example, s, run,
                               d.budget, lambda m: make_optimizer(groups, s))
        run.log(privacy_sentence(budget.to_json()))
        return Trained("task", (model, tokenizer), budget.steps, float(budget.epochs),
                       extra_files=lambda tmp: write_json(tmp / "labels.json", d.labels), privacy=budget.to_json(),
                       note=d.note)

    def _train_features(self, s: TaskSettings, d: TaskData, run: Run, start: float) -> Trained:
        from knowtune.models.load import load_for_answering
        from knowtune.progress import phase
        from knowtune.train.classic.feature import FeatureClassifier
        from knowtune.train.features import fit_classifier, hidden_features

        model, tokenizer = load_for_answering(s.model, log=run.log, precision=s.bf16)
        texts = [e.input for e in d.train]
        with phase("Encoding the training texts with the frozen model", len(texts), unit="text") as advance:
            x = hidden_features(model, tokenizer, texts, layer=s.layer, pooling=s.pooling, max_length=s.max_length,
                                cache_dir=run.dir / "features", model_ref=s.model, precision=s.bf16, progress=advance)
        with phase(f"Fitting the classifier ({s.classifier})", unit="step"):
            clf = FeatureClassifier.from_pipeline(fit_classifier(x, [e.target for e in d.train], s.classifier, s.seed,
                                                                 s.classifier_c), s.classifier)
        tokens = sum(min(len(tokenizer(t, add_special_tokens=False)["input_ids"]), s.max_length) for t in texts)
        self._write_cost(run, s, trainable=sum(v.size for v in clf.arrays.values()),
                         total=sum(p.numel() for p in model.get_decoder().parameters()) + sum(v.size for v in clf.arrays.values()),
                         seconds=time.time() - start, tokens=tokens)
        return Trained("task", (), 1, 1.0, note=d.note,
                       extra_files=lambda tmp: clf.save(tmp, {"layer": s.layer, "pooling": s.pooling}))

    def _write_cost(self, run: Run, s: TaskSettings, trainable: int, total: int, seconds: float, tokens: float,
                    stepping: float | None = None) -> None:
        """cost.json: trainable and total parameters, the training phase's wall time (loading, dev evaluations and
        checkpoints included), this process's peak memory so far, and real (unpadded) training tokens per second
        of the training loop itself (`stepping`; for `feature`, of the encoding)."""
        write_json(run.dir / "cost.json", {"method": s.method, "trainable_params": int(trainable),
                                           "total_params": int(total), "train_seconds": round(seconds, 1),
                                           "peak_memory_mib": round(peak_memory_mib()),
                                           "tokens_per_second": round(tokens / max(stepping or seconds, 1e-9), 1)})

    def audit(self, s: TaskSettings, prep: Prepared, ref: str, after: bool, log) -> dict:
        """The task's metric on the test examples: the saved run (after), or the start model zero-shot (before;
        a token tagger has no zero-shot form: left out)."""
        from knowtune.progress import phase

        d: TaskData = prep.data
        if after:
            from knowtune.train.classic.predict import load_task_model

            tm = load_task_model(ref, log=log)
        else:
            tm = zero_shot_model(d.task, s, d.labels, log, d.opts) if s.zero_shot else None
            if tm is None:
                return task_audit(d, [], None, [])
        with phase(f"Scoring the {'saved run' if after else 'start model (zero-shot)'} on {len(d.test):,} test examples",
                   len(d.test), unit="example") as advance:
            predictions = tm.predict(d.test, progress=advance)
        retention = []
        if d.task.kind == "generate":
            from knowtune.eval.audit import retention_probes, score_probes
            from knowtune.eval.generate import GenerationSettings

            probes = retention_probes()
            with phase("Asking the general-knowledge questions", len(probes)) as advance:
                retention = score_probes(tm.model, tm.tokenizer, probes, GenerationSettings(max_new_tokens=40), advance)
        return task_audit(d, predictions, d.task.score(d.test, predictions), retention)

    def audit_measures(self, s: TaskSettings, prep: Prepared, before: dict, after: dict) -> list[Measure]:
        """The task's metrics on the test examples, before (zero-shot) and after, as shares."""
        from knowtune.eval.task_compare import hundredths

        task = prep.data.task
        b, a = before.get("task_metrics") or {}, after.get("task_metrics") or {}
        out = []
        for k, v in a.items():
            if isinstance(v, (int, float)) and k != "n":
                scale = 100 if hundredths(task.name, k) else 1
                bv = b.get(k)
                out.append(Measure(f"{task.name}: {k} (test)", None if bv is None else bv / scale, v / scale, "share"))
        return out


def _trainable_after(model, method: str, counted: int) -> int:
    """Trainable parameters over the run: ULMFiT ends with every group unfrozen that it reached."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad) if method == "ulmfit" else counted


@dataclass
class ZeroShot:
    predict: object
    model: object
    tokenizer: object


def zero_shot_model(task: Task, s: TaskSettings, labels: list[str], log, opts: dict | None = None):
    """The start model doing the task without training: generation tasks from the prompt; classification by
    the most likely label text; None for token tagging."""
    from knowtune.models.load import load_for_answering
    from knowtune.train.classic.predict import predict, zero_shot_labels

    if task.kind == "token":
        return None
    model, tokenizer = load_for_answering(s.model, log=log, precision=s.bf16)
    if task.kind == "sequence":
        return ZeroShot(lambda ex, progress=None: zero_shot_labels(model, tokenizer, [e.input for e in ex], labels, progress),
                        model, tokenizer)
    opts = opts if opts is not None else language_options(task, s.eval or s.data, s.source_language, s.target_language)
    return ZeroShot(lambda ex, progress=None: predict(task, model, tokenizer, ex, [], s.max_length, opts, s.max_new_tokens, progress),
                    model, tokenizer)


def task_audit(d: TaskData, predictions: list, metrics: dict | None, retention: list[dict]) -> dict:
    """The audit's dict for a task: one row per test example (right or not), the task's metrics, and the
    general-knowledge rows where the model is a language model."""
    from knowtune.eval.audit import accuracy

    rows = [{"fact_id": None, "style": "plain", "prompt": _shown(e.input), "answer": json.dumps(e.target) if not isinstance(e.target, str) else e.target,
             "aliases": [], "split": "test", "source": e.where, "origin": "task",
             "output": p if isinstance(p, str) else json.dumps(p), "correct": correct(d.task, e, p), "declined": False,
             "confidence": None} for e, p in zip(d.test, predictions)]
    return {"probe_accuracy": accuracy(rows), "retention_accuracy": accuracy(retention), "probes": rows,
            "retention": retention, "unknowns": [], "task_metrics": metrics,
            "labels": {"probes": f"Test examples exactly right ({d.task.name})", "retention": "General knowledge"}}


def _shown(x) -> str:
    if isinstance(x, tuple):
        return f"{x[0]}\n\n{x[1]}"
    return " ".join(x) if isinstance(x, list) else x
