"""Facts and probes.

A fact is one answer asked several ways. Its phrasings are split into train (taught), dev (early
stopping) and test (the audit). Test phrasings never enter training: `assert_no_leak` enforces it
before every run, and a test proves it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from knowtune.data.formats import Example
from knowtune.errors import DataError
from knowtune.eval.scoring import normalise


@dataclass
class Phrasing:
    prompt: object  # chat messages (list) or plain-text prompt (str)
    source: str
    split: str = "train"  # "train" | "dev" | "test"


@dataclass
class Fact:
    id: str
    style: str  # "chat" | "plain"
    answer: str
    aliases: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    phrasings: list[Phrasing] = field(default_factory=list)
    context: str = ""  # the document passage the fact was read from (documents only)

    def split(self, name: str) -> list[Phrasing]:
        return [p for p in self.phrasings if p.split == name]


@dataclass
class Probe:
    """One held-out question with its answer key: the unit the audit scores."""

    fact_id: str | None
    style: str
    prompt: object
    answer: str
    aliases: list[str]
    split: str
    source: str = ""

    def to_row(self) -> dict:
        return {"fact_id": self.fact_id, "style": self.style, "prompt": self.prompt, "answer": self.answer,
                "aliases": self.aliases, "split": self.split, "source": self.source}

    @classmethod
    def from_row(cls, row: dict) -> "Probe":
        return cls(row["fact_id"], row["style"], row["prompt"], row["answer"], row.get("aliases", []),
                   row.get("split", "test"), row.get("source", ""))


def prompt_key(prompt) -> str:
    """A normalised text of a prompt, to compare phrasings across splits."""
    if isinstance(prompt, list):
        prompt = " ".join(m["content"] for m in prompt if m["role"] != "system")
    return normalise(prompt)


def group_facts(examples: list[Example]) -> list[Fact]:
    """Group examples that share a fact id, or else the same normalised answer and style."""
    facts: dict[tuple, Fact] = {}
    for ex in examples:
        key = (ex.style, ex.fact_id) if ex.fact_id else (ex.style, "answer:" + normalise(ex.answer))
        fact = facts.get(key)
        if fact is None:
            fid = ex.fact_id or f"fact-{len(facts) + 1:04d}"
            fact = facts[key] = Fact(fid, ex.style, ex.answer)
        fact.aliases += [a for a in ex.aliases if a not in fact.aliases]
        fact.statements += [s for s in ex.statements if s not in fact.statements]
        if prompt_key(ex.prompt) not in {prompt_key(p.prompt) for p in fact.phrasings}:
            fact.phrasings.append(Phrasing(ex.prompt, ex.source, "test" if ex.pinned_test else "train"))
    return list(facts.values())


def split_facts(facts: list[Fact], seed: int = 0, test_fraction: float = 0.34) -> None:
    """Assign each unpinned phrasing to train / dev / test, per fact, reproducibly.

    n phrasings: test = round(n * test_fraction) (at least 1 when n >= 2), dev = 1 when at least 3 are
    left, train = the rest. A fact asked only once is trained only (it has no held-out phrasing).
    test_fraction 0 holds nothing out for the audit (use it when a --probes file is the audit).
    """
    rng = random.Random(seed)
    for fact in facts:
        free = [p for p in fact.phrasings if p.split == "train"]
        rng.shuffle(free)
        n = len(free)
        n_test = 0 if n < 2 or test_fraction == 0 else max(1, round(n * test_fraction))
        if any(p.split == "test" for p in fact.phrasings):
            n_test = 0  # the user pinned held-out phrasings: use those
        n_dev = 1 if n - n_test >= 3 else 0
        for i, p in enumerate(free):
            p.split = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"


def probes_for(facts: list[Fact], split: str) -> list[Probe]:
    return [Probe(f.id, f.style, p.prompt, f.answer, f.aliases, split, p.source)
            for f in facts for p in f.split(split)]


def user_probes(examples: list[Example], facts: list[Fact]) -> list[Probe]:
    """Probes from the user's --probes file; linked to a taught fact when the answer matches one."""
    by_answer = {(f.style, normalise(f.answer)): f for f in facts}
    out = []
    for ex in examples:
        fact = by_answer.get((ex.style, normalise(ex.answer)))
        aliases = list(dict.fromkeys(ex.aliases + (fact.aliases if fact else [])))
        out.append(Probe(fact.id if fact else None, ex.style, ex.prompt, ex.answer, aliases, "test", f"--probes {ex.source}"))
    return out


def drop_generated_overlaps(facts: list[Fact], probes: list[Probe]) -> int:
    """Remove generated train/dev phrasings that contain a held-out question; returns how many went."""
    held = {prompt_key(p.prompt) for p in probes if p.split == "test"} - {""}
    n = 0
    for fact in facts:
        keep = [p for p in fact.phrasings if p.split == "test" or not any(h in prompt_key(p.prompt) for h in held)]
        n += len(fact.phrasings) - len(keep)
        fact.phrasings = keep
    return n


def assert_no_leak(train_prompts: list, probes: list[Probe]) -> None:
    """Refuse to train when any audit question is also a training prompt."""
    taught = {prompt_key(p) for p in train_prompts}
    leaked = [p for p in probes if p.split == "test" and prompt_key(p.prompt) in taught]
    if leaked:
        raise DataError(
            f"{len(leaked)} held-out question(s) also appear in the training data, e.g. {leaked[0].source}: "
            f"{prompt_key(leaked[0].prompt)!r}. The audit would measure memory, not learning.",
            fix="remove those questions from the training files or from the probe file.",
        )
