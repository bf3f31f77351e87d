"""Augmentation without a generator model: every fact is taught in several views, so a fact given once
still reaches the model more than one way. Plus replay: the base model's own answers to general prompts,
mixed in so training does not overwrite what the model already knew.

Views of a chat-style fact, for each training phrasing:
- the question answered with a full statement of the fact (or the answer key when there is none)
- the question in a question template ("Question: ...\nAnswer:") answered with the short answer key
- each statement as plain text (language modelling on the whole sentence), without the chat template
Plain-style (prompt/completion) facts are taught as continuation only, as their users query them.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from importlib import resources

from knowtune.data.knowledge import Fact

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

    kind: str  # "chat" | "plain" | "text"
    prompt: object
    completion: str
    origin: str  # "fact:<id>" or "replay"

    def to_row(self) -> dict:
        return asdict(self)


def fact_views(fact: Fact, views: tuple[str, ...] = ("answer", "template", "statement")) -> list[TrainItem]:
    """All training views of one fact from its train phrasings."""
    origin = f"fact:{fact.id}"
    train = fact.split("train")
    if fact.style == "plain":
        return [TrainItem("plain", p.prompt, fact.answer, origin) for p in train]
    items: list[TrainItem] = []
    statements = fact.statements or []
    for i, p in enumerate(train):
        if "answer" in views:
            full = statements[i % len(statements)] if statements else fact.answer
            items.append(TrainItem("chat", p.prompt, full, origin))
        if "template" in views:
            items.append(TrainItem("chat", _templated(p.prompt, i + len(fact.id)), fact.answer, origin))
    if "statement" in views:
        texts = statements or [f"{_last_user(p.prompt)} {fact.answer}" for p in train[:1]]
        items += [TrainItem("text", "", s, origin) for s in texts]
    return items


def _last_user(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def _templated(messages: list[dict], k: int) -> list[dict]:
    template = QUESTION_TEMPLATES[k % len(QUESTION_TEMPLATES)]
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            m["content"] = template.format(q=m["content"])
            break
    return out


def knowledge_items(facts: list[Fact], views=("answer", "template", "statement")) -> list[TrainItem]:
    return [item for fact in facts for item in fact_views(fact, views)]


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
    return [TrainItem("chat", [{"role": "user", "content": order[i % len(order)][0]}], order[i % len(order)][1], "replay")
            for i in range(n)]
