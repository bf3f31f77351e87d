"""Facts and probes.

A fact is one answer asked several ways. Its phrasings are split into train (taught), dev (early
stopping) and test (the audit). Test phrasings never enter training: `assert_no_leak` enforces it
before every run, and a test proves it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from knowtune.data.answerkey import questions_from_statement, short_key
from knowtune.data.cloze import entities, known_names
from knowtune.data.formats import Example
from knowtune.errors import DataError
from knowtune.text import normalise


Style = Literal["chat", "plain"]  # chat: the chat template; plain: continuation text (prompt/completion data)
Split = Literal["train", "dev", "test", "retention", "unknown"]
# Where a phrasing or probe came from: the user's data, knowtune's own questions (written from a statement,
# reworded training questions, a generator's evaluation questions), the casual form of a held-out question,
# the --probes file, the shipped general-knowledge set, or the questions the data never answers.
Origin = Literal["data", "generated", "paraphrased", "generated-eval", "casual", "probe-file", "retention", "unknown"]
WRITTEN_BY_KNOWTUNE = ("generated", "paraphrased", "generated-eval")


@dataclass
class Phrasing:
    prompt: object  # chat messages (list) or plain-text prompt (str)
    source: str  # where it was read ("file:line", "doc.md chars 10-80"), or what it was made from
    split: Split = "train"
    answer: str = ""  # this phrasing's own answer as written in the data (a sentence), when it differs from the key
    origin: Origin = "data"


@dataclass
class Fact:
    id: str
    style: Style
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
    style: Style
    prompt: object
    answer: str
    aliases: list[str]
    split: Split
    source: str = ""  # where it was read, or what it was made from
    origin: Origin = "data"

    def to_row(self) -> dict:
        return {"fact_id": self.fact_id, "style": self.style, "prompt": self.prompt, "answer": self.answer,
                "aliases": self.aliases, "split": self.split, "source": self.source, "origin": self.origin}

    @classmethod
    def from_row(cls, row: dict) -> "Probe":
        return cls(row["fact_id"], row["style"], row["prompt"], row["answer"], row.get("aliases", []),
                   row.get("split", "test"), row.get("source", ""), row.get("origin", "data"))


def prompt_key(prompt) -> str:
    """A normalised text of a prompt, to compare phrasings across splits."""
    if isinstance(prompt, list):
        prompt = " ".join(m["content"] for m in prompt if m["role"] != "system")
    return normalise(prompt)


def group_facts(examples: list[Example]) -> list[Fact]:
    """Group examples that share a fact id, or else the same answer and style. An answer written as a
    sentence gets a short key (`answerkey.short_key`): the key is what the audit looks for, the sentence
    stays the fact's statement and that phrasing's answer. Sentence answers with the same key and
    overlapping words are one fact asked several ways."""
    facts: dict[tuple, Fact] = {}
    known = known_names("\n".join(f"{question_text(ex.prompt)} {ex.answer}" for ex in examples))
    for ex in examples:
        short = None if ex.statements else short_key(question_text(ex.prompt), ex.answer, known)
        key = (ex.style, ex.fact_id) if ex.fact_id else (ex.style, "answer:" + normalise(short or ex.answer))
        fact = facts.get(key)
        if fact is not None and short and not ex.fact_id and not _same_fact(fact, ex, known):
            key = (*key, len(facts))  # same key, another fact ("7:40" for two different shuttles)
            fact = facts.get(key)
        if fact is None:
            fid = ex.fact_id or f"fact-{len(facts) + 1:04d}"
            fact = facts[key] = Fact(fid, ex.style, short or ex.answer)
        fact.aliases += [a for a in ex.aliases if a not in fact.aliases]
        sentences = ex.statements or ([ex.answer] if short else [])
        fact.statements += [s for s in sentences if s not in fact.statements]
        if prompt_key(ex.prompt) not in {prompt_key(p.prompt) for p in fact.phrasings}:
            fact.phrasings.append(Phrasing(ex.prompt, ex.source, "test" if ex.pinned_test else "train",
                                           answer=ex.answer if short else ""))
    return list(facts.values())


SAME_FACT_OVERLAP = 0.2  # share of content words two sentence answers with the same key must have in common


def _same_fact(fact: Fact, ex: Example, known) -> bool:
    """Two sentence answers with the same key state one fact when they name another same entity, or share
    enough words."""
    ours_text = " ".join([*fact.statements, *(question_text(p.prompt) for p in fact.phrasings)])
    theirs_text = f"{question_text(ex.prompt)} {ex.answer}"
    names = lambda text: {normalise(e.text) for e in entities(text, known) if e.kind == "name"} - {normalise(fact.answer)}
    if names(ours_text) & names(theirs_text):
        return True
    words = lambda text: {w for w in normalise(text).split() if len(w) > 3}
    ours, theirs = words(ours_text), words(theirs_text)
    return bool(ours and theirs) and len(ours & theirs) / len(ours | theirs) >= SAME_FACT_OVERLAP


def question_text(prompt) -> str:
    """The user's question of a prompt (the last user message of chat messages, or the plain prompt)."""
    if isinstance(prompt, list):
        return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
    return str(prompt)


# Words a person typing a quick query leaves out: question words that only announce a noun, auxiliaries,
# articles and pronouns ("What is the fine for riding without a ticket?" -> "fine for riding without ticket?").
_FILLER = {"what", "which", "whats", "is", "are", "was", "were", "do", "does", "did", "can", "could", "will",
           "would", "should", "has", "have", "had", "the", "a", "an", "i", "you", "we", "me", "my", "your",
           "our", "us", "im", "ill", "ive", "id", "youre", "please", "tell", "there", "theres"}


