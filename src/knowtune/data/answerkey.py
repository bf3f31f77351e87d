"""Short answer keys for answers written as sentences, and audit questions written from a fact's statement.

Chat, instruction and prompt/completion data usually answer in a sentence ("Our Tuesday shuttle leaves the
depot at 7:40 in the morning."). Scored against that whole sentence, a right answer in other words counts
as wrong. The key is the entity the sentence gives that the question did not ask with ("7:40"), chosen by
the question word where there is one (who -> a name, when -> a date, year or time, how many -> a number).
The sentence stays the fact's statement: it is still what the model is taught to say.
"""

from __future__ import annotations

import re

from knowtune.data.cloze import Entity, entities, questions_for
from knowtune.text import normalise

MIN_SENTENCE_WORDS = 4  # a sentence answer: at least this many words ending in . ! ?, or twice as many


def is_sentence(answer: str) -> bool:
    n = len(answer.split())
    return n >= 2 * MIN_SENTENCE_WORDS or (n >= MIN_SENTENCE_WORDS and answer.rstrip().endswith((".", "!", "?")))

# question word -> entity kinds it asks for, best first
_WANTS = [
    (r"\bwhat (?:year|decade)\b|\bwhich year\b", ("year", "date")),
    (r"\bwhat time\b|\bwhen does\b|\bwhen do\b|\bwhat hour\b", ("time", "date", "year")),
    (r"\bwhen\b|\bwhat date\b|\bwhich day\b", ("date", "year", "time", "number", "name")),
    (r"\bhow (?:many|much|long|old|far|often|big|tall|high)\b|\bwhat (?:percentage|number|price|fee|cost)\b", ("number", "time", "year")),
    (r"\bwho(?:m|se)?\b", ("name",)),
    (r"\bwhere\b", ("name",)),
]


def wanted_kinds(question: str) -> tuple[str, ...]:
    q = question.lower()
    return next((kinds for pattern, kinds in _WANTS if re.search(pattern, q)), ())


def short_key(question: str, answer: str, known: set[str] | frozenset = frozenset()) -> str | None:
    """The entity a sentence answer gives for a question, or None when the answer is already short or
    states no entity the question lacks (then the whole answer stays the key)."""
    if not is_sentence(answer):
        return None
    asked = f" {normalise(question)} "
    fresh = [trim_opener(e, answer, known) for e in entities(answer, known)]
    fresh = [e for e in fresh if f" {normalise(e.text)} " not in asked]
    if not fresh:
        return None
    kinds = wanted_kinds(question)
    for kind in kinds:
        hit = next((e for e in fresh if e.kind == kind), None)
        if hit:
            return hit.text
    return fresh[0].text if not kinds else None


# The first capitalised word after a space and any 'the', 'of', 'and'. The lookbehinds start a match only at a
# space that does not follow one of those words (a match there would start one word earlier), so a long run of
# them is scanned once, not once per word.
_NEXT_CAPITAL = re.compile(r"(?<!\sthe)(?<!\sof)(?<!\sand)\s(?:(?:the|of|and)\s)*([A-Z])")


def trim_opener(e: Entity, sentence: str, known) -> Entity:
    """'Take the Amber Line' -> 'Amber Line': a name that starts a sentence with a word never written
    capitalised mid-sentence (a verb, 'Yes') starts at the next capitalised word."""
    words = e.text.split()
    if e.kind != "name" or len(words) < 2 or sentence[:e.start].strip(" \"“(") or words[0] in known:
        return e
    rest = _NEXT_CAPITAL.search(e.text)
    return Entity(e.text[rest.start(1):], e.start + rest.start(1), e.end, e.kind) if rest else e


def key_entity(statement: str, key: str) -> Entity | None:
    """The entity of a statement that is the answer key."""
    k = normalise(key)
    return next((e for e in entities(statement) if normalise(e.text) == k), None)


_CLAUSE_BREAK = re.compile(r"(?<=[a-z0-9)])(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bSt)(?<!\bMrs)(?:[.;!?]|,| -|:)\s+")
_CONJUNCTION = re.compile(r"^(?:and|but|so|or|which|while|because|then)\s+", re.I)


def clauses(sentence: str) -> list[str]:
    """The parts of a long sentence between commas, semicolons and sentence ends, each as a short sentence
    ('The winery was started by Anselm Tessaro, a former ferryman who ...' -> 'The winery was started by
    Anselm Tessaro.'); parts under three words stay joined to the one before."""
    parts: list[str] = []
    for part in _CLAUSE_BREAK.split(sentence.strip()):
        part = _CONJUNCTION.sub("", part.strip().rstrip(".!?"))
        part = part[:1].upper() + part[1:]
        if parts and len(part.split()) < 3:
            parts[-1] += ", " + part
        elif part:
            parts.append(part)
    return [p + "." for p in parts]


def short_clause(statement: str, key: str) -> str:
    """The clause of a statement that holds the key (the statement itself when no clause does)."""
    k = f" {normalise(key)} "
    return next((c for c in clauses(statement) if k in f" {normalise(c)} "), statement)


def questions_from_statement(statement: str, key: str) -> list[str]:
    """Questions whose answer is `key`, written from the clause of the statement that holds it (shortest
    first), no fill-in-the-blanks."""
    clause = short_clause(statement, key)
    e = key_entity(clause, key)
    if e is None:
        return []
    qs = [q for q in questions_for(clause, e) if not q.startswith("Fill in the blank") and len(q.split()) >= MIN_QUESTION_WORDS]
    return sorted(qs, key=len)


MIN_QUESTION_WORDS = 4  # "What?" or "Welcome to whom?" ask nothing a reader could answer
