"""Rough numbers for `knowtune check`: tokens per example and the training time they imply."""

from __future__ import annotations

from knowtune.train.methods.teach import TeachSettings

# Measured with benchmarks/teach_speed.py: SmolLM2-135M + LoRA, 2 CPU cores (tokens per second, training).
CPU_TOKENS_PER_SECOND = 450
VIEWS_PER_EXAMPLE = 2.2  # answer + template views, plus a statement per fact, on average


def token_counter(model: str):
    """(count(example) -> int, description). Uses the model's tokenizer and chat template when the model is
    already on disk, else ~4 characters per token."""
    from knowtune.models.fetch import cached_dir, is_cached
    from knowtune.models.registry import REGISTRY

    folder = cached_dir(model) if model in REGISTRY else None
    if folder is not None and is_cached(model):
        from knowtune.eval.generate import render_prompt
        from knowtune.models.load import load_tokenizer

        tok = load_tokenizer(str(folder))

        def count(ex) -> int:
            text = render_prompt(tok, ex.style, ex.prompt) + ex.answer
            return len(tok(text, add_special_tokens=False)["input_ids"]) + 1

        return count, f"{model} tokenizer"

    def estimate(ex) -> int:
        prompt = ex.prompt if isinstance(ex.prompt, str) else " ".join(m["content"] for m in ex.prompt)
        return max(1, (len(prompt) + len(ex.answer)) // 4)

    return estimate, "estimated at 4 characters a token; pull the model for exact counts"


def training_estimate(reports, settings: TeachSettings | None = None) -> dict | None:
    s = settings or TeachSettings()
    total = sum(sum(r.token_lengths) for r in reports)
    if not total:
        return None
    per_epoch = int(total * VIEWS_PER_EXAMPLE * (1 + s.replay_ratio))
    return {"tokens": per_epoch, "epochs": s.epochs, "minutes": per_epoch * s.epochs / CPU_TOKENS_PER_SECOND / 60}
