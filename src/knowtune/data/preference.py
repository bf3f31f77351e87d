"""Human-feedback data: preference pairs, KTO labels and corrections made from ratings, agreement between
raters, and preference files read for `knowtune reward train` / `knowtune dpo`.

A rating (as the rating app stores it) is a dict with: comparison_id, prompt, a, b (the two answers), rater,
choice ("a" | "b" | "tie"), score_a / score_b (1-5 or None), wrong_a / wrong_b (flagged as stating a wrong
fact), correction (a better answer the rater wrote, or None).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from knowtune.errors import DataError


@dataclass
class Pair:
    prompt: str
    chosen: str
    rejected: str
    source: str = ""

    def to_row(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected,
                "metadata": {"source": self.source}}


def preference_pairs(ratings: list[dict], corrections: bool = True) -> list[Pair]:
    """One pair per comparison, by majority vote (ties and even splits give none), plus one pair per
    correction: the rater's answer over each answer they flagged wrong (else over the one they did not pick)."""
    pairs = []
    for comp in _by_comparison(ratings).values():
        votes = Counter(r["choice"] for r in comp)
        first = comp[0]
        if votes["a"] != votes["b"]:
            win, lose = ("a", "b") if votes["a"] > votes["b"] else ("b", "a")
            pairs.append(Pair(first["prompt"], first[win], first[lose],
                              f"comparison {first['comparison_id']}: {votes[win]} of {len(comp)} raters"))
    if corrections:
        for r in ratings:
            if not r.get("correction"):
                continue
            flagged = [side for side in "ab" if r[f"wrong_{side}"]]
            worse = flagged or ([{"a": "b", "b": "a"}[r["choice"]]] if r["choice"] in "ab" else ["a", "b"])
            for side in worse:
                if r[side].strip() != r["correction"].strip():
                    pairs.append(Pair(r["prompt"], r["correction"], r[side], f"correction by {r['rater']}"))
    return pairs


def kto_labels(ratings: list[dict]) -> list[dict]:
    """Each rated answer labelled desirable or not, by majority over its ratings (KTO's unpaired format).

    Per rating: an answer flagged wrong is undesirable; else the picked one is desirable and the other not;
    on a tie, a score of 4-5 is desirable and 1-2 undesirable. Corrections are desirable answers too."""
    votes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in ratings:
        for side, other in (("a", "b"), ("b", "a")):
            label = None
            if r[f"wrong_{side}"]:
                label = False
            elif r["choice"] in (side, other):
                label = r["choice"] == side
            elif r.get(f"score_{side}") is not None and r[f"score_{side}"] != 3:
                label = r[f"score_{side}"] >= 4
            if label is not None:
                votes[(r["prompt"], r[side])].append(label)
        if r.get("correction"):
            votes[(r["prompt"], r["correction"].strip())].append(True)
    out = []
    for (prompt, completion), labels in votes.items():
        yes = sum(labels)
        if 2 * yes != len(labels):
            out.append({"prompt": prompt, "completion": completion, "label": 2 * yes > len(labels)})
    return out


def pairs_to_kto(pairs: list[Pair]) -> list[dict]:
    """Each pair as two KTO examples: the chosen answer desirable, the rejected one not."""
    return [r for p in pairs for r in ({"prompt": p.prompt, "completion": p.chosen, "label": True},
                                       {"prompt": p.prompt, "completion": p.rejected, "label": False})]


def correction_rows(ratings: list[dict]) -> list[dict]:
    """Corrected answers as chat examples (`knowtune teach` reads them), with what they corrected."""
    return [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["correction"]}],
             "metadata": {"rater": r["rater"], "comparison_id": r["comparison_id"],
                          "flagged_wrong": [r[s] for s in "ab" if r[f"wrong_{s}"]]}}
            for r in ratings if r.get("correction")]


def agreement(ratings: list[dict]) -> dict:
    """How far raters agree on which answer is better, over comparisons rated by two or more.

    pairwise_agreement: share of rater pairs on the same comparison that made the same choice.
    krippendorff_alpha: nominal Krippendorff's alpha over the choices (1 = perfect, 0 = chance level).
    per_rater: each rater's share of agreement with the other raters of the same comparisons."""
    units = [comp for comp in _by_comparison(ratings).values() if len(comp) >= 2]
    agree = pairs = 0
    mine: dict[str, list[bool]] = defaultdict(list)
    for comp in units:
        for x, y in combinations(comp, 2):
            same = x["choice"] == y["choice"]
            agree, pairs = agree + same, pairs + 1
            mine[x["rater"]].append(same)
            mine[y["rater"]].append(same)
    counts = Counter(r["rater"] for r in ratings)
    return {"comparisons_rated_twice": len(units), "rater_pairs": pairs,
            "pairwise_agreement": agree / pairs if pairs else None,
            "krippendorff_alpha": krippendorff_alpha_nominal([[r["choice"] for r in comp] for comp in units]),
            "per_rater": [{"rater": name, "ratings": n,
                           "agreement": sum(mine[name]) / len(mine[name]) if mine[name] else None}
                          for name, n in sorted(counts.items())]}


