"""The optimisers every method may use, built from the `OptimSettings` fields: SGD (with momentum and,
optionally, Nesterov's), Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay).

The Trainer-based methods (teach, reward, DPO, KTO) name theirs to transformers (`hf_optimizer`); the methods
that build their own (PPO, `task train`, whose ULMFiT needs every layer group in the optimiser from the start,
frozen or not) call `make_optimizer`."""

from __future__ import annotations

NO_DECAY = ("bias", "norm", "embed_tokens")  # parameter names weight decay leaves alone (the Trainer's rule, plus embeddings)


def make_optimizer(params, s):
    """A torch optimiser over `params` (tensors, or param-group dicts that may set their own lr / weight_decay)."""
    import torch

    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.learning_rate, momentum=s.momentum, nesterov=s.nesterov and s.momentum > 0,
                               weight_decay=s.weight_decay)
    cls = torch.optim.Adam if s.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=s.learning_rate, weight_decay=s.weight_decay)


def make_scheduler(optimizer, s, total_steps: int):
    """The settings' learning-rate schedule (`lr_scheduler`, warm-up over `warmup_ratio` of the steps) over
    `total_steps` optimiser steps, for the methods that step their own optimiser."""
    from transformers import get_scheduler

    return get_scheduler(s.lr_scheduler, optimizer, num_warmup_steps=int(s.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def decay_groups(named_params, weight_decay: float, **extra) -> list[dict]:
    """Two param groups: weights that decay, and biases / norms / embeddings that do not."""
    named = list(named_params)
    decay = [p for n, p in named if not any(k in n.lower() for k in NO_DECAY)]
    rest = [p for n, p in named if any(k in n.lower() for k in NO_DECAY)]
    return [g for g in ({"params": decay, "weight_decay": weight_decay, **extra},
                        {"params": rest, "weight_decay": 0.0, **extra}) if g["params"]]


def hf_optimizer(s) -> dict:
    """TrainingArguments' `optim` (and `optim_args`) for the settings. transformers has no plain Adam: with no
    weight decay Adam and AdamW are the same update, so AdamW's fused kernel runs it; with weight decay a
    Trainer-based method refuses Adam (use adamw, or `knowtune task train`, which builds its own)."""
    from knowtune.errors import KnowtuneError

    if s.optimizer == "sgd":
        return {"optim": "sgd", "optim_args": f"momentum={s.momentum},nesterov={s.nesterov and s.momentum > 0}"}
    if s.optimizer == "adam" and s.weight_decay > 0:
        raise KnowtuneError("This method trains with transformers' Trainer, which has Adam only as AdamW (decoupled "
                            "weight decay).", fix="use --optimizer adamw, or --weight-decay 0 with adam.")
    return {"optim": "adamw_torch_fused"}  # transformers' default, the arithmetic teach was tuned with
