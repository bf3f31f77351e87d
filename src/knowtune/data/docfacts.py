"""Facts from documents, without a generator model (the offline default).

Every sentence of every chunk is a statement. Every entity in it (name, number, date, time, quoted title)
becomes one fact: the entity is the answer key, the sentence its statement, and the rule-based questions
that ask for it (`cloze.questions_for`) its phrasings. A sentence with a person and a year gives a fact in
each direction. The chunks themselves are also taught as plain document text.

With a generator, `knowtune.augment.llm` writes the facts instead (and adds these as a fallback).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from knowtune.data.augment import TrainItem
from knowtune.data.cloze import entities, known_names, named_heads, questions_for, resolve_mentions, sentences
from knowtune.data.documents import Chunk
from knowtune.data.knowledge import Fact, Phrasing

DEV_EVERY = 2  # one fact in two lends a question to the dev probes (early stopping)


def rule_facts(chunks: list[Chunk], max_entities: int = 6) -> list[Fact]:
    known = known_names("\n".join(c.text for c in chunks))
    split = [(ci, chunk, si, " ".join(chunk.text[a:b].split()))
             for ci, chunk in enumerate(chunks, start=1) for si, (a, b) in enumerate(sentences(chunk.text), start=1)]
    # "the society" -> "the Harrowgate Lantern Society": questions must say what they are about
    heads = named_heads([e.text for *_, sent in split for e in entities(sent, known) if e.kind == "name"])
    facts: list[Fact] = []
    for ci, chunk, si, sentence in split:
        if len(sentence.split()) < 4:
            continue
        sentence = resolve_mentions(sentence, heads)
        for k, e in enumerate(entities(sentence, known)[:max_entities], start=1):
            qs = [q for q in questions_for(sentence, e) if not q.startswith("Fill in the blank")]
            fact = Fact(f"{Path(chunk.file).stem}-{ci}.{si}.{k}", "chat", e.text, statements=[sentence], context=chunk.text)
            source = f"{chunk.source} sentence {si}"
            fact.phrasings = [Phrasing([{"role": "user", "content": q}], source, "train") for q in qs]
            if len(qs) >= 2 and len(facts) % DEV_EVERY == 0:
                fact.phrasings[-1].split = "dev"
            facts.append(fact)
    return facts


def document_items(chunks: list[Chunk]) -> list[TrainItem]:
    """The chunks as plain text (language modelling on the documents themselves)."""
    return [TrainItem("text", "", c.text, f"doc:{c.source}", "document") for c in chunks]


def coverage(facts: list[Fact], items: list[TrainItem]) -> list[dict]:
    """Per fact: its answer, statement, source and how many training views it got, by view."""
    by_fact: dict[str, Counter] = {}
    for it in items:
        if it.origin.startswith("fact:"):
            by_fact.setdefault(it.origin[5:], Counter())[it.view] += 1
    rows = []
    for f in facts:
        views = by_fact.get(f.id, Counter())
        rows.append({"fact_id": f.id, "answer": f.answer, "statement": f.statements[0] if f.statements else "",
                     "source": f.phrasings[0].source if f.phrasings else "", "views": sum(views.values()),
                     "by_view": dict(views), "dev_questions": len(f.split("dev")), "test_questions": len(f.split("test"))})
    return rows


def coverage_summary(rows: list[dict]) -> str:
    if not rows:
        return "No facts."
    counts = sorted(r["views"] for r in rows)
    thin = sum(c < 3 for c in counts)
    return (f"{len(rows)} facts; views per fact: min {counts[0]}, median {counts[len(counts) // 2]}, "
            f"max {counts[-1]}; {thin} fact(s) with fewer than 3 views.")
