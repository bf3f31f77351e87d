"""Facts from documents written by a generator model.

For every chunk: extract atomic facts with their source spans. For every fact: paraphrased statements,
questions with a short answer key, and reverse-direction questions (asking for another entity of the fact);
then, with a separate prompt, evaluation questions, dropped when they overlap the training text too
closely. Whatever the generator returns that cannot be used (unparsable lines, a "paraphrase" that lost
the answer, a question that gives its answer away) is dropped and counted. The rule-based facts
(`data.docfacts`) are always added, so every sentence stays covered whatever the generator missed; the log
says how many chunks gave the generator nothing usable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from knowtune.data.cloze import entities
from knowtune.data.documents import Chunk
from knowtune.data.knowledge import Fact, Phrasing
from knowtune.text import normalise

EXTRACT = ("Read the text and list the facts it states, one JSON object per line, like\n"
           '{{"fact": "<one short sentence>", "answer": "<the key name, number or date in it>", '
           '"quote": "<the exact words of the text it comes from>"}}\n'
           "Write only the JSON lines.\n\nText:\n{text}")
PARAPHRASE = ("Rewrite this statement in {n} different ways. Keep every name and number. "
              "Write one version per line and nothing else.\n\nStatement: {fact}")
QUESTIONS = ('Write {n} different questions that someone would ask to get the answer "{answer}" from this fact. '
             "Do not put the answer in the questions. Write one question per line and nothing else.\n\nFact: {fact}")
EVAL = ('A teacher checks whether a student remembers this fact. Write one short exam question whose answer is '
        '"{answer}", in your own words, not copying the fact. Write only the question.\n\nFact: {fact}')


@dataclass
class GeneratedFacts:
    facts: list[Fact]
    fallback_chunks: list[int] = field(default_factory=list)  # chunks where the generator found no usable fact
    dropped: dict = field(default_factory=dict)  # why generated lines were not used: counts


def parse_facts(output: str, chunk: Chunk) -> list[dict]:
    """Facts in a generator's answer, each located in the chunk (quote span, else answer span, else the
    sentence it mostly repeats); facts the chunk does not support are dropped. JSON lines are read as JSON;
    objects a small model leaves unclosed or malformed are read field by field."""
    candidates = []
    for m in re.finditer(r"\{[^{}]*\}", output):
        try:
            obj = json.loads(m.group())
            candidates.append({k: str(obj.get(k, "")).strip() for k in ("fact", "answer", "quote")})
        except ValueError:
            pass
    if not candidates:
        for m in re.finditer(r'"fact"\s*:\s*"(.+?)"\s*(?=[,}\n]|$)', output, re.S):
            rest = output[m.end():m.end() + 800]
            field_ = lambda k: (re.search(rf'"{k}"\s*:\s*"(.+?)"\s*(?=[,}}\n]|$)', rest, re.S) or [None, ""])[1]  # noqa: E731
            candidates.append({"fact": m.group(1).strip(), "answer": field_("answer").strip(), "quote": field_("quote").strip()})
    found, seen = [], set()
    for c in candidates:
        fact = " ".join(c["fact"].split())
        if len(fact.split()) < 4 or normalise(fact) in seen:
            continue
        span = _locate(chunk.text, c["quote"]) or (_locate(chunk.text, c["answer"]) if normalise(c["answer"]) in normalise(fact) else None)
        span = span or _supporting_sentence(chunk.text, fact)
        if span is None:
            continue  # the text does not say this: invented
        seen.add(normalise(fact))
        answer = c["answer"] if c["answer"] and normalise(c["answer"]) in normalise(fact) else ""
        found.append({"fact": fact, "answer": answer, "start": chunk.start + span[0], "end": chunk.start + span[1]})
    return found


def _supporting_sentence(text: str, fact: str) -> tuple[int, int] | None:
    """The span of the chunk sentence that shares at least half of the fact's word 3-grams."""
    from knowtune.data.cloze import sentences

    grams = _grams(normalise(fact))
    best = max(((len(grams & _grams(normalise(text[a:b]))) / max(1, len(grams)), (a, b)) for a, b in sentences(text)),
               default=(0, None))
    return best[1] if best[0] >= 0.5 else None


def _locate(text: str, needle: str) -> tuple[int, int] | None:
    needle = needle.strip().strip('"')
    if len(needle) < 2:
        return None
    i = text.lower().find(needle.lower())
    return (i, i + len(needle)) if i >= 0 else None


def lines(output: str) -> list[str]:
    """One item per line, list markers and quotes removed."""
    out = []
    for line in output.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)]|Q\d*[:.])\s*", "", line).strip().strip('"').strip()
        if len(line.split()) >= 3:
            out.append(line)
    return out


