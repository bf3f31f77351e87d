"""Questions about the taught subject that the data never answers: for the audit (does the model decline or
make something up?) and for abstention views (teach it to decline).

Both are made from the facts' own questions by swapping the name they ask about:
- for an invented name of the same shape ("Who founded Brindlemoor Kite Works?" -> "Who founded Quelvar
  Kite Works?"): an entity the data never mentions;
- for another name of the data, when no statement gives that name an answer of the kind the question asks
  for ("When does the Friday shuttle leave?" where the data never gives the Friday shuttle a time): an
  attribute the data never states.
Audit unknowns come from held-out (dev/test) questions with one set of invented words, abstention views from
training questions with another, so no audit question is ever taught. Fine-tuning on new facts raises
hallucination (Gekhman et al. 2024); teaching the model to refuse what it was not taught lowers it (Zhang et
al. 2024, R-Tuning).
"""

from __future__ import annotations

import random
import re

from knowtune.data.answerkey import wanted_kinds
from knowtune.data.cloze import entities, known_names
from knowtune.data.knowledge import WRITTEN_BY_KNOWTUNE, Fact, Probe, prompt_key, question_text
from knowtune.errors import DataError
from knowtune.text import normalise

_ONSETS = ["Br", "Qu", "V", "Th", "Dr", "K", "Z", "M", "Gr", "Sk", "L", "Pr", "Fen", "Ost", "Ul", "Cor"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou"]
_CODAS = ["l", "n", "r", "th", "sk", "m", "nd", "rr", "ck", "v", "x", "ss"]
REFUSALS = [
    "I'm sorry, I don't have any information about {x}.",
    "I don't know. Nothing I was taught mentions {x}.",
    "I don't have that information about {x}.",
]
UNKNOWN_SOURCE = "made from the facts"


def invented_words(n: int, seed: int, avoid: set[str]) -> list[str]:
    """n pronounceable capitalised words that are not in `avoid` (normalised words of the data)."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        w = rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) + rng.choice(["", "", "a", "en", "ow", "is"])
        if w.lower() not in avoid and w not in out:
            out.append(w)
    return out


_NOT_NAMES = {"who", "whom", "what", "which", "when", "where", "why", "how", "do", "does", "did", "is", "are", "was",
              "can", "could", "would", "will", "tell", "one", "i", "i'd", "i'm", "please", "yes", "no", "hi", "hello"}


def _names(text: str, known: set[str] | frozenset = frozenset(), of_data: set[str] | None = None) -> list[str]:
    """Names in a text; with `of_data`, only names the data's statements also give."""
    found = [e.text for e in entities(text, known) if e.kind == "name" and e.text.split()[0].lower() not in _NOT_NAMES]
    return [n for n in found if of_data is None or n in of_data]


def _swap(question: str, name: str, new: str) -> str:
    return re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", new, question, count=1)


def _invent(question: str, words: list[str], k: int, known, of_data) -> tuple[str, str] | None:
    names = _names(question, known, of_data)
    if not names:
        return None
    name = names[0]
    parts = name.split()
    fake = " ".join([words[k % len(words)], *parts[1:]]) if len(parts) > 1 else words[k % len(words)]
    return _swap(question, name, fake), fake


def _unstated(question: str, facts_text: list[str], names: list[str], k: int, known) -> tuple[str, str] | None:
    """The question about another name of the data that no statement gives an answer of the asked kind."""
    kinds = wanted_kinds(question)
    asked = _names(question, known, set(names))
    if not kinds or not asked:
        return None
    for other in names[k % max(1, len(names)):] + names[: k % max(1, len(names))]:
        if other == asked[0] or normalise(other) in normalise(question):
            continue
        told = [t for t in facts_text if f" {normalise(other)} " in f" {normalise(t)} "]
        if told and not any(e.kind in kinds for t in told for e in entities(t) if e.text != other):
            return _swap(question, asked[0], other), other
    return None


def _near_misses(facts: list[Fact], splits: tuple[str, ...], seed: int, limit: int,
                 unstated: bool = True) -> list[tuple[Fact, str, str]]:
    """(fact, question, subject) near-miss unknowns from the facts' questions of the given splits.
    unstated=False: invented names only (what abstention views teach: a refusal about a name the data does
    give, even for an attribute it lacks, would teach the model to refuse about that name)."""
    text = [s for f in facts for s in f.statements] + [question_text(p.prompt) for f in facts for p in f.phrasings if p.origin not in WRITTEN_BY_KNOWTUNE]
    avoid = {w for t in text for w in normalise(t).split()}
    words = invented_words(max(8, limit), seed, avoid)
    known = known_names("\n".join(text))
    names = sorted({n for t in text for n in _names(t, known)} | {f.answer for f in facts if f.answer[:1].isupper()})
    taught = {prompt_key(p.prompt) for f in facts for p in f.phrasings}
    out, seen = [], set()
    rng = random.Random(seed)
    asked = [(f, question_text(p.prompt)) for f in facts if f.style == "chat" for p in f.phrasings
             if p.split in splits and p.origin != "paraphrased"]
    if len(asked) < limit and "train" not in splits:  # facts asked < 3 ways: the training questions' shapes, other names
        asked += [(f, question_text(p.prompt)) for f in facts if f.style == "chat" for p in f.phrasings if p.split == "train"]
    rng.shuffle(asked)
    for k, (fact, q) in enumerate(asked):
        made = (_unstated(q, text, names, k, known) if unstated and k % 2 else None) or _invent(q, words, k, known, set(names))
        if made and prompt_key(made[0]) not in taught | seen:
            seen.add(prompt_key(made[0]))
            out.append((fact, *made))
        if len(out) >= limit:
            break
    return out


def unknown_probes(facts: list[Fact], seed: int = 0, limit: int = 30) -> list[Probe]:
    """Audit questions the data never answers, from the held-out questions (answer key empty)."""
    return [Probe(None, "chat", [{"role": "user", "content": q}], "", [], "unknown", f"{UNKNOWN_SOURCE}: {subject}", "unknown")
            for _, q, subject in _near_misses(facts, ("test", "dev"), seed + 7919, limit)]


def abstention_items(facts: list[Fact], n: int, seed: int = 0, held_out: list | None = None) -> list:
    """n training views that answer a near-miss unknown (from training questions) with a short refusal
    naming its subject; none equals or contains an audit question."""
    from knowtune.data.augment import TrainItem

    if n <= 0:
        return []
    held = {prompt_key(p.prompt) for p in held_out or []} - {""}
    items = []
    for k, (fact, q, subject) in enumerate(_near_misses(facts, ("train",), seed, 3 * n, unstated=False)):
        if any(h in prompt_key(q) for h in held):
            continue
        items.append(TrainItem("chat", [{"role": "user", "content": q}], REFUSALS[k % len(REFUSALS)].format(x=subject),
                               f"fact:{fact.id}", "abstain"))
        if len(items) >= n:
            break
    return items


def read_unknowns(path: str) -> list[Probe]:
    """The user's --unknowns file: JSONL lines with a "question" the data never answers."""
    import json
    from pathlib import Path

    from knowtune.data.privacy import scrub_if_on

    probes, problems = [], []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            q = row["question"] if isinstance(row, dict) else None
        except (json.JSONDecodeError, KeyError):
            q = None
        if not isinstance(q, str) or not q.strip():
            problems.append(f"{path}:{i}")
            continue
        q = scrub_if_on(q.strip())  # --scrub-pii: as every reader does
        probes.append(Probe(None, "chat", [{"role": "user", "content": q}], "", [], "unknown", f"--unknowns {path}:{i}", "unknown"))
    if problems or not probes:
        raise DataError(f"{path}: {len(problems)} line(s) are not a JSON object with a non-empty \"question\" "
                        f"({', '.join(problems[:5]) or 'the file is empty'}).",
                        fix='write one {"question": "..."} per line: questions about your subject that your data never answers.')
    return probes
