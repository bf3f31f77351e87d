"""The tasks of `knowtune task` (issue 19): for each, how its files are read (`data.tasks`), what kind of
model learns it, the prompt and target of the generation tasks, and the metric the field reports
(`eval.task_metrics`).

Every task's data becomes `Example`s: an input (a text, a list of tokens for NER, a question with its passage
for QA), its gold target (a label, a list of tags, one or more reference texts, the answers) and where it came
from (file:line). A trained model of any method answers through a `Predictor` (`predict(examples)` ->
one prediction per example, in the target's form), so one `score` serves every method and the zero-shot base.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from knowtune.data import tasks as readers
from knowtune.errors import DataError, KnowtuneError
from knowtune.eval import task_metrics

NO_ANSWER = "no answer"  # what a generative QA model says when the passage does not answer (scored as "")
Kind = Literal["sequence", "token", "generate"]


@dataclass
class Example:
    input: Any  # str; list[str] tokens (ner); (question, context) (qa)
    target: Any  # label; list[str] tags (ner); list[str] references / answers (generation, qa: [] unanswerable)
    where: str  # file:line
    group: str = ""  # what splits keep together (qa: the article)


@dataclass(frozen=True)
class Task:
    name: str
    kind: Kind
    metric: str  # the figure the comparison ranks by (a key of `score`'s dict)
    help: str
    read: Callable[[list[str]], list[Example]]
    score: Callable[[list[Example], list], dict]
    prompt: Callable[[Example, dict], str] | None = None  # generation: the user turn
    aliases: tuple[str, ...] = field(default_factory=tuple)
    baseline: tuple[str, Callable[[list[Example], list[Example]], list]] | None = None  # (name, trivial predictor)

    def targets(self, ex: Example) -> list[str]:
        """Generation: the texts a model is trained to write for `ex` (every reference; QA: the first answer, or
        NO_ANSWER)."""
        if self.name == "qa":
            return [ex.target[0] if ex.target else NO_ANSWER]
        return [ex.target] if isinstance(ex.target, str) else list(ex.target)


def label_prompt(ex: Example, opts: dict) -> str:
    """A classification example as a question whose answer is the label's text (zero-shot, and `--label-as-text`)."""
    return f"Text: {ex.input}\n\nWhich label fits this text: {', '.join(opts['labels'])}? Answer with the label only."


def labels_as_text(task: Task) -> Task:
    """A classification task trained as generation: the label's text is the answer to `label_prompt` (predicted
    as the label the model finds most likely there)."""
    from dataclasses import replace

    return replace(task, kind="generate", prompt=label_prompt)


def _labelled(paths: list[str]) -> list[Example]:
    return [Example(x.text, x.label, x.source) for x in readers.read_labelled(paths)]


def _conll(paths: list[str]) -> list[Example]:
    return [Example(s.tokens, s.tags, s.source) for p in paths for s in readers.read_conll(p)]


def _pairs(paths: list[str]) -> list[Example]:
    """JSONL-like rows with source / target, or two aligned plain (or .gz) files."""
    tables = [p for p in paths if Path(p).suffix.lower() in readers.SUFFIXES]
    plain = [p for p in paths if p not in tables]
    if len(plain) % 2:
        raise DataError(f"{plain[-1]}: a plain-text file needs its aligned partner (source file, then target file).",
                        fix="give parallel text as two files, source first: train.en train.de.")
    out = [Example(x.source, x.targets, x.where) for p in tables for x in readers.read_pairs(p)]
    for src, tgt in zip(plain[::2], plain[1::2]):
        out += [Example(x.source, x.targets, x.where) for x in readers.read_parallel(src, tgt)]
    return out


def _squad(paths: list[str]) -> list[Example]:
    return [Example((q.question, q.context), q.answers, f"{p}:{q.id}", q.title) for p in paths
            for q in readers.read_squad(p)]


def _score_labels(examples: list[Example], predicted: list[str]) -> dict:
    return task_metrics.classification([e.target for e in examples], predicted)


def _score_tags(examples: list[Example], predicted: list[list[str]]) -> dict:
    return task_metrics.entities([e.target for e in examples], predicted)


def _score_summary(examples: list[Example], predicted: list[str]) -> dict:
    return task_metrics.rouge(predicted, [e.target for e in examples])


def _score_translation(examples: list[Example], predicted: list[str]) -> dict:
    n = min(len(e.target) for e in examples)  # sacreBLEU wants as many references for every example
    return task_metrics.translation(predicted, [e.target[:n] for e in examples])


def _score_qa(examples: list[Example], predicted: list[str]) -> dict:
    return task_metrics.squad([no_answer_as_empty(p) for p in predicted], [e.target for e in examples])


def no_answer_as_empty(text: str) -> str:
    """A generated QA answer as SQuAD v2 scores it: saying there is no answer is the empty answer."""
    norm = task_metrics.normalise_answer(text)
    return "" if not norm or norm.startswith(task_metrics.normalise_answer(NO_ANSWER)) else text.strip()


LANGUAGES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
             "nl": "Dutch", "cs": "Czech", "pl": "Polish", "ru": "Russian", "zh": "Chinese", "ja": "Japanese"}


def _summarise_prompt(ex: Example, opts: dict) -> str:
    return f"Summarise this text in one sentence.\n\n{ex.input}"


def _translate_prompt(ex: Example, opts: dict) -> str:
    return f"Translate from {opts.get('source_language') or 'the source language'} to " \
           f"{opts.get('target_language') or 'the target language'}:\n\n{ex.input}"


