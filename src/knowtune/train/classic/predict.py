"""Predictions of a task model, whatever trained it: one function per kind of model, used alike by early
stopping (the live model), the audit, `knowtune task eval` and the benchmark (a saved run, or the zero-shot
base model); and the encoding that training shares with them, so a model is always read the way it was taught.

- sequence classifier: the label of the highest logit (read at the text's last token);
- token classifier: each word's tag, read at the word's first sub-token;
- generation (and zero-shot): the chat template's greedy answer;
- zero-shot classification: the label whose text the model finds most likely after the question.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from knowtune.eval.tasks import Example, Task
from knowtune.models.precision import answering_precision

BATCH = 32


def encode_text(tokenizer, text: str, max_length: int) -> list[int]:
    """A text to classify as token ids (its end cut at max_length: the label is read at the last one kept)."""
    return tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]


def encode_words(tokenizer, words: list[str], max_length: int, echo: bool = False) -> tuple[list[int], list[int]]:
    """(ids, first) for a pre-split sentence: each word encoded as it reads in running text (a space before
    all but the first), and the index of each word's first sub-token (words cut off by max_length dropped).
    With `echo` the sentence is read twice (a newline between) and `first` points into the second reading, so
    a causal model's state at each word has seen the whole sentence, the words after it included."""
    ids: list[int] = []
    first: list[int] = []
    for i, w in enumerate(words):
        piece = tokenizer((" " if i else "") + w, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id or 0]
        if len(ids) + 1 > max_length:
            break
        first.append(len(ids))
        ids += piece[: max_length - len(ids)]
    if echo:
        prefix = ids + tokenizer("\n", add_special_tokens=False)["input_ids"]
        return prefix + ids, [len(prefix) + f for f in first]
    return ids, first


ROOM = 192  # tokens a generation row may take beyond max_length: the instruction, the template and the answer


def clip(tokenizer, text: str, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def chat_prompt(task: Task, ex: Example, opts: dict, tokenizer=None, max_length: int | None = None) -> list[dict]:
    """The user turn of a generation task; with a tokenizer, the source text (QA: the passage) first cut to
    `max_length` tokens, so an over-long input loses its end, never the question or the answer."""
    if tokenizer is not None and max_length:
        if isinstance(ex.input, tuple):
            ex = Example((ex.input[0], clip(tokenizer, ex.input[1], max_length)), ex.target, ex.where, ex.group)
        else:
            ex = Example(clip(tokenizer, ex.input, max_length), ex.target, ex.where, ex.group)
    return [{"role": "user", "content": task.prompt(ex, opts)}]


def encode_example(task: Task, ex: Example, tokenizer, labels: list[str], max_length: int, opts: dict) -> list[dict]:
    """The training rows of one example: input_ids and labels (sequence: the label's index; token: each word's
    first sub-token its tag's index, -100 elsewhere; generation: the answer's tokens, -100 on the prompt; one
    row per reference)."""
    if task.kind == "sequence":
        return [{"input_ids": encode_text(tokenizer, ex.input, max_length), "labels": labels.index(ex.target)}]
    if task.kind == "token":
        ids, first = encode_words(tokenizer, ex.input, max_length, opts.get("echo", False))
        tags = [-100] * len(ids)
        for pos, tag in zip(first, ex.target):
            tags[pos] = labels.index(tag)
        return [{"input_ids": ids, "labels": tags}]
    from knowtune.data.augment import TrainItem
    from knowtune.train.tokenize import encode_labelled

    rows = [encode_labelled(tokenizer, TrainItem("chat", chat_prompt(task, ex, opts, tokenizer, max_length), target,
                                                 "task"), max_length + ROOM) for target in task.targets(ex)]
    return [r for r in rows if any(t != -100 for t in r["labels"])]


def collate(rows: list[dict], pad_id: int, multiple: int | None = 16) -> dict:
    """A batch of encoded rows, right-padded to a multiple of `multiple` tokens (labels with -100)."""
    import torch

    from knowtune.eval.generate import pad_batch

    ids, mask = pad_batch([r["input_ids"] for r in rows], pad_id, multiple=multiple)
    batch = {"input_ids": ids, "attention_mask": mask}
    if rows and "labels" in rows[0]:
        if isinstance(rows[0]["labels"], list):
            labels = torch.full_like(ids, -100)
            for i, r in enumerate(rows):
                labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
            batch["labels"] = labels
        else:
            batch["labels"] = torch.tensor([r["labels"] for r in rows])
    return batch


def predict(task: Task, model, tokenizer, examples: list[Example], labels: list[str], max_length: int, opts: dict,
            max_new_tokens: int = 64, progress=None) -> list:
    """One prediction per example from a live model of the task's kind (a classifier, or a causal LM for a
    generation task), in the target's form."""
    import torch

    if task.kind == "generate" and opts.get("labels"):  # labels as text: the most likely label
        return zero_shot_labels(model, tokenizer, [ex.input for ex in examples], opts["labels"], progress)
    if task.kind == "generate":
        from knowtune.eval.generate import GenerationSettings, generate_answers

        return generate_answers(model, tokenizer, [("chat", chat_prompt(task, ex, opts, tokenizer, max_length)) for ex in examples],
                                GenerationSettings(max_new_tokens=max_new_tokens), progress)
    from knowtune.eval.generate import pad_batch

    device = next(model.parameters()).device
    if task.kind == "token":  # each word's first sub-token, where its tag is read
        encoded, firsts = zip(*[encode_words(tokenizer, ex.input, max_length, opts.get("echo", False)) for ex in examples])
    else:
        encoded = [encode_text(tokenizer, ex.input, max_length) for ex in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), BATCH):
            chunk = order[start: start + BATCH]
            ids, mask = pad_batch([encoded[i] for i in chunk], tokenizer.pad_token_id, multiple=16)
            with torch.no_grad(), answering_precision(model):
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            for row, i in enumerate(chunk):
                if task.kind == "sequence":
                    out[i] = labels[int(logits[row].argmax())]
                else:
                    best = logits[row].argmax(-1).tolist()
                    tags = [labels[best[p]] for p in firsts[i]]
                    out[i] = tags + ["O"] * (len(examples[i].input) - len(tags))  # words past max_length
            if progress:
                progress(len(chunk))
    finally:
        model.train(was_training)
    return out