def overlaps(question: str, texts: list[str], threshold: float = 0.6) -> bool:
    """True when the question shares too many word 3-grams with any training text (or is inside one)."""
    q = normalise(question)
    grams = _grams(q)
    for t in texts:
        nt = normalise(t)
        if q in nt:
            return True
        if grams and len(grams & _grams(nt)) / len(grams) >= threshold:
            return True
    return False


def _grams(text: str) -> set[tuple]:
    w = text.split()
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}


def generate_facts(chunks: list[Chunk], generator, n_paraphrases: int = 3, n_questions: int = 3,
                   progress=None, log=print) -> GeneratedFacts:
    from knowtune.data.docfacts import rule_facts

    dropped = {"unparsable or unsupported fact": 0, "paraphrase lost the answer": 0, "question gives the answer away": 0,
               "eval question overlaps training": 0}
    extract_out = generator.complete([[{"role": "user", "content": EXTRACT.format(text=c.text)}] for c in chunks],
                                     max_tokens=400, progress=progress)
    raw: list[tuple[int, dict]] = []
    fallback = []
    for ci, (chunk, out) in enumerate(zip(chunks, extract_out)):
        parsed = parse_facts(out, chunk)
        if not parsed:
            fallback.append(ci)
        raw += [(ci, p) for p in parsed]
    dropped["unparsable or unsupported fact"] = max(0, sum(out.count('"fact"') for out in extract_out) - len(raw))

    # forward questions for every fact, and reverse questions for the fact's other entities. An "answer" that
    # is most of the sentence (small generators do that) is replaced by the names and numbers in the fact.
    targets = []  # (chunk index, fact dict, answer asked for)
    for ci, p in raw:
        found = [e.text for e in entities(p["fact"])]
        if not p["answer"] or len(p["answer"].split()) > 6 or len(p["answer"]) > 0.6 * len(p["fact"]):
            dropped["answer key was most of the sentence"] = dropped.get("answer key was most of the sentence", 0) + 1
            answers = found[:3]
        else:
            answers = [p["answer"]] + [a for a in found if normalise(a) != normalise(p["answer"])][:2]
        targets += [(ci, p, a) for a in answers]
    prompts = [[{"role": "user", "content": PARAPHRASE.format(n=n_paraphrases, fact=p["fact"])}] for _, p in raw]
    prompts += [[{"role": "user", "content": QUESTIONS.format(n=n_questions, answer=a, fact=p["fact"])}] for _, p, a in targets]
    prompts += [[{"role": "user", "content": EVAL.format(answer=a, fact=p["fact"])}] for _, p, a in targets]
    outs = generator.complete(prompts, max_tokens=200, progress=progress)
    para_out, q_out, eval_out = outs[:len(raw)], outs[len(raw):len(raw) + len(targets)], outs[len(raw) + len(targets):]
    paraphrases = {}
    for (ci, p), out in zip(raw, para_out):
        keep = [x for x in lines(out) if normalise(p["answer"]) in normalise(x)]
        dropped["paraphrase lost the answer"] += len(lines(out)) - len(keep)
        paraphrases[id(p)] = keep[:n_paraphrases]

    facts: list[Fact] = []
    for k, ((ci, p, answer), qs, ev) in enumerate(zip(targets, q_out, eval_out), start=1):
        chunk = chunks[ci]
        statements = list(dict.fromkeys([p["fact"], *paraphrases[id(p)]]))
        questions = list(dict.fromkeys(q for q in lines(qs) if q.endswith("?") and normalise(answer) not in normalise(q)))
        dropped["question gives the answer away"] += len(lines(qs)) - len(questions)
        if not questions:
            continue
        source = f"{chunk.file} chars {p['start']}-{p['end']}"
        fact = Fact(f"gen-{k}", "chat", answer, statements=statements, context=chunk.text)
        fact.phrasings = [Phrasing([{"role": "user", "content": q}], source, "train") for q in questions[:n_questions]]
        if len(fact.phrasings) >= 3:
            fact.phrasings[-1].split = "dev"
        evals = [q for q in lines(ev)[:1] if q.endswith("?") and normalise(answer) not in normalise(q)]
        for q in evals:
            if overlaps(q, questions + statements):
                dropped["eval question overlaps training"] += 1
            else:
                fact.phrasings.append(Phrasing([{"role": "user", "content": q}], source, "test", origin="generated-eval"))
        facts.append(fact)
    # the rule-based facts always join in: every sentence's names and numbers stay covered, whatever the
    # generator missed (a small generator misses a lot)
    facts += rule_facts(chunks)
    return GeneratedFacts(facts, fallback, dropped)
