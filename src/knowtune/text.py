"""Text helpers shared by every layer: normalisation, whole-word answer matching, the rule-based decline judge.

An answer is correct when the answer key, or one of its aliases, appears as a whole-word sequence in the
model's greedy answer after both are normalised (case, accents, punctuation and spacing). The closed-book
scorer of the audit, `knowtune eval` and `knowtune ask`; the data layer uses the same normalisation to
group, key and deduplicate what it reads. `DECLINE_TEXT` is the short refusal `ask`, `chat` and `serve`
give instead of an answer (the decline judge counts it as declining).
"""

from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE = re.compile(r"\s+")

DECLINE_TEXT = "I'm not sure about that, so I won't guess."


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def matches(output: str, answer: str, aliases: list[str] | tuple = ()) -> bool:
    """True when the answer or any alias occurs in the output as whole words."""
    out = f" {normalise(output)} "
    for key in (answer, *aliases):
        k = normalise(key)
        if k and f" {k} " in out:
            return True
    return False


def starts_with(output: str, target: str) -> bool:
    """The Reversal Curse paper's scorer: stripped, lower-cased completion starts with the target."""
    return output.strip().lower().startswith(target.strip().lower())


# The rule-based judge of unknown questions: an answer "declines" when it says it does not know or has no
# information; anything else answering a question the data never answers is an invention.
_DECLINE = re.compile(
    r"\b(i (?:do not|don't|dont) (?:know|have)|i(?:'m| am) (?:not sure|unsure|not aware|unable|sorry)|"
    r"(?:no|any) (?:information|record|records|details|data)\b|nothing i (?:was taught|know)|"
    r"(?:is|are|was|were)(?: not|n't) (?:mentioned|stated|given|specified|known)|"
    r"(?:cannot|can't|could not|couldn't) (?:find|say|tell|answer|confirm)|i have no (?:idea|information))", re.I)


def declines(output: str) -> bool:
    """True when the answer declines (says it does not know, has no information, cannot say)."""
    return bool(_DECLINE.search(str(output).replace("’", "'")))
