"""Replay against forgetting: the start model's own answers to general prompts, mixed into training (teach)
or fitted alongside the objective (PPO-ptx), so what it says elsewhere stays what it said."""

from __future__ import annotations

from knowtune.data.augment import general_rows
from knowtune.eval.generate import GenerationSettings, generate_answers


def general_answers(model, tokenizer) -> list[dict]:
    """The model's greedy answers to the replay prompts; unfinished answers are cut to whole sentences."""
    from knowtune.progress import phase

    prompts = [r["prompt"] for r in general_rows("replay_prompts")]
    with phase("Writing replay answers with the start model", len(prompts)) as advance:
        answers = generate_answers(model, tokenizer, [("chat", [{"role": "user", "content": p}]) for p in prompts],
                                   GenerationSettings(max_new_tokens=80), progress=advance)
    rows = []
    for p, a in zip(prompts, answers):
        n = len(tokenizer(a, add_special_tokens=False)["input_ids"])
        if n >= 78 and "." in a:
            a = a[: a.rfind(".") + 1]
        if a.strip():
            rows.append({"prompt": p, "answer": a.strip()})
    return rows
