"""What a recipe of `knowtune task train` supplies (see `classic/__init__.py`)."""

from __future__ import annotations

from typing import ClassVar

from knowtune.train.optim import decay_groups


class Recipe:
    name: ClassVar[str]
    help: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = ("sequence", "token", "generate")  # the task kinds it can train
    gradient: ClassVar[bool] = True  # False: no Trainer (feature)
    frozen_base: ClassVar[bool] = False  # the LLM's linear weights never train (stored in bf16 where bf16 runs)

    def setup(self, model, s):
        """Mark what trains (requires_grad) and return (model, the optimiser's param groups): the model may come
        back wrapped (peft). Default: every parameter trains, biases / norms / embeddings without weight decay."""
        return model, decay_groups(model.named_parameters(), s.weight_decay)

    def start_model(self, s, examples: list, run) -> str:
        """The model the task model is built from: the settings' model (ULMFiT may first tune it on the
        training examples' own text)."""
        return s.model

    def callbacks(self, model) -> list:
        """Trainer callbacks of its own (ULMFiT's gradual unfreezing)."""
        return []

    def scheduler(self, optimizer, total_steps: int, s):
        """Its learning-rate schedule; None: the settings' `lr_scheduler` with warm-up."""
        return None


def head_modules(model) -> list:
    """The new head of a classifier (sequence: `score`; token: `score`); a causal LM has none."""
    head = getattr(model, "score", None)
    return [head] if head is not None else []


def freeze_all_but(model, keep: list, s) -> list[dict]:
    """Freeze every parameter except those of the modules in `keep`; their param groups."""
    for p in model.parameters():
        p.requires_grad_(False)
    named = []
    for m in keep:
        for n, p in m.named_parameters():
            p.requires_grad_(True)
            named.append((n, p))
    seen, unique = set(), []
    for n, p in named:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append((n, p))
    return decay_groups(unique, s.weight_decay)
