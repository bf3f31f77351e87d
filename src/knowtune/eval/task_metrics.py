"""The metric each task's field reports (issue 19), from the libraries the field uses: accuracy and macro-F1
(scikit-learn), entity-level F1 (seqeval), ROUGE (rouge-score, best over references), BLEU and chrF
(sacreBLEU). SQuAD's exact match and F1 are written here from the task's definition (lower case, no
punctuation, no articles, whitespace collapsed; F1 over the bag of tokens; an unanswerable question scores 1
only for an empty answer), because `evaluate` fetches its metric scripts from a hub at run time."""

from __future__ import annotations

import re
import string
from collections import Counter

PUNCTUATION = frozenset(string.punctuation)


def classification(gold: list[str], predicted: list[str]) -> dict:
    """Accuracy and macro-F1 (each label's F1 averaged; a label never predicted counts as F1 0)."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = sorted(set(gold))
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))}


def entities(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Entity-level precision, recall and F1 over BIO tags (an entity counts only with its exact span and
    type), overall and per type."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {k: {"f1": float(v["f1-score"]), "support": int(v["support"])} for k, v in report.items()
                if not k.endswith(" avg")}
    return {"f1": float(f1_score(gold, predicted, zero_division=0)),
            "precision": float(precision_score(gold, predicted, zero_division=0)),
            "recall": float(recall_score(gold, predicted, zero_division=0)), "per_type": per_type}


def rouge(predicted: list[str], references: list[list[str]]) -> dict:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (with stemming), each the best over an example's references,
    averaged over examples."""
    from rouge_score import rouge_scorer

    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for pred, refs in zip(predicted, references, strict=True):
        best = scorer.score_multi(refs, pred)
        for k in kinds:
            totals[k] += best[k].fmeasure
    n = max(1, len(predicted))
    return {k: totals[k] / n for k in kinds}


def translation(predicted: list[str], references: list[list[str]]) -> dict:
    """Corpus BLEU and chrF (sacreBLEU's defaults; every example needs the same number of references)."""
    import sacrebleu

    streams = [list(r) for r in zip(*references, strict=True)]  # sacreBLEU wants one list per reference position
    return {"bleu": float(sacrebleu.corpus_bleu(predicted, streams).score),
            "chrf": float(sacrebleu.corpus_chrf(predicted, streams).score)}


def normalise_answer(text: str) -> str:
    """SQuAD's comparison form: lower case, punctuation and the articles a / an / the removed, spaces collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(pred: str, gold: str) -> float:
    p, g = normalise_answer(pred).split(), normalise_answer(gold).split()
    if not p or not g:
        return float(p == g)  # both empty: no answer, rightly
    common = sum((Counter(p) & Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def squad(predicted: list[str], answers: list[list[str]]) -> dict:
    """Exact match and F1 in percent, each the best over a question's gold answers; a question with no gold
    answer (SQuAD 2.0) is right only when the prediction is empty. Also each on the answerable and the
    unanswerable questions apart."""
    em, f1, has = [], [], []
    for pred, golds in zip(predicted, answers, strict=True):
        golds = golds or [""]
        em.append(max(float(normalise_answer(pred) == normalise_answer(g)) for g in golds))
        f1.append(max(_f1(pred, g) for g in golds))
        has.append(golds != [""])

    def mean(xs, keep):
        kept = [x for x, k in zip(xs, keep) if k]
        return 100 * sum(kept) / len(kept) if kept else None

    every = [True] * len(em)
    no = [not h for h in has]
    return {"exact": mean(em, every), "f1": mean(f1, every), "has_answer_exact": mean(em, has),
            "has_answer_f1": mean(f1, has), "no_answer_exact": mean(em, no), "n": len(em)}
