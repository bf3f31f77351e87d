"""Facts from documents, without a generator model (the offline default).

Every sentence of every chunk is a statement. Every entity in it (name, number, date, time, quoted title)
becomes one fact: the entity is the answer key, the sentence its statement, and the rule-based questions
that ask for it (`cloze.questions_for`) its phrasings. A sentence with a person and a year gives a fact in
each direction. The chunks themselves are also taught as plain document text.

With a generator, `knowtune.augment.llm` writes the facts instead (and adds these as a fallback).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from knowtune.data.augment import TrainItem
from knowtune.data.cloze import entities, known_names, named_heads, questions_for, resolve_mentions, sentences
from knowtune.data.documents import Chunk
from knowtune.data.answerkey import MIN_QUESTION_WORDS, questions_from_statement
from knowtune.data.knowledge import Fact, Phrasing

DEV_EVERY = 2  # one fact in two lends a question to the dev probes (early stopping)
TEST_EVERY = 3  # one fact in three lends its shortest question to the audit (documents always get held-out questions)
_PRONOUN = re.compile(r"^(He|She|They|It|His|Her|Their|Its)\b")
_LABEL = re.compile(r"^([A-Za-z][\w’/-]*(?: [\w’/-]+){0,2}):\s+(\S.*)$")  # a list item's label: three words at most


def fact_sentences(text: str, known: set[str] | frozenset = frozenset()) -> list[str]:
    """The sentences of a chunk, made fit to ask about: a table row becomes one sentence per cell ('The roof
    colour of Nordhus is Red.'), a 'Label: value' list item 'The label is value.', and a sentence that opens
    with a pronoun names whom it means ('He has led ...' -> 'Dr. Imre Tollaksen has led ...')."""
    lines, header, out = [], None, []
    for line in text.splitlines() + [""]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            header = None
            m = _LABEL.match(line.strip())
            if m and not all(w[:1].isupper() for w in m.group(1).split()):
                line = f"The {m.group(1).lower()} is {m.group(2)}"
            lines.append(line)
        elif all(set(c) <= set("-: ") for c in cells):
            continue
        elif header is None:
            header = cells
        else:
            out += [f"The {h.lower()} of {cells[0]} is {c}." for h, c in zip(header[1:], cells[1:]) if c and h]
    prose = "\n".join(lines)
    said = [" ".join(prose[a:b].split()) for a, b in sentences(prose)]
    return _resolve_pronouns(said, known) + out


def _resolve_pronouns(said: list[str], known) -> list[str]:
    out = []
    for sentence in said:
        m = _PRONOUN.match(sentence)
        if m and out and not re.match(r"It(?: is|'s)\b", sentence):  # "It is the job of ...": no one is meant
            names = [e.text for e in entities(out[-1], known) if e.kind == "name"]
            people = [n for n in names if len(n.split()) >= 2]
            ref = (people[-1] if people else None) if m.group(1) in ("He", "She", "His", "Her") else (names[0] if names else None)
            if ref:
                ref = f"{ref}'s" if m.group(1) in ("His", "Her", "Their", "Its") else ref
                sentence = ref + sentence[m.end():]
        out.append(sentence)
    return out


def rule_facts(chunks: list[Chunk], max_entities: int = 6) -> list[Fact]:
    known = known_names("\n".join(c.text for c in chunks))
    split = [(ci, chunk, si, sentence) for ci, chunk in enumerate(chunks, start=1)
             for si, sentence in enumerate(fact_sentences(chunk.text, known), start=1)]
    # "the society" -> "the Harrowgate Lantern Society": questions must say what they are about
    heads = named_heads([e.text for *_, sent in split for e in entities(sent, known) if e.kind == "name"])
    facts: list[Fact] = []
    for ci, chunk, si, sentence in split:
        if len(sentence.split()) < 4:
            continue
        sentence = resolve_mentions(sentence, heads)
        for k, e in enumerate(entities(sentence, known)[:max_entities], start=1):
            qs = list(dict.fromkeys(questions_from_statement(sentence, e.text) + [
                q for q in questions_for(sentence, e) if not q.startswith("Fill in the blank") and len(q.split()) >= MIN_QUESTION_WORDS]))
            fact = Fact(f"{Path(chunk.file).stem}-{ci}.{si}.{k}", "chat", e.text, statements=[sentence], context=chunk.text)
            source = f"{chunk.source} sentence {si}"
            fact.phrasings = [Phrasing([{"role": "user", "content": q}], source, "train") for q in qs]
            if len(qs) >= 3 and len(facts) % TEST_EVERY == 0:
                fact.phrasings[0].split, fact.phrasings[0].origin = "test", "generated"
            elif len(qs) >= 2 and len(facts) % DEV_EVERY == 0:
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