def _qa_prompt(ex: Example, opts: dict) -> str:
    question, context = ex.input
    return (f"Answer the question with a short phrase from the passage. If the passage does not answer it, say "
            f"\"{NO_ANSWER}\".\n\nPassage: {context}\n\nQuestion: {question}")


def majority(train: list[Example], test: list[Example]) -> list:
    """Every test example gets the training data's most frequent label."""
    from collections import Counter

    top = Counter(e.target for e in train).most_common(1)[0][0]
    return [top] * len(test)


def all_outside(train: list[Example], test: list[Example]) -> list:
    """Every word tagged O (no entity)."""
    return [["O"] * len(e.input) for e in test]


def lead_sentence(train: list[Example], test: list[Example]) -> list:
    """The source's first sentence."""
    import re

    return [re.split(r"(?<=[.!?])\s+", e.input.strip(), maxsplit=1)[0] for e in test]


def copy_source(train: list[Example], test: list[Example]) -> list:
    """The source text unchanged (names and numbers often carry over)."""
    return [e.input for e in test]


def no_answer(train: list[Example], test: list[Example]) -> list:
    """Always "no answer" (right on every unanswerable SQuAD 2.0 question)."""
    return [""] * len(test)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("sentiment", "sequence", "accuracy", "text classification (sentiment or any labels): rows with text and "
         "label (JSONL, CSV, Parquet), or one plain-text file per label; accuracy and macro-F1", _labelled,
         _score_labels, aliases=("classify",), baseline=("majority class", majority)),
    Task("ner", "token", "f1", "named entities: CoNLL files (token TAB tag, a blank line between sentences, BIO "
         "tags); entity-level F1 (seqeval)", _conll, _score_tags, baseline=("no entities (all O)", all_outside)),
    Task("summarise", "generate", "rouge1", "summarisation: JSONL rows with source and target (a list target: "
         "several references); ROUGE-1/2/L, best over the references", _pairs, _score_summary, _summarise_prompt,
         aliases=("summarize",), baseline=("lead sentence", lead_sentence)),
    Task("translate", "generate", "chrf", "translation: two aligned files (plain or .gz, source first) or JSONL "
         "rows with source and target; sacreBLEU BLEU and chrF", _pairs, _score_translation, _translate_prompt,
         baseline=("copy the source", copy_source)),
    Task("qa", "generate", "f1", "extractive QA: SQuAD JSON (v1.1 or v2.0, unanswerable questions too); exact "
         "match and F1 with SQuAD's normalisation", _squad, _score_qa, _qa_prompt,
         baseline=("always no answer", no_answer)),
)}


def get_task(name: str) -> Task:
    for t in TASKS.values():
        if name == t.name or name in t.aliases:
            return t
    raise KnowtuneError(f"Unknown task {name!r}.", fix=f"choose one of: {', '.join(TASKS)}.")


def language_options(task: Task, paths: list[str], source: str | None, target: str | None) -> dict:
    """Translation's language names: as given, else read from aligned files' suffixes (train.en / train.de)."""
    if task.name != "translate":
        return {}
    codes = [Path(p[:-3] if p.endswith(".gz") else p).suffix.lstrip(".").lower() for p in paths[:2]]
    named = [LANGUAGES.get(c) for c in codes] if len(codes) == 2 else [None, None]
    return {"source_language": source or named[0], "target_language": target or named[1]}


def split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(rest, held) with about `fraction` of the examples held out, seeded; examples of one group (a QA article)
    stay on one side."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    groups = list(dict.fromkeys(e.group or e.where for e in examples))
    random.Random(seed).shuffle(groups)
    if len(groups) == 1:
        raise DataError(f"All {len(examples)} examples come from one article ({groups[0]}): nothing to hold out by "
                        "article.", fix="give an evaluation file with --eval, or more articles.")
    sizes: dict[str, int] = {}
    for e in examples:
        sizes[e.group or e.where] = sizes.get(e.group or e.where, 0) + 1
    held, n = set(), 0
    for g in groups:
        if n >= fraction * len(examples) or len(held) == len(groups) - 1:
            break
        held.add(g)
        n += sizes[g]
    return ([e for e in examples if (e.group or e.where) not in held],
            [e for e in examples if (e.group or e.where) in held])


def labels_of(task: Task, examples: list[Example]) -> list[str]:
    """The label set a classifier head predicts: the labels (sequence) or the BIO tags (token), sorted."""
    if task.kind == "sequence":
        return sorted({e.target for e in examples})
    if task.kind == "token":
        return sorted({t for e in examples for t in e.target}, key=lambda t: (t != "O", t[2:], t[:1]))
    return []


def example_row(task: Task, ex: Example, prediction=None) -> dict:
    """An example as a row of the run's data/ files and of the audit."""
    row = {"input": list(ex.input) if isinstance(ex.input, tuple) else ex.input, "target": ex.target, "where": ex.where}
    if prediction is not None:
        row["prediction"] = prediction
    return row


def correct(task: Task, ex: Example, prediction) -> bool:
    """Whether one prediction is right, for the audit's per-example rows: the label, every tag, any reference
    word for word (normalised as SQuAD does)."""
    if task.kind != "generate":
        return prediction == ex.target
    norm = task_metrics.normalise_answer
    pred = no_answer_as_empty(prediction) if task.name == "qa" else prediction
    return norm(pred) in {norm(t) for t in (task.targets(ex) if ex.target else [""])}
