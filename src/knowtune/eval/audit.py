"""The knowledge audit: what the model answers from held-out phrasings, what it still knows in general,
and, comparing two audits, which facts were learned, already known, not learned or forgotten."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from knowtune.data.augment import general_rows
from knowtune.data.knowledge import Probe, question_text
from knowtune.eval.calibration import expected_calibration_error
from knowtune.eval.generate import GenerationSettings, generate_scored
from knowtune.text import declines, matches


def retention_probes() -> list[Probe]:
    """The general-knowledge set knowtune ships (never used for training or replay)."""
    return [Probe(None, "chat", [{"role": "user", "content": r["question"]}], r["answer"], r.get("aliases", []),
                  "retention", "knowtune:retention", "retention") for r in general_rows("retention")]


def score_probes(model, tokenizer, probes: list[Probe], settings: GenerationSettings | None = None,
                 progress=None) -> list[dict]:
    answers = generate_scored(model, tokenizer, [(p.style, p.prompt) for p in probes], settings, progress)
    return [{**p.to_row(), "output": a, "correct": matches(a, p.answer, p.aliases) if p.answer else False,
             "declined": declines(a), "confidence": round(c, 4)} for p, (a, c) in zip(probes, answers)]


def accuracy(rows: list[dict]) -> float | None:
    return sum(r["correct"] for r in rows) / len(rows) if rows else None


def run_audit(model, tokenizer, probes: list[Probe], retention: list[Probe] | None = None,
              settings: GenerationSettings | None = None, progress=None, unknowns: list[Probe] = (),
              grounding=None) -> dict:
    """Score held-out probes, the retention set and unknown questions; returns a JSON-ready dict. With a
    `grounding.Grounding`, also what declining ungrounded answers (`--grounded`) would do."""
    retention = retention_probes() if retention is None else retention
    unknowns = list(unknowns)
    scored = score_probes(model, tokenizer, probes + retention + unknowns, settings, progress)
    probe_rows, retention_rows = scored[:len(probes)], scored[len(probes):len(probes) + len(retention)]
    unknown_rows = scored[len(probes) + len(retention):]
    if grounding is not None:
        for r in scored:
            r["grounded"] = grounding.check(question_text(r["prompt"]), r["output"])
    return {**(grounded_figures(probe_rows, retention_rows, unknown_rows) if grounding is not None else {}),
            "probe_accuracy": accuracy(probe_rows), "retention_accuracy": accuracy(retention_rows),
            "unknowns_declined": declined_share(unknown_rows), "over_refusal_probes": declined_share(probe_rows),
            "over_refusal_retention": declined_share(retention_rows),
            "calibration_error": expected_calibration_error(probe_rows + retention_rows),
            "probes": probe_rows, "retention": retention_rows, "unknowns": unknown_rows}


def grounded_figures(probe_rows: list[dict], retention_rows: list[dict], unknown_rows: list[dict]) -> dict:
    from knowtune.eval.grounding import gated

    probes = gated(probe_rows)
    return {"grounded_unknowns_declined": gated(unknown_rows)["declined"],
            "grounded_over_refusal_probes": probes["declined"],
            "grounded_over_refusal_retention": gated(retention_rows)["declined"],
            "grounded_answered_correct": probes["answered_correct"]}


def declined_share(rows: list[dict]) -> float | None:
    return sum(r["declined"] for r in rows) / len(rows) if rows else None


Verdict = Literal["learned", "was known", "not learned", "forgotten"]


@dataclass
class FactVerdict:
    """One fact: the share of its held-out phrasings answered right before and after, and the verdict."""
    fact_id: str
    answer: str
    before: float
    after: float
    verdict: Verdict
    example_question: str
    example_output: str


def fact_table(before: dict, after: dict) -> list[FactVerdict]:
    """Per fact: share of held-out phrasings answered before and after, and the verdict."""
    per_fact: dict[str, dict] = defaultdict(lambda: {"before": [], "after": []})
    for when, audit in (("before", before), ("after", after)):
        for r in audit["probes"]:
            per_fact[r["fact_id"] or question_text(r["prompt"])][when].append(r)
    table = []
    for fact_id, rows in per_fact.items():
        b, a = accuracy(rows["before"]) or 0.0, accuracy(rows["after"]) or 0.0
        verdict = ("was known" if b >= 0.5 and a >= 0.5 else "forgotten" if b >= 0.5 else
                   "learned" if a >= 0.5 else "not learned")
        sample = rows["after"][0] if rows["after"] else rows["before"][0]
        table.append(FactVerdict(fact_id, sample["answer"], b, a, verdict, question_text(sample["prompt"]),
                                 sample["output"]))
    return table


PROBE_GROUPS = {  # a probe's origin -> its group in the report
    "generated-eval": "generated eval questions",
    "casual": "held-out questions as people type them (keyword form, lower case)",
    "generated": "questions written from the statements (facts asked < 3 ways: every phrasing trained)",
    "paraphrased": "reworded training questions (no statement to write from: close to the training wording)",
}


def probe_group(row: dict) -> str:
    """Where a held-out question came from: the probe file (named by its path), knowtune's own questions, or
    held-out phrasings of the training data."""
    origin = row.get("origin", "data")
    if origin == "probe-file":
        return row["source"].rsplit(":", 1)[0]
    return PROBE_GROUPS.get(origin, "held-out phrasings")


GROUNDED_FIGURES = ("grounded_unknowns_declined", "grounded_over_refusal_probes", "grounded_over_refusal_retention",
                    "grounded_answered_correct")


@dataclass
class GroupFigures:
    n: int
    before: float | None
    after: float | None


@dataclass
class AuditSummary:
    """The audit's figures before and after training (shares from 0 to 1; None where nothing was scored)."""
    probe_accuracy_before: float | None
    probe_accuracy_after: float | None
    retention_before: float | None
    retention_after: float | None
    retention_drop_points: float | None
    n_probes: int
    n_retention: int
    n_unknowns: int
    by_group: dict[str, GroupFigures]
    probe_label: str = "Held-out questions"
    retention_label: str = "General knowledge"
    unknowns_declined_before: float | None = None
    unknowns_declined_after: float | None = None
    over_refusal_probes_before: float | None = None
    over_refusal_probes_after: float | None = None
    over_refusal_retention_before: float | None = None
    over_refusal_retention_after: float | None = None
    calibration_error_before: float | None = None
    calibration_error_after: float | None = None
    grounded_unknowns_declined_before: float | None = None
    grounded_unknowns_declined_after: float | None = None
    grounded_over_refusal_probes_before: float | None = None
    grounded_over_refusal_probes_after: float | None = None
    grounded_over_refusal_retention_before: float | None = None
    grounded_over_refusal_retention_after: float | None = None
    grounded_answered_correct_before: float | None = None
    grounded_answered_correct_after: float | None = None