def zero_shot_labels(model, tokenizer, texts: list[str], labels: list[str], progress=None) -> list[str]:
    """The zero-shot base model's label for each text: the label whose words are most likely (mean log-probability
    per token) as the answer to "Which of these labels fits this text?" in the chat template."""
    import torch

    from knowtune.eval.generate import pad_batch, render_prompt
    from knowtune.eval.tasks import label_prompt

    device = next(model.parameters()).device
    label_ids = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    out = []
    for text in texts:
        prompt = render_prompt(tokenizer, "chat", [{"role": "user", "content":
                               label_prompt(Example(text, None, ""), {"labels": labels})}])
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        rows = [p + ids for ids in label_ids]
        ids, mask = pad_batch(rows, tokenizer.pad_token_id)
        with torch.no_grad(), answering_precision(model):
            logp = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().log_softmax(-1)
        scores = []
        for i, r in enumerate(rows):
            targets = torch.tensor(r[len(p):], device=device)
            scores.append(float(logp[i, len(p) - 1: len(r) - 1].gather(-1, targets[:, None]).mean()))
        out.append(labels[max(range(len(labels)), key=scores.__getitem__)])
        if progress:
            progress(1)
    return out


@dataclass
class TaskModel:
    """A saved task run, ready to predict: `predict(examples, progress=None)` -> one prediction per example."""
    predict: Callable
    model: object
    tokenizer: object
    settings: dict


def load_task_model(run: str | Path, log=print) -> TaskModel:
    """A saved `knowtune task train` run, loaded as it was trained (a classifier with its head, an adapter
    merged, or the frozen LLM and the feature classifier)."""
    import yaml

    from knowtune.errors import KnowtuneError
    from knowtune.eval.tasks import get_task
    from knowtune.models.load import load_for_answering
    from knowtune.train.classic.feature import DESCRIPTION, FeatureClassifier

    run = Path(run)
    if not (run / "config.yaml").exists():
        raise KnowtuneError(f"{run} is not a knowtune run folder (no config.yaml).", fix="give the --out folder of `knowtune task train`.")
    s = yaml.safe_load((run / "config.yaml").read_text())
    if "task" not in s:
        raise KnowtuneError(f"{run} is not a task run.", fix="give the --out folder of `knowtune task train`, or a model to score zero-shot.")
    task = get_task(s["task"])
    label_texts = []
    if s.get("label_as_text"):
        import json

        from knowtune.eval.tasks import labels_as_text

        task, label_texts = labels_as_text(task), json.loads((run / "labels.json").read_text())
    if (run / "task" / DESCRIPTION).exists():  # feature: the frozen LLM's features + the classifier
        from knowtune.train.features import hidden_features

        clf, desc = FeatureClassifier.load(run / "task")
        model, tokenizer = load_for_answering(s["model"], log=log, precision=s.get("bf16", "auto"))

        def predict_features(examples, progress=None):
            x = hidden_features(model, tokenizer, [e.input for e in examples], layer=desc["layer"],
                                pooling=desc["pooling"], max_length=s["max_length"], precision=s.get("bf16", "auto"),
                                progress=progress)
            return clf.predict(x)
        return TaskModel(predict_features, model, tokenizer, s)
    if task.kind == "generate":
        model, tokenizer = load_for_answering(str(run), log=log)
        labels = []
    elif (run / "task").exists():
        model, tokenizer = load_classifier(run / "task", s, task.kind, log)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    else:
        raise KnowtuneError(f"{run} holds no trained task model.", fix=f"finish it with `knowtune task train ... --out {run} --resume`.")
    from knowtune.eval.tasks import language_options

    opts = language_options(task, s.get("eval") or s.get("data") or [], s.get("source_language"), s.get("target_language"))
    if label_texts:
        opts["labels"] = label_texts
    if task.kind == "token":
        opts["echo"] = bool(s.get("echo"))

    def predict_model(examples, progress=None):
        return predict(task, model, tokenizer, examples, labels, s["max_length"], opts, s.get("max_new_tokens", 64), progress)
    return TaskModel(predict_model, model, tokenizer, s)


def load_classifier(folder: Path, s: dict, kind: str, log=print):
    """A task run's classifier: the saved model, or the base with a new head + the saved adapter (and head)."""
    import json

    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        from knowtune.models.load import with_new_head

        labels = json.loads((folder / "labels.json").read_text())
        base, tokenizer = with_new_head(s["model"], kind, len(labels), labels=labels, log=log)
        model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    else:
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

        from knowtune.models.load import load_tokenizer

        auto = AutoModelForSequenceClassification if kind == "sequence" else AutoModelForTokenClassification
        model, tokenizer = auto.from_pretrained(str(folder)), load_tokenizer(str(folder))
    model.eval()
    import torch

    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer
