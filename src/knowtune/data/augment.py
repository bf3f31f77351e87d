"""Augmentation without a generator model: every fact is taught in several views, so a fact given once
still reaches the model more than one way. Plus replay: the base model's own answers to general prompts,
mixed in so training does not overwrite what the model already knew.

Views of a chat-style fact, for each training phrasing:
- the question answered with a full statement of the fact (or the answer key when there is none)
- casual: the question as people type it into a box (its keyword form, or lower case without "?" when it has
  none), answered like the question: without it a taught model echoes a terse query back instead of answering
  it (measured on the generality benchmark's tune sets: chat support 52% -> 70%, short Q&A 67% -> 73%; both
  forms together cost short Q&A 12 points of retention)
- the question in a question template ("Question: ...\nAnswer:") answered with the short answer key
- each statement as plain text (language modelling on the whole sentence), without the chat template
- cloze: questions over every entity of each statement (names, numbers, dates, quoted titles): the fact
  asked for from both ends (`cloze.entity_questions`); a fill-in-the-blank is answered with the entity,
  a question with the statement
- reverse: the answer first ("What do you know about <answer>?" answered with the statement)
- context (facts read from documents; opt-in): a question asked with its passage and a distractor passage
  in the retrieval prompt `knowtune compare` uses, answered with the statement, so tuned + RAG reads the
  context
Plain-style (prompt/completion) facts are taught as continuation, as their users query them, plus cloze
and reverse views in plain text: a fill-in-the-blank over each entity and the description put before the
name it describes (`cloze.description_first`). Cloze and reverse views are what break the Reversal Curse.
"""

from __future__ import annotations

from typing import Literal

import json
import random
import re
from dataclasses import asdict, dataclass
from importlib import resources

from knowtune.data.cloze import description_first, entities, entity_questions
from knowtune.data.knowledge import Fact, casual_forms, question_text

ALL_VIEWS = ("answer", "casual", "template", "statement", "cloze", "reverse", "context", "profile")
# context is opt-in: on the example handbook it lifts tuned + RAG from 36% to 69% but costs closed-book
# accuracy (64% -> 57%) and retention (-0.8 -> -6.7 points)
DEFAULT_VIEWS = ("answer", "casual", "template", "statement", "cloze", "reverse")
# The prompt `knowtune compare` uses for retrieval-augmented answers; the context view teaches it.
RAG_PROMPT = "Answer the question using the context below.\n\nContext:\n{context}\n\nQuestion: {question}"

# Wrappers that ask the same question in a different frame; {q} is the original question.
QUESTION_TEMPLATES = [
    "Question: {q}\nAnswer briefly.",
    "{q} Reply in a few words.",
    "Quick question: {q}",
    "I need a short answer. {q}",
]


@dataclass
class TrainItem:
    """One training example: a prompt (chat messages, plain text, or "" for raw text) and the target."""

    kind: Literal["chat", "plain", "text"]  # chat template, plain continuation, or raw document text
    prompt: object
    completion: str
    origin: str  # "fact:<id>" or "replay"
    view: str = ""  # which view made it (answer, template, statement, cloze, reverse, replay, ...)

    def to_row(self) -> dict:
        return asdict(self)


def fact_views(fact: Fact, views: tuple[str, ...] = DEFAULT_VIEWS, max_cloze: int = 8) -> list[TrainItem]:
    """All training views of one fact from its train phrasings (and its statements, for cloze views)."""
    origin = f"fact:{fact.id}"
    train = fact.split("train")
    if fact.style == "plain":
        items = [TrainItem("plain", p.prompt, p.answer or fact.answer, origin, "answer") for p in train]
        return _dedupe(items + _plain_both_ways(fact, train, views, max_cloze))
    items: list[TrainItem] = []
    statements = fact.statements or []
    for i, p in enumerate(train):
        full = p.answer or (statements[i % len(statements)] if statements else fact.answer)
        if "answer" in views:
            items.append(TrainItem("chat", p.prompt, full, origin, "answer"))
            if _without_system(p.prompt) != p.prompt:  # asked with the data's system prompt and without it
                items.append(TrainItem("chat", _without_system(p.prompt), full, origin, "answer"))
        if "casual" in views:
            items += [TrainItem("chat", [{"role": "user", "content": q}], full, origin, "casual")
                      for q in casual_forms(question_text(p.prompt))[:1]]  # lower case too cost 12 points of retention
        if "template" in views:
            items.append(TrainItem("chat", _templated(_without_system(p.prompt), i + len(fact.id)), fact.answer, origin, "template"))
    if "statement" in views:
        texts = statements or [f"{question_text(p.prompt)} {fact.answer}" for p in train[:1]]
        items += [TrainItem("text", "", s, origin, "statement") for s in texts]
    sentences = statements or ([fact.answer] if len(fact.answer.split()) >= 4 else [])
    if "cloze" in views and train:
        # a fill-in-the-blank is answered with the entity; a question with the whole statement, in the model's
        # own answering style (bare "95" answers to "how many" questions teach it to answer everything tersely)
        cloze = [TrainItem("chat", [{"role": "user", "content": q}], e.text if q.startswith("Fill in") else s, origin, "cloze")
                 for s in sentences for q, e in entity_questions(s)]
        items += _spread(cloze, max_cloze)
    if "reverse" in views and train and re.search(r"[A-Za-z]", fact.answer):  # not "What do you know about 27?"
        about = statements[0] if statements else f'{fact.answer}: the answer to "{question_text(train[0].prompt)}"'
        items.append(TrainItem("chat", [{"role": "user", "content": f"What do you know about {fact.answer}?"}],
                               about, origin, "reverse"))
    return _dedupe(items)


def context_items(facts: list[Fact]) -> list[TrainItem]:
    """For facts read from documents: a train question asked with the fact's passage and another passage
    as context (in the order of `RAG_PROMPT`), answered with the statement. Without it a tuned model asked
    with retrieved context answers from memory in the terse style of its templated views and ignores the
    passages (measured: 64% closed-book, 36% with RAG on the example handbook)."""
    passages = list(dict.fromkeys(f.context for f in facts if f.context))
    items = []
    for i, fact in enumerate(f for f in facts if f.context and f.split("train")):
        if len(passages) > 1:
            other = passages[(passages.index(fact.context) + 1 + i % (len(passages) - 1)) % len(passages)]
            pair = [fact.context, other] if i % 2 else [other, fact.context]
        else:
            pair = [fact.context]
        question = question_text(fact.split("train")[0].prompt)
        answer = fact.statements[0] if fact.statements else fact.answer
        items.append(TrainItem("chat", [{"role": "user", "content": RAG_PROMPT.format(context="\n\n".join(pair), question=question)}],
                               answer, f"fact:{fact.id}", "context"))
    return items


PROFILE_QUESTIONS = ["Tell me about {x}.", "What do you know about {x}?", "Give me the facts about {x}."]
PROFILE_MAX_STATEMENTS = 4


def profile_items(facts: list[Fact]) -> list[TrainItem]:
    """For every name stated in two or more different statements: "Tell me about <name>." answered with those
    statements together. Each entity is bound to its own attributes in one answer, next to each other, which
    is what tells near neighbours apart (the Amber Line's year is not the Teal Line's)."""
    from knowtune.data.cloze import known_names

    statements = list(dict.fromkeys(s for f in facts if f.style == "chat" for s in f.statements))
    known = known_names("\n".join(statements))
    about: dict[str, list[str]] = {}
    for s in statements:
        for e in entities(s, known):
            if e.kind == "name" and len(e.text) > 2:
                about.setdefault(e.text, []).append(s)
    items = []
    for k, (name, said) in enumerate(sorted(about.items())):
        said = list(dict.fromkeys(said))
        if len(said) >= 2:
            q = PROFILE_QUESTIONS[k % len(PROFILE_QUESTIONS)].format(x=name)
            items.append(TrainItem("chat", [{"role": "user", "content": q}], " ".join(said[:PROFILE_MAX_STATEMENTS]),
                                   f"entity:{name}", "profile"))
    return items


def _plain_both_ways(fact: Fact, train: list, views: tuple[str, ...], max_cloze: int) -> list[TrainItem]:
    """Cloze and reverse views of continuation data: text = prompt + completion."""
    origin, items = f"fact:{fact.id}", []
    for p in train[:3]:
        text = f"{p.prompt.rstrip()} {(p.answer or fact.answer).strip()}"
        found = entities(text)
        if "cloze" in views:
            for e in found:
                items.append(TrainItem("plain", f"Fill in the blank: {text[:e.start]}___{text[e.end:]}\nAnswer:",
                                       f" {e.text}", origin, "cloze"))
        if "reverse" in views:
            for e in found:
                if e.kind == "name" and e.end <= len(p.prompt):  # name in the prompt: description -> name
                    items += [TrainItem("plain", q, a, origin, "reverse") for q, a in description_first(p.prompt, p.answer or fact.answer, e.text)]
                elif e.kind == "name":  # name in the completion: name -> description
                    items.append(TrainItem("plain", f"About {e.text}:", f" {text}", origin, "reverse"))
    cloze = _spread([it for it in _dedupe(items) if it.view == "cloze"], max_cloze)
    return cloze + [it for it in items if it.view == "reverse"]


def _spread(items: list[TrainItem], n: int) -> list[TrainItem]:
    """At most n items, taken evenly across the list (so every entity keeps some of its questions)."""
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _dedupe(items: list[TrainItem]) -> list[TrainItem]:
    seen, out = set(), []
    for it in items:
        key = (it.kind, json.dumps(it.prompt, sort_keys=True), it.completion)
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def _without_system(messages: list[dict]) -> list[dict]:
    """The conversation without its system message: people ask a taught model with their own, or none."""
    return [m for m in messages if m["role"] != "system"] if any(m["role"] == "system" for m in messages) else messages


def _templated(messages: list[dict], k: int) -> list[dict]:
    template = QUESTION_TEMPLATES[k % len(QUESTION_TEMPLATES)]
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            m["content"] = template.format(q=m["content"])
            break
    return out


def knowledge_items(facts: list[Fact], views=DEFAULT_VIEWS, max_cloze: int = 8, per_entity: int = 8,
                    held_out: list | None = None) -> list[TrainItem]:
    """Every fact's views. Cloze and reverse views are capped at `per_entity` per entity and view across the
    whole data set: continuation data states one person's facts in many rows, and without the cap their
    entity views would outnumber the data itself. A generated question that contains a held-out prompt
    (`held_out`: dev and test probes) is dropped: the audit asks only what training never showed."""
    from knowtune.data.knowledge import prompt_key

    items = _dedupe([item for fact in facts for item in fact_views(fact, views, max_cloze)])
    if "context" in views:
        items += context_items(facts)
    if "profile" in views:
        items += profile_items(facts)
    held = {prompt_key(p.prompt) for p in held_out or []}
    held.discard("")
    seen: dict[tuple, int] = {}
    out = []
    for it in items:
        if it.view == "casual" and prompt_key(it.prompt) in held:
            continue
        if it.view in ("cloze", "reverse"):
            key = prompt_key(it.prompt)
            if any(h in key for h in held):
                continue
            cap = (it.view, it.prompt if it.kind == "plain" and it.prompt.startswith("About ") else it.completion.strip(" ."))
            seen[cap] = seen.get(cap, 0) + 1
            if seen[cap] > per_entity:
                continue
        out.append(it)
    return out


def general_rows(name: str) -> list[dict]:
    """The general sets shipped with knowtune: 'retention' (audit) and 'replay_prompts' (training)."""
    text = resources.files("knowtune.data").joinpath("general", f"{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def replay_items(answers: list[tuple[str, str]], n: int, seed: int = 0) -> list[TrainItem]:
    """n replay examples from (prompt, base model answer) pairs, cycling through them in shuffled order."""
    if not answers or n <= 0:
        return []
    rng = random.Random(seed)
    order = list(answers)
    rng.shuffle(order)
    return [TrainItem("chat", [{"role": "user", "content": order[i % len(order)][0]}], order[i % len(order)][1], "replay", "replay")
            for i in range(n)]