def casual_forms(question: str) -> list[str]:
    """How people type a question into a box: a keyword form without filler words, and the question in
    lower case without its question mark. Both differ from the question and keep at least two words;
    a taught model that saw only full questions tends to echo a terse query instead of answering it."""
    words = question.strip().rstrip("?!. ").split()
    bare = lambda w: "".join(c for c in w.lower() if c.isalnum())
    keywords = [w for w in words if bare(w) not in _FILLER]
    while keywords and bare(keywords[-1]) in {"for", "of", "to", "in", "on", "at", "by", "with"}:
        keywords.pop()
    forms = [" ".join(keywords).rstrip(",;:") + "?" if len(keywords) >= 2 else "",
             " ".join(words).lower().rstrip(",;:")]
    seen = {question.strip(), " ".join(words)}  # the lower-case form normalises like the question: compare text
    out = []
    for f in forms:
        if f and len(f.split()) >= 2 and f not in seen and (f == forms[1] or normalise(f) != normalise(question)):
            seen.add(f)
            out.append(f)
    return out


def add_casual_probes(probes: list[Probe], facts: list[Fact]) -> list[Probe]:
    """Each chat probe's first casual form as a probe of its own (same fact, answer and split), so the audit and
    early stopping also ask the way people type; a form that a training phrasing (or its own casual form,
    which the casual view teaches) reduces to is left out."""
    taught = {normalise(q) for f in facts for p in f.split("train") if f.style == "chat"
              for q in [question_text(p.prompt), *casual_forms(question_text(p.prompt))]}
    out = []
    for p in probes:
        if p.style != "chat" or not isinstance(p.prompt, list) or p.origin == "probe-file":
            continue  # the user's own probe file is audited as written
        for form in casual_forms(question_text(p.prompt))[:1]:  # one each: the keyword form when there is one
            if normalise(form) not in taught:
                out.append(Probe(p.fact_id, p.style, [{"role": "user", "content": form}], p.answer, p.aliases,
                                 p.split, p.source, "casual"))
    return out


MIN_PHRASINGS_TO_HOLD_OUT = 3  # fewer phrasings: every one is trained, the audit asks generated questions


def split_facts(facts: list[Fact], seed: int = 0, test_fraction: float = 0.34) -> None:
    """Assign each unpinned phrasing to train / dev / test, per fact, reproducibly.

    n >= 3 phrasings: test = round(n * test_fraction) (at least 1), dev = 1 when at least 3 are left,
    train = the rest. With fewer, all are trained: holding one of two out would halve what the model sees
    of the fact (`add_generated_questions` gives such facts audit questions of their own).
    test_fraction 0 holds nothing out for the audit (use it when a --probes file is the audit).
    """
    rng = random.Random(seed)
    for fact in facts:
        free = [p for p in fact.phrasings if p.split == "train"]
        rng.shuffle(free)
        n = len(free)
        n_test = 0 if n < MIN_PHRASINGS_TO_HOLD_OUT or test_fraction == 0 else max(1, round(n * test_fraction))
        if any(p.split == "test" for p in fact.phrasings):
            n_test = 0  # the user pinned held-out phrasings: use those
        n_dev = 1 if n - n_test >= 3 else 0
        for i, p in enumerate(free):
            p.split = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"


# Wrappers for a question when a fact has no statement to write a new question from (short Q&A answers):
# close to the training wording, and labelled so in the report.
_REWORDINGS = ["Do you happen to know this: {q}", "Tell me, please. {q}", "One thing I'd like to know. {q}"]


def add_generated_questions(facts: list[Fact], test: bool = True) -> int:
    """Give facts without a held-out (and dev) phrasing questions written from their statement, so facts
    asked only once or twice are still audited and early stopping still has dev probes. Returns how many
    facts got a generated test question."""
    n = 0
    for k, fact in enumerate(facts):
        taught = {prompt_key(p.prompt) for p in fact.phrasings}
        needs = [s for s in ("test", "dev") if not fact.split(s) and (s == "dev" or test)]
        for split, (question, origin) in zip(needs, _new_questions(fact, taught, k)):
            prompt = [{"role": "user", "content": question}] if fact.style == "chat" else f"Question: {question}\nAnswer:"
            fact.phrasings.append(Phrasing(prompt, f"fact {fact.id}", split, origin=origin))
            n += split == "test"
    return n


def _new_questions(fact: Fact, taught: set[str], k: int) -> list[tuple[str, Origin]]:
    written = [q for s in fact.statements for q in questions_from_statement(s, fact.answer)]
    out: list[tuple[str, Origin]] = [(q, "generated") for q in dict.fromkeys(written) if prompt_key(q) not in taught]
    if len(out) < 2:
        trained = [question_text(p.prompt) for p in fact.phrasings if p.split == "train"]
        out += [(_REWORDINGS[(k + i) % len(_REWORDINGS)].format(q=q), "paraphrased") for i, q in enumerate(trained[:2])]
    return out[:2]


def probes_for(facts: list[Fact], split: str) -> list[Probe]:
    return [Probe(f.id, f.style, p.prompt, f.answer, f.aliases, split, p.source, p.origin)
            for f in facts for p in f.split(split)]


def user_probes(examples: list[Example], facts: list[Fact]) -> list[Probe]:
    """Probes from the user's --probes file; linked to a taught fact when the answer matches one."""
    by_answer = {(f.style, normalise(f.answer)): f for f in facts}
    out = []
    for ex in examples:
        fact = by_answer.get((ex.style, normalise(ex.answer)))
        aliases = list(dict.fromkeys(ex.aliases + (fact.aliases if fact else [])))
        out.append(Probe(fact.id if fact else None, ex.style, ex.prompt, ex.answer, aliases, "test", ex.source, "probe-file"))
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