def summary(before: dict, after: dict) -> AuditSummary:
    rb, ra = before["retention_accuracy"], after["retention_accuracy"]
    groups: dict[str, dict] = {}
    for when, audit in (("before", before), ("after", after)):
        for r in audit["probes"]:
            groups.setdefault(probe_group(r), {"before": [], "after": []})[when].append(r)
    labels = after.get("labels", {})
    return AuditSummary(
        before["probe_accuracy"], after["probe_accuracy"], rb, ra,
        None if rb is None or ra is None else round(100 * (rb - ra), 2),
        len(after["probes"]), len(after["retention"]), len(after.get("unknowns", [])),
        {g: GroupFigures(len(v["after"]), accuracy(v["before"]), accuracy(v["after"])) for g, v in groups.items()},
        labels.get("probes", "Held-out questions"), labels.get("retention", "General knowledge"),
        **{f"{k}_{when}": audit.get(k) for k in ("unknowns_declined", "over_refusal_probes", "over_refusal_retention",
                                                 "calibration_error", *GROUNDED_FIGURES)
           for when, audit in (("before", before), ("after", after))})


def probes_file(path: str | None, facts: list = ()) -> list[Probe]:
    """The held-out questions of a --probes file (Q&A or prompt/completion), linked to taught facts when the
    answer matches one; none without a path."""
    if not path:
        return []
    from knowtune.data.knowledge import user_probes
    from knowtune.data.validate import load_examples

    examples, _ = load_examples([path], min_examples=1)
    return user_probes(examples, list(facts))


def empty_audit() -> dict:
    """The audit of a run with the audit turned off."""
    return {"probe_accuracy": None, "retention_accuracy": None, "probes": [], "retention": [], "unknowns": []}


@dataclass
class AuditSet:
    """What the knowledge audit asks: held-out probes, unknown questions, the dev probes that choose the
    confidence thresholds, and the taught texts the grounding check reads."""
    probes: list[Probe] = field(default_factory=list)
    unknowns: list[Probe] = field(default_factory=list)
    dev: list[Probe] = field(default_factory=list)
    grounding: object | None = None  # eval.grounding.Grounding
    max_new_tokens: int = 40


def audit_model(ref: str, aset: AuditSet, after: bool, log=print) -> dict:
    """Load the model `ref` names as `knowtune ask` does and audit it. For a saved run (`after`) with dev
    probes, also choose the confidence thresholds on them (the run's confidence.json) and say what they keep
    of the held-out questions (the audit's "confidence")."""
    from knowtune.eval import calibration
    from knowtune.models.load import load_for_answering
    from knowtune.progress import phase

    model, tokenizer = load_for_answering(ref, log=log)
    gen = GenerationSettings(max_new_tokens=aset.max_new_tokens)
    retention = retention_probes()
    what = "saved run" if after else "start model"
    with phase(f"Auditing the {what}", len(aset.probes) + len(retention) + len(aset.unknowns)) as advance:
        audit = run_audit(model, tokenizer, aset.probes, retention, gen, progress=advance, unknowns=aset.unknowns,
                          grounding=aset.grounding)
    if after and aset.dev:
        with phase("Choosing confidence thresholds on the dev probes", len(aset.dev)) as advance:
            dev_rows = score_probes(model, tokenizer, aset.dev, gen, progress=advance)
        chosen = calibration.thresholds(dev_rows)
        from knowtune.io import write_json

        write_json(Path(ref) / calibration.CONFIDENCE_FILE, chosen)
        chosen["held_out"] = {p: calibration.answered(audit["probes"], t) for p, t in chosen["by_precision"].items()}
        audit["confidence"] = chosen
    return audit
