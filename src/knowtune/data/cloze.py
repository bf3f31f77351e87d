"""Rule-based language for augmentation without a generator model: sentences, the entities in them (names,
numbers, dates, quoted titles), and questions that ask for each entity.

Asking for *every* entity of a statement, not only for its answer key, is what teaches a fact in both
directions: "Brindlemoor Kite Works was founded by Oriel Pashkevich." gives "... was founded by whom?"
(forward) and "What was founded by Oriel Pashkevich?" (reverse). A model taught only one direction usually
cannot answer the other (the Reversal Curse, Berglund et al. 2023).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_TITLE = re.compile(r'"([^"\n]{2,80}?)"|“([^”\n]{2,80}?)”')
_DATE = re.compile(rf"\b(?:\d{{1,2}}(?:st|nd|rd|th)?\s+)?(?:{MONTHS})(?:\s+\d{{1,2}}(?:st|nd|rd|th)?)?,?\s+\d{{4}}\b")
_YEAR = re.compile(r"(?<![\w.,])(1[0-9]{3}|20[0-9]{2})(?![\w,]|\.\d)")
_TIME = re.compile(r"\b\d{1,2}[:.]\d{2}\s?(?:[ap]\.?m\.?)?(?!\d)", re.I)
_NUMBER = re.compile(r"(?<![\w.])[£$€]?\d[\d,]*(?:\.\d+)?%?(?![\w])")
_CONNECT = r"(?:of|the|and|de|van|von|da|du|la|le|del|&)"
_NAME = re.compile(rf"[A-Z][\w'’\-]*(?:\s+(?:{_CONNECT}\s+)*[A-Z][\w'’\-]*)*")
# A capitalised word at the start of a sentence is usually just the sentence start, not part of a name.
_SENTENCE_OPENERS = {
    "the", "a", "an", "in", "on", "at", "by", "for", "from", "to", "every", "each", "all", "our", "its", "their",
    "this", "these", "those", "that", "when", "after", "before", "during", "since", "if", "as", "while", "with",
    "most", "some", "any", "no", "new", "members", "it", "they", "he", "she", "we", "you", "there", "here",
    "only", "both", "one", "two", "three", "once", "today", "until", "unlike", "like", "under", "over", "about",
}
_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "st", "prof", "no", "vs", "etc", "e.g", "i.e", "mt", "ft", "jr", "sr", "co", "inc", "ltd"}
_HONORIFICS = {"dr", "mr", "mrs", "ms", "prof", "sir", "dame"}
# The subject is the shortest start that is one character or ends in a non-space (a longer one ending in a
# space is never the shortest), and the runs are possessive: as `.+?\s+` and `\s+.+` the overlapping runs
# were rescanned from every position of a run of spaces (quadratic). Same matches on `questions_for`'s body,
# which never ends in whitespace.
AUX = re.compile(r"^(?P<subj>.|.*?\S)\s++(?P<aux>is|was|are|were|will|can)\s++(?P<rest>.++)$")
# "Dr." and "e.g." end no sentence: the words before a full stop that are abbreviations, as whole words.
_NOT_AFTER_ABBREVIATION = "".join(
    rf"(?<!(?<![\w.]){''.join(f'[{c}{c.upper()}]' if c.isalpha() else re.escape(c) for c in word)})"
    for word in sorted(_ABBREVIATIONS))
# A sentence ends at . ! ? (a closing quote or bracket kept) before a capital or a digit, or at a blank line.
# Abbreviations are ruled out here, in the pattern, so that `sentences` never has to look back over them.
_SENTENCE_END = re.compile(rf"(?:{_NOT_AFTER_ABBREVIATION}\.|[!?])[\"”’)]?(?=\s+[\"“(]?[A-Z0-9])|\n\s*\n")
# The word before a full stop: its whole run of word characters and dots (the lookbehind starts the match
# there, once, instead of at every character of a long run).
_WORD_BEFORE_STOP = re.compile(r"(?<![\w.])([\w.]+)\.$")
# Spaces before , or ? (the lookbehind starts a match only at the first space of a run).
_SPACE_BEFORE_MARK = re.compile(r"(?<!\s)\s+([,?])")


@dataclass(frozen=True)
class Entity:
    text: str
    start: int
    end: int
    kind: str  # "title" | "date" | "year" | "time" | "number" | "name"


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences in text; end excludes trailing spaces."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        word = _WORD_BEFORE_STOP.search(text[start:m.start() + 1])
        if m.group().startswith(".") and word and word.group(1).lower() in _ABBREVIATIONS:
            continue
        end = m.end()
        if text[start:end].strip():
            spans.append(trim_span(text, start, end))
        start = end
    if text[start:].strip():
        spans.append(trim_span(text, start, len(text)))
    return spans


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def entities(sentence: str, known_names: set[str] | frozenset = frozenset()) -> list[Entity]:
    """Quoted titles, dates, years, times, numbers and names in one sentence, left to right, not overlapping.

    known_names: words seen capitalised in mid-sentence elsewhere (a single capitalised word at the start of
    a sentence counts as a name only when it is one of them)."""
    found: list[Entity] = []
    taken = [False] * len(sentence)

    def add(start: int, end: int, kind: str) -> None:
        while end > start and sentence[end - 1] in ".,;:!?'’ ":
            end -= 1
        if end > start and not any(taken[start:end]):
            found.append(Entity(sentence[start:end], start, end, kind))
            taken[start:end] = [True] * (end - start)

    for m in _TITLE.finditer(sentence):
        g = 1 if m.group(1) is not None else 2
        add(m.start(g), m.end(g), "title")
    for m in _DATE.finditer(sentence):
        add(m.start(), m.end(), "date")
    for m in _TIME.finditer(sentence):
        add(m.start(), m.end(), "time")
    for m in _YEAR.finditer(sentence):
        add(m.start(), m.end(), "year")
    for m in _NUMBER.finditer(sentence):
        add(m.start(), m.end(), "number")
    for m in _NAME.finditer(sentence):
        start, end, words = m.start(), m.end(), m.group().split()
        if m.group().lower() in _HONORIFICS and sentence[end:end + 1] == ".":
            continue  # "Dr." belongs to the name after it, which is found on its own
        at_start = not sentence[:start].strip(" \"“(")
        if at_start and words[0].lower() in _SENTENCE_OPENERS | {"i"}:
            if len(words) == 1:
                continue
            rest = 1  # "The Guild of X" -> "Guild of X": connecting words after the opener are dropped too
            while rest < len(words) - 1 and words[rest].lower() in {"of", "the", "and"}:
                rest += 1
            if words[rest].lower() in {"of", "the", "and"}:
                continue  # "The The": nothing but connecting words
            start = sentence.index(words[rest], start + len(" ".join(words[:rest])))
        elif at_start and len(words) == 1 and words[0].strip("'’s") not in known_names:
            continue
        text = sentence[start:end]
        if text.endswith(("'s", "’s")):
            end -= 2
        add(start, end, "name")
    return sorted(found, key=lambda e: e.start)


def known_names(text: str) -> set[str]:
    """Words written capitalised in mid-sentence somewhere in text."""
    return {m.group(1) for m in re.finditer(r"(?<=[a-z,;:] )([A-Z][\w'’\-]+)", text)}


def named_heads(names: list[str]) -> dict[str, str]:
    """Head noun -> full name, for heads that end exactly one multi-word name ('society' -> 'Harrowgate
    Lantern Society'), so 'the society' in a later sentence can be read as that name."""
    heads: dict[str, set[str]] = {}
    for name in names:
        words = name.split()
        if len(words) >= 2 and words[-1][:1].isupper() and words[-1].isalpha():
            heads.setdefault(words[-1].lower(), set()).add(name)
    return {h: next(iter(full)) for h, full in heads.items() if len(full) == 1}


def resolve_mentions(sentence: str, heads: dict[str, str]) -> str:
    """Replace 'the <head>' with 'the <full name>' where the head noun names exactly one entity."""
    for head, full in heads.items():
        if full in sentence:
            continue
        sentence = re.sub(rf"\b([Tt])he {head}\b", lambda m: f"{m.group(1)}he {full}", sentence)
    return sentence


def _wh(before: str, after: str, e: Entity, lower: bool = True) -> str:
    """The question word for an entity, from the words around it."""
    before, after = before.rstrip().lower(), after.lstrip()
    if e.kind in ("year", "date"):
        wh = "what year" if e.kind == "year" else "what date"
    elif e.kind == "time":
        wh = "what time"
    elif e.kind == "number" and (e.text[0] in "£$€" or e.text.endswith("%")):
        wh = "how much" if e.text[0] in "£$€" else "what percentage"
    elif e.kind == "number":
        wh = "how many" if re.match(r"[a-z]", after) else "what"
    elif e.kind == "name" and before.endswith((" by", " to", " with", " from")) or before == "by":
        wh = "whom"
    elif e.kind == "name" and re.match(r"(founded|leads|led|runs|ran|wrote|designed|built|invented|chairs|manages|directed|created|owns)\b", after):
        wh = "who"
    else:
        wh = "what"
    return wh if lower else wh[0].upper() + wh[1:]


def _replaced_span(sentence: str, e: Entity) -> tuple[int, int]:
    """The span a question word replaces: a quoted title with its quotes and the punctuation inside them."""
    start, end = e.start, e.end
    if e.kind == "title":
        while end < len(sentence) and sentence[end] in ".,!?":
            end += 1
        if end < len(sentence) and sentence[end] in "\"”":
            end += 1
        if start > 0 and sentence[start - 1] in "\"“":
            start -= 1
    return start, end


def questions_for(sentence: str, e: Entity) -> list[str]:
    """Questions whose answer is entity e of sentence: in place ('... founded by whom?'), fronted where the
    sentence has a simple 'X is/was ...' shape ('Who was X founded by?'), and a fill-in-the-blank."""
    body = sentence.rstrip().rstrip(".!?").rstrip()
    start, end = _replaced_span(sentence, e)
    before = re.sub(r"(?i)(?:^|\s)(?:the|a|an|dr\.|mr\.|mrs\.|ms\.|prof\.)\s*$", "", sentence[:start].rstrip(" \"“("))
    wh = _wh(before, sentence[end:], e, lower=bool(before.strip()))
    after = body[end:] if end <= len(body) else ""
    before = before.rstrip() + " " if before.strip() else ""
    qs = [f"{before}{wh}{after}?".replace("  ", " ")]
    m = AUX.match(body)
    if m and e.start >= m.start("rest") and e.kind != "title" and not body[:start].rstrip().endswith(","):
        subj = m.group("subj")
        subj = subj[0].lower() + subj[1:] if subj.split()[0] in {"The", "A", "An"} else subj
        lead = re.sub(r"(?i)(?:^|\s)(?:the|a|an)$", "", body[m.start("rest"):start].rstrip())
        rest = lead + body[end:]
        prep = re.search(r"(?:^|\s)(by|in|on|at|from|to|with)$", lead)
        if prep and prep.group(1) in ("in", "on", "at") and e.kind in ("year", "date", "time", "name"):
            front = "When" if e.kind != "name" else "Where"
            rest = lead[:prep.start()] + body[end:]
        elif wh == "whom":
            front = "Who"
        elif wh == "how many":
            noun = re.match(r"\s*([a-z]+)", body[e.end:])
            front, rest = f"How many {noun.group(1)}", lead + body[end + noun.end():]
        else:
            front = "What"
        qs.append(_SPACE_BEFORE_MARK.sub(r"\1", f"{front} {m.group('aux')} {subj} {rest.strip()}?").replace("  ", " "))
    blank = sentence[:start] + "___" + sentence[end:]
    qs.append(f"Fill in the blank: {blank.strip()}")
    return list(dict.fromkeys(qs))


def entity_questions(sentence: str, known: set[str] | frozenset = frozenset(), max_entities: int = 6) -> list[tuple[str, Entity]]:
    """(question, entity) for every entity of a sentence: both directions of the fact it states."""
    out = []
    for e in entities(sentence, known)[:max_entities]:
        out += [(q, e) for q in questions_for(sentence, e)]
    return out


def description_first(prompt: str, completion: str, name: str) -> list[tuple[str, str]]:
    """Plain-text views that put a description before the name it describes: (prompt, completion) pairs.

    For continuation data like "Daphne Barrington, known for being" -> "the director of X": the taught
    direction is name -> description; these add description -> name ("The director of X is" -> "Daphne
    Barrington."), which continuation training alone never teaches."""
    desc = completion.strip().rstrip(".").strip()
    if name not in prompt or not desc or name in desc:
        return []
    first = desc.split()[0].lower()
    if first in ("the", "a", "an"):
        subject = desc[0].upper() + desc[1:]
    elif first.endswith("ed"):
        subject = f"The one who {desc}"
    elif first.endswith("ing"):
        subject = f"The one known for {desc}"
    else:
        return []
    return [(f"{subject} is", f" {name}."), (f"Q: Who is {subject[0].lower() + subject[1:]}? A:", f" {name}.")]
