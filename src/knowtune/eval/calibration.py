"""Confidence: how far an answer's own token probabilities tell right answers from wrong ones.

Each audited answer carries a confidence (`generate_scored`: the geometric mean probability of the tokens
the model wrote). From it: the expected calibration error and a reliability plot for the report, and the
threshold below which `ask`, `chat` and `serve` decline, chosen on the dev probes for a precision the user
names (`--min-confidence auto`): the lowest threshold whose answered dev probes are at least that precise,
so as many questions as possible are still answered.
"""

from __future__ import annotations

from pathlib import Path

from knowtune.io import save_figure
from knowtune.text import DECLINE_TEXT

BINS = 10
CONFIDENCE_FILE = "confidence.json"
NEVER = 1.01  # a threshold no confidence reaches: decline everything


def reliability_bins(rows: list[dict], bins: int = BINS) -> list[tuple[float, float, int]]:
    """(mean confidence, share correct, count) of each non-empty equal-width confidence bin."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [r for r in rows if r.get("confidence") is not None
                  and (lo <= r["confidence"] < hi or (b == bins - 1 and r["confidence"] >= 1.0))]
        if inside:
            out.append((sum(r["confidence"] for r in inside) / len(inside),
                        sum(r["correct"] for r in inside) / len(inside), len(inside)))
    return out


def expected_calibration_error(rows: list[dict], bins: int = BINS) -> float | None:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share."""
    found = reliability_bins(rows, bins)
    total = sum(n for *_, n in found)
    return sum(n / total * abs(acc - conf) for conf, acc, n in found) if total else None


def choose_threshold(rows: list[dict], precision: float) -> float:
    """The lowest confidence threshold at which the answers at or above it are at least `precision` correct
    (NEVER when no threshold gets there)."""
    ranked = sorted((r for r in rows if r.get("confidence") is not None), key=lambda r: -r["confidence"])
    best, right = NEVER, 0
    for n, r in enumerate(ranked, start=1):
        right += r["correct"]
        tied_below = n < len(ranked) and ranked[n]["confidence"] == r["confidence"]
        if right / n >= precision and not tied_below:
            best = r["confidence"]
    return best


def answered(rows: list[dict], threshold: float) -> dict:
    """Coverage (share answered) and precision (share of answered that are right) at a threshold."""
    kept = [r for r in rows if r.get("confidence") is not None and r["confidence"] >= threshold]
    return {"threshold": threshold, "coverage": len(kept) / len(rows) if rows else None,
            "precision": sum(r["correct"] for r in kept) / len(kept) if kept else None}


def thresholds(dev_rows: list[dict], precisions=(0.8, 0.9, 0.95, 0.99)) -> dict:
    """Thresholds per named precision, chosen on dev probes; written to the run as confidence.json."""
    return {"chosen_on": f"{len(dev_rows)} dev probes",
            "by_precision": {str(p): choose_threshold(dev_rows, p) for p in precisions}}


def threshold_for(run_dir: str | Path, precision: float) -> float:
    """The run's threshold for a precision (the nearest stricter one written, else declining everything)."""
    import json

    path = Path(run_dir) / CONFIDENCE_FILE
    if not path.exists():
        from knowtune.errors import KnowtuneError

        raise KnowtuneError(f"{run_dir} has no {CONFIDENCE_FILE}: --min-confidence auto needs a run taught by "
                            "this version (its dev probes choose the threshold).",
                            fix="give a number instead (e.g. --min-confidence 0.6), or teach the run again.")
    table = {float(k): v for k, v in json.loads(path.read_text())["by_precision"].items()}
    stricter = [p for p in table if p >= precision]
    return table[min(stricter)] if stricter else NEVER


def plot_reliability(rows: list[dict], path: Path, title: str = "Reliability of answer confidence") -> Path | None:
    found = reliability_bins(rows)
    if not found:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mids, accs, counts = zip(*found)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.scatter(mids, accs, s=[20 + 4 * c for c in counts], label="held-out and general questions (size = count)")
    ax.plot(mids, accs, color="C0")
    ax.set_xlabel("confidence (mean token probability)")
    ax.set_ylabel("share answered correctly")
    ece = expected_calibration_error(rows)
    ax.set_title(f"{title}\nECE {ece:.3f}" if ece is not None else title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def min_confidence(value: str | None, model_ref: str, precision: float) -> float | None:
    """The --min-confidence option: None (answer everything), a number, or 'auto' (the run's threshold
    for `precision`, chosen on its dev probes)."""
    if value is None:
        return None
    if value == "auto":
        return threshold_for(model_ref, precision)
    try:
        floor = float(value)
    except ValueError:
        floor = -1.0
    if not 0 <= floor <= 1:
        from knowtune.errors import KnowtuneError

        raise KnowtuneError(f"--min-confidence {value!r} is neither 'auto' nor a number from 0 to 1.",
                            fix="write e.g. --min-confidence 0.6, or --min-confidence auto --precision 0.95 with a run folder.")
    return floor


def decline_below(answer: str, confidence: float, floor: float | None) -> str:
    """The answer, or a short refusal when its confidence is below the floor (None: no floor)."""
    return answer if floor is None or confidence >= floor else DECLINE_TEXT


def answer_or_decline(model, tokenizer, items: list, settings, floor: float | None, grounding=None) -> list[str]:
    """Greedy answers; below the confidence floor, or (with a `grounding.Grounding`) adding specifics the
    taught data does not give, an answer is replaced by a short refusal."""
    from knowtune.data.knowledge import question_text
    from knowtune.eval.generate import generate_scored
    from knowtune.eval.grounding import grounded_or_decline

    scored = generate_scored(model, tokenizer, items, settings, confidence=floor is not None)
    return [grounded_or_decline(question_text(prompt), decline_below(a, c, floor), grounding)
            for (_, prompt), (a, c) in zip(items, scored)]