def krippendorff_alpha_nominal(units: list[list[str]]) -> float | None:
    """Krippendorff's alpha for nominal values; `units` lists the values given to each item (missing ones left
    out). alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c * n_k, with o the coincidence matrix."""
    o: Counter = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            o[(values[i], values[j])] += 1 / (m - 1)
    n_c: Counter = Counter()
    for (c, _k), v in o.items():
        n_c[c] += v
    n = sum(n_c.values())
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if n <= 1 or expected == 0:
        return None  # everyone chose the same value: agreement is not measurable
    observed = sum(v for (c, k), v in o.items() if c != k)
    return 1 - (n - 1) * observed / expected


def _by_comparison(ratings: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for r in ratings:
        out[r["comparison_id"]].append(r)
    return out


def load_pairs(paths: list[str | Path]) -> list[Pair]:
    """Preference pairs from files ({"prompt", "chosen", "rejected"} rows), validated with line numbers."""
    from knowtune.data.privacy import scrubbing
    from knowtune.data.validate import check_file

    pairs, errors = [], []
    for path in paths:
        with scrubbing(False):  # the check only validates; the rows below are read (and scrubbed) once
            report = check_file(path, min_examples=1)
        errors += report.errors
        if report.format not in (None, "preference"):
            raise DataError(f"{path} holds {report.format} data, not preference pairs.",
                            fix='give a JSONL file of {"prompt": ..., "chosen": ..., "rejected": ...} rows '
                                "(`knowtune feedback export pairs` writes one from the rating app).")
        from knowtune.data.formats import read_rows

        rows, _ = read_rows(path)
        pairs += [Pair(str(r.data["prompt"]), str(r.data["chosen"]), str(r.data["rejected"]), f"{r.file}:{r.line}")
                  for r in rows if isinstance(r.data, dict) and {"prompt", "chosen", "rejected"} <= set(r.data)]
    if errors:
        shown = "\n".join(f"  {e}" for e in errors[:20])
        raise DataError(f"The preference data has {len(errors)} error(s):\n{shown}",
                        fix="fix the lines above (`knowtune check FILE` lists every problem), then run again.")
    if not pairs:
        raise DataError(f"No preference pairs in {', '.join(map(str, paths))}.",
                        fix='each line must be {"prompt": ..., "chosen": ..., "rejected": ...}.')
    return pairs


def split_prompts(prompts: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) prompts: a seeded shuffle of the distinct prompts, the first `fraction` held out."""
    order = sorted(set(prompts))
    random.Random(seed).shuffle(order)
    n = round(fraction * len(order))
    return order[n:], order[:n]


def split_pairs(pairs: list[Pair], eval_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Split by prompt, so no held-out prompt was seen in training."""
    held = set(split_prompts([p.prompt for p in pairs], eval_fraction, seed)[1])
    return [p for p in pairs if p.prompt not in held], [p for p in pairs if p.prompt in held]


def json_objects(text: str, name: str, problems: list[str]):
    """(line number, object) for each JSON-object line of `text`; each other non-empty line adds a problem."""
    import json

    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{name}:{i}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{name}:{i}: must be a JSON object")
            continue
        yield i, obj


def parse_prompt_lines(text: str, name: str) -> list[dict]:
    """Prompts to rate, one JSON object per line: {"prompt": str, "reference"?: str, "answers"?: [str, ...]}
    (a Q&A row {"question", "answer"} works too: the answer becomes the reference). Raises one DataError
    listing every bad line."""
    rows, problems = [], []
    for i, obj in json_objects(text, name, problems):
        prompt = obj.get("prompt", obj.get("question"))
        reference = obj.get("reference", obj.get("answer"))
        answers = obj.get("answers") or []
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f"{name}:{i}: needs a non-empty \"prompt\" (or \"question\") string")
        elif reference is not None and not isinstance(reference, (str, int, float)):
            problems.append(f"{name}:{i}: \"reference\" must be a string")
        elif not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            problems.append(f"{name}:{i}: \"answers\" must be a list of non-empty strings")
        else:
            rows.append({"prompt": prompt.strip(), "reference": None if reference is None else str(reference),
                         "answers": answers})
    if problems:
        shown = "\n".join(problems[:20]) + (f"\n... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DataError(f"{len(problems)} bad line(s) in {name}:\n{shown}",
                        fix='each line must be {"prompt": "...", "reference": "...", "answers": ["...", "..."]} '
                            '(reference and answers optional); nothing was imported.')
    if not rows:
        raise DataError(f"{name} holds no prompts.", fix='add lines like {"prompt": "What is ...?"}.')
    return rows
