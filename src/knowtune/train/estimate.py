"""Rough numbers for `knowtune check`: tokens per example and the training time they imply."""

from __future__ import annotations

from knowtune.train.methods.teach import TeachSettings

# Measured with benchmarks/teach_speed.py: SmolLM2-135M + LoRA, 2 CPU cores (tokens per second, training).
CPU_TOKENS_PER_SECOND = 450
VIEWS_PER_EXAMPLE = 2.2  # answer + template views, plus a statement per fact, on average


def training_estimate(reports, settings: TeachSettings | None = None) -> dict | None:
    s = settings or TeachSettings()
    total = sum(sum(r.token_lengths) for r in reports)
    if not total:
        return None
    per_epoch = int(total * VIEWS_PER_EXAMPLE * (1 + s.replay_ratio))
    return {"tokens": per_epoch, "epochs": s.epochs, "minutes": per_epoch * s.epochs / CPU_TOKENS_PER_SECOND / 60}
