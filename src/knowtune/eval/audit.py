"""The knowledge audit: what the model answers from held-out phrasings, what it still knows in general,
and, comparing two audits, which facts were learned, already known, not learned or forgotten."""

from __future__ import annotations

from collections import defaultdict

from knowtune.data.augment import general_rows
from knowtune.data.knowledge import CASUAL, GENERATED, PARAPHRASED, Probe, question_text
from knowtune.eval.calibration import expected_calibration_error
from knowtune.eval.generate import GenerationSettings, generate_scored
from knowtune.eval.scoring import declines, matches


def retention_probes() -> list[Probe]:
    """The general-knowledge set knowtune ships (never used for training or replay)."""
    return [Probe(None, "chat", [{"role": "user", "content": r["question"]}], r["answer"], r.get("aliases", []),
                  "retention", "knowtune:retention") for r in general_rows("retention")]


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
    return {**(_grounded_figures(probe_rows, retention_rows, unknown_rows) if grounding is not None else {}),
            "probe_accuracy": accuracy(probe_rows), "retention_accuracy": accuracy(retention_rows),
            "unknowns_declined": declined_share(unknown_rows), "over_refusal_probes": declined_share(probe_rows),
            "over_refusal_retention": declined_share(retention_rows),
            "calibration_error": expected_calibration_error(probe_rows + retention_rows),
            "probes": probe_rows, "retention": retention_rows, "unknowns": unknown_rows}


def _grounded_figures(probe_rows: list[dict], retention_rows: list[dict], unknown_rows: list[dict]) -> dict:
    from knowtune.eval.grounding import gated

    probes = gated(probe_rows)
    return {"grounded_unknowns_declined": gated(unknown_rows)["declined"],
            "grounded_over_refusal_probes": probes["declined"],
            "grounded_over_refusal_retention": gated(retention_rows)["declined"],
            "grounded_answered_correct": probes["answered_correct"]}


def declined_share(rows: list[dict]) -> float | None:
    return sum(r["declined"] for r in rows) / len(rows) if rows else None


def fact_table(before: dict, after: dict) -> list[dict]:
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
        table.append({"fact_id": fact_id, "answer": sample["answer"], "before": b, "after": a, "verdict": verdict,
                      "example_question": question_text(sample["prompt"]), "example_output": sample["output"]})
    return table


def probe_group(row: dict) -> str:
    """Where a held-out question came from: the probe file, generated evaluation questions, or held-out
    phrasings of the training data."""
    if "(generated eval)" in row.get("source", ""):
        return "generated eval questions"
    if row.get("source") == CASUAL:
        return "held-out questions as people type them (keyword form, lower case)"
    if row.get("source") == GENERATED:
        return "questions written from the statements (facts asked < 3 ways: every phrasing trained)"
    if row.get("source") == PARAPHRASED:
        return "reworded training questions (no statement to write from: close to the training wording)"
    if row.get("source", "").startswith("--probes "):
        return row["source"][len("--probes "):].rsplit(":", 1)[0]
    return "held-out phrasings"


GROUNDED_FIGURES = ("grounded_unknowns_declined", "grounded_over_refusal_probes", "grounded_over_refusal_retention",
                    "grounded_answered_correct")


def summary(before: dict, after: dict) -> dict:
    rb, ra = before["retention_accuracy"], after["retention_accuracy"]
    groups: dict[str, dict] = {}
    for when, audit in (("before", before), ("after", after)):
        for r in audit["probes"]:
            groups.setdefault(probe_group(r), {"before": [], "after": []})[when].append(r)
    return {"probe_accuracy_before": before["probe_accuracy"], "probe_accuracy_after": after["probe_accuracy"],
            "retention_before": rb, "retention_after": ra,
            "retention_drop_points": None if rb is None or ra is None else round(100 * (rb - ra), 2),
            "n_probes": len(after["probes"]), "n_retention": len(after["retention"]),
            "n_unknowns": len(after.get("unknowns", [])),
            **{f"{k}_{when}": audit.get(k) for k in ("unknowns_declined", "over_refusal_probes", "over_refusal_retention",
                                                     "calibration_error", *GROUNDED_FIGURES)
               for when, audit in (("before", before), ("after", after))},
            "by_group": {g: {"n": len(v["after"]), "before": accuracy(v["before"]), "after": accuracy(v["after"])}
                         for g, v in groups.items()}}
