"""Turn training views into token ids with a completion mask (loss on the answer only).

Prompt and completion are tokenised separately, exactly as at generation time, where the prompt is encoded
alone and the answer follows it token by token.
"""

from __future__ import annotations

from knowtune.data.augment import TrainItem


def render(tokenizer, item: TrainItem) -> tuple[str, str]:
    """(prompt text, completion text) of one item, the completion ending with the end-of-turn token."""
    eos = tokenizer.eos_token or ""
    if item.kind == "chat":
        prompt = tokenizer.apply_chat_template(item.prompt, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(item.prompt + [{"role": "assistant", "content": item.completion}], tokenize=False)
        if not full.startswith(prompt):  # a template that rewrites earlier turns: fall back to answer + eos
            return prompt, item.completion + eos
        completion = full[len(prompt):]
        return prompt, completion if eos in completion else completion + eos
    return (item.prompt if item.kind == "plain" else ""), item.completion + eos


def encode(tokenizer, item: TrainItem, max_length: int) -> dict:
    prompt, completion = render(tokenizer, item)
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = (p + c)[:max_length]
    mask = ([0] * len(p) + [1] * len(c))[:max_length]
    return {"input_ids": ids, "completion_mask": mask}


def encode_all(tokenizer, items: list[TrainItem], max_length: int):
    from datasets import Dataset

    rows = [encode(tokenizer, it, max_length) for it in items]
    rows = [r for r in rows if any(r["completion_mask"])]  # nothing to learn when truncation ate the answer
    return Dataset.from_list(rows)


def encode_labelled(tokenizer, item: TrainItem, max_length: int) -> dict:
    """`encode`'s row as a Trainer-style row: labels are the answer's tokens, -100 on the prompt."""
    r = encode(tokenizer, item, max_length)
    return {"input_ids": r["input_ids"],
            "labels": [t if m else -100 for t, m in zip(r["input_ids"], r["completion_mask"])]}
