"""Grounding: does an answer add only specifics that the taught data states about what was asked?

A small model taught new facts answers every question about its subject with a confident invention (asked
for the lost-property phone number, which the data never gives, it says "951"), and its token
probabilities are no help: on the generality benchmark the confidence of invented answers to unknown
questions was as high as that of right answers (AUROC 0.49-0.65). What the model cannot tell, knowtune
can: it knows what it taught. An answer is *grounded* when at least one specific it adds (a name, number,
date, time or title that the question does not already contain) appears in a taught text about what the
question asks: a text naming one of the question's names, or, when the question names nothing knowtune
recognises, sharing one of its content words. An answer that adds no specific is not judged.

The taught texts are each fact's statements and its training questions with their answer (never its
held-out questions), read from the run's `data/facts.jsonl`. `ask`, `chat` and `serve` can decline
ungrounded answers (`--grounded`); the audit reports what the check would decline, before and after.
The check is deliberately simple (no model): it misses inventions that reuse a specific stated with the
same subject (a number taught for another attribute of the same game), and declines right answers that
the data states without naming the question's subject ("we" in an FAQ answer).
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from knowtune.data.cloze import entities, known_names
from knowtune.data.knowledge import question_text
from knowtune.errors import KnowtuneError
from knowtune.text import DECLINE_TEXT, normalise

FACTS_FILE = Path("data") / "facts.jsonl"
_PUNCT = re.compile(r"[^\w\s]|_")
_TIME_OF_DAY = re.compile(r"\s*[ap]\.?m\.?$", re.I)  # "6:15 am" is taught as "6:15"
# words that say nothing about what is asked (question words, auxiliaries, pronouns, quantity words)
_FILLER = set("a an and are as at be by can could did do does for from has have had how i in is it its me my "
              "much many long often of on or our that the their there this to us was we were what when where "
              "which who whom whose why will with would you your".split())


def _stems(words) -> set[str]:
    """Content words cut to five letters: "published" and "publisher" meet; filler words are left out."""
    return {w[:5] for w in words if len(w) > 3 and w not in _FILLER}


def _padded(text: str, cased: bool = False) -> str:
    if not cased:
        return f" {normalise(text)} "
    text = "".join(c for c in unicodedata.normalize("NFKD", str(text)) if not unicodedata.combining(c))
    return " " + " ".join(_PUNCT.sub(" ", text).split()) + " "


def _cased_in(anchor: str, cased_question: str, cased_names: set[str]) -> bool:
    """The anchor appears in the question with the capitals some taught name gives it."""
    words = anchor.split()
    for name in cased_names:
        for i in range(len(name.split()) - len(words) + 1):
            span = name.split()[i:i + len(words)]
            if [w.lower() for w in span] == words and f" {' '.join(span)} " in cased_question:
                return True
    return False


class Grounding:
    """The taught texts of one run, and the check of an answer against them."""

    def __init__(self, texts: list[str]):
        texts = list(dict.fromkeys(t for t in texts if t.strip()))
        self.texts = [_padded(t) for t in texts]
        self.known = known_names("\n".join(texts))
        named = [e.text for t in texts for e in entities(t, self.known) if e.kind in ("name", "title")]
        self.names = {_padded(n) for n in named}
        self.lower = lower = {w for t in texts for w in re.findall(r"\b[a-z][a-z'’\-]+\b", t)}  # words written in lower case
        self.names = {n for n in self.names if len(n.strip()) > 2 and n.strip() not in _FILLER
                      and not (len(n.split()) == 1 and n.strip() in lower)}  # "Take the Amber Line." names no "Take"
        self.cased = {_padded(n, cased=True) for n in named}
        self.longest_first = sorted(self.names, key=len, reverse=True)  # to find the taught name inside a longer one
        # a word of a name is an anchor of its own ("Dunhallow" for "Dunhallow Island") unless several names
        # share it ("Line" of the Amber, Teal and Violet Lines)
        shared: dict[str, int] = {}
        for n in self.names:
            for w in set(n.split()):
                shared[w] = shared.get(w, 0) + 1
        self.name_words = {f" {w} " for w, k in shared.items() if k <= 2 and len(w) > 3 and w not in _FILLER | lower}

    def anchors(self, question: str) -> list[str]:
        """The names (and name words) of the taught data that the question contains, written as names (with
        their capitals, unless the whole question is in lower case: "freezing point" does not name "Skerrin
        Point")."""
        asked, cased = _padded(question), _padded(question, cased=True)
        if question != question.lower():
            return [n for n in self.names | self.name_words if n in asked and _cased_in(n, cased, self.cased)]
        return [n for n in self.names | self.name_words if n in asked]

    def common(self, anchor: str) -> bool:
        """An anchor in most taught texts (the one subject of a FAQ) says nothing about which fact is asked."""
        return sum(anchor in t for t in self.texts) > len(self.texts) / 2

    @classmethod
    def from_fact_rows(cls, rows: list[dict]) -> "Grounding":
        """From facts as saved in a run (`data/facts.jsonl`): statements, and train questions with answers."""
        texts = []
        for f in rows:
            texts += f.get("statements") or []
            texts += [f"{question_text(p['prompt'])} {f['answer']}" for p in f.get("phrasings", []) if p.get("split") == "train"]
        return cls(texts)

    @classmethod
    def from_facts(cls, facts: list) -> "Grounding":
        """From `knowledge.Fact`s, as `from_fact_rows` reads them back from a run."""
        return cls.from_fact_rows([{"answer": f.answer, "statements": f.statements,
                                    "phrasings": [{"prompt": p.prompt, "split": p.split} for p in f.phrasings]} for f in facts])

    @classmethod
    def of_run(cls, run_dir: str | Path) -> "Grounding":
        path = Path(run_dir) / FACTS_FILE
        if not path.exists():
            raise KnowtuneError(f"{run_dir} is not a run taught by knowtune (no {FACTS_FILE}): there is nothing to "
                                "check answers against.", fix="give a run folder made by `knowtune teach`, or leave out --grounded.")
        return cls.from_fact_rows([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])

    def check(self, question: str, answer: str) -> bool | None:
        """True when the answer is grounded, False when none of the specifics it adds is, None when it adds none."""
        asked = _padded(question)
        added = [_padded(_TIME_OF_DAY.sub("", e.text) if e.kind == "time" else e.text) for e in entities(answer, self.known)]
        # "Take the Amber Line" is read as one name at the start of a sentence: look for the taught names inside
        added = [e if e in self.names else next((n for n in self.longest_first if n in e), e)
                 for e in added]
        added = [e for e in dict.fromkeys(added) if e.strip() and e not in asked]
        if not added:
            return None
        if not self.on_topic(question):
            return None  # a general question: answered from what the model knew before, not judged here
        if any(self.unheard(e.text) for e in entities(question, self.known) if e.kind == "name" and e.start > 0
               and normalise(e.text) not in _FILLER | self.lower):
            return False  # it asks about a name the taught data never mentions
        anchors = self.anchors(question)
        specific = [a for a in anchors if not self.common(a)]
        not_topic = {w for a in [*added, *anchors] for w in a.split()}
        asked_about = _stems(w for w in normalise(question).split() if w not in not_topic)
        for text in self.texts:
            if not any(e in text for e in added):
                continue
            if any(a in text for a in specific):
                return True
            if (not anchors or any(a in text for a in anchors)) and asked_about & _stems(text.split()):
                return True
        return False

    def on_topic(self, question: str) -> bool:
        """The question names something taught, or shares two content words with one taught text (one, when it
        has only one): "When did the Saffron Line open?" is about a transit FAQ, "What is the capital of
        France?" is not."""
        if self.anchors(question):
            return True
        asked = _stems(normalise(question).split())
        return any(len(asked & _stems(t.split())) >= 2 for t in self.texts)

    def unheard(self, name: str) -> bool:
        """A name the taught data never mentions, whole or as part of a longer name."""
        n = _padded(name)
        return not any(n in known or known in n for known in self.names)


def grounded_or_decline(question: str, answer: str, grounding: Grounding | None) -> str:
    """The answer, or a short refusal when it adds specifics the taught data does not give (None: no check)."""
    return answer if grounding is None or grounding.check(question, answer) is not False else DECLINE_TEXT


def gated(rows: list[dict]) -> dict:
    """What declining ungrounded answers does to audited rows (each with "grounded", "declined", "correct"):
    share declined, and share answered and right among the rest."""
    if not rows:
        return {"declined": None, "answered_correct": None, "n": 0}
    declined = [r["declined"] or r.get("grounded") is False for r in rows]
    kept = [r for r, d in zip(rows, declined) if not d]
    return {"declined": sum(declined) / len(rows), "n": len(rows),
            "answered_correct": sum(r["correct"] for r in kept) / len(kept) if kept else None}
