"""ULMFiT's three schedules (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
Classification", section 3.2-3.3) as plain functions of the step, the epoch and the layer group, and what
applies them to a transformers model (`layer_groups`, `discriminative_param_groups`, `GradualUnfreezing`):

- slanted triangular learning rates: a short linear warm-up to the peak (`cut_frac` of the steps), then a long
  linear decay; the lowest rate is the peak divided by `ratio` (eq. 3);
- discriminative fine-tuning: each layer group one lower than another trains at that group's rate divided by
  `factor` (2.6 in the paper);
- gradual unfreezing: the first epoch trains only the top group (the head), each further epoch unfreezes one
  more group from the top.

Groups are ordered from the bottom (the embeddings) to the top (the head). No library ships these for a
transformers model (fastai has them for its own learners only), so they are written here.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

FACTOR = 2.6  # the paper's ratio between the rates of neighbouring layer groups


def slanted_triangular(step: int, total: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """The learning rate at `step` of `total` as a fraction of the peak rate (eq. 3 of the paper)."""
    if total <= 0:
        raise ValueError("total steps must be positive")
    cut = max(1, math.floor(total * cut_frac))
    if step < cut:
        p = step / cut
    else:
        p = max(0.0, 1 - (step - cut) / (cut * (1 / cut_frac - 1)))
    return (1 + p * (ratio - 1)) / ratio


def group_rates(peak: float, n_groups: int, factor: float = FACTOR) -> list[float]:
    """The peak learning rate of each layer group, bottom to top: the top group gets `peak`, each group below
    it the rate of the group above divided by `factor`."""
    return [peak / factor ** (n_groups - 1 - g) for g in range(n_groups)]


def trainable_groups(epoch: int, n_groups: int) -> list[bool]:
    """Which layer groups train in `epoch` (0-based), bottom to top: the top `epoch + 1` groups."""
    return [g >= n_groups - 1 - epoch for g in range(n_groups)]


def layer_groups(model, blocks_per_group: int = 1) -> list[list]:
    """The model's parameters in layer groups, bottom to top: the embeddings; the transformer blocks,
    `blocks_per_group` to a group; then everything above them (the final norm and the head: the output
    projection or a classifier). A parameter shared by two places (tied embeddings and output projection) is in
    the lowest group only. Works on a plain transformers model or a peft-wrapped one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    blocks = list(decoder.layers)
    seen: set[int] = set()

    def own(modules) -> list:
        params = []
        for m in modules:
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    groups = [own([decoder.embed_tokens])]
    groups += [own(blocks[i: i + blocks_per_group]) for i in range(0, len(blocks), blocks_per_group)]
    groups.append(own([base]))  # what is left: the final norm, the head
    return [g for g in groups if g]


def discriminative_param_groups(groups: list[list], peak: float, factor: float = FACTOR, weight_decay: float = 0.0) -> list[dict]:
    """Optimiser parameter groups, one per layer group, each at its discriminative peak rate (`group_rates`)."""
    return [{"params": g, "lr": lr, "weight_decay": weight_decay}
            for g, lr in zip(groups, group_rates(peak, len(groups), factor))]


class GradualUnfreezing(TrainerCallback):
    """At the start of each epoch, only the layer groups `trainable_groups` names train: the top one in the
    first epoch, one more each epoch after. Frozen parameters get no gradient, so the optimiser leaves them (and
    their weight decay) alone; a resumed run re-applies its epoch's state."""

    def __init__(self, groups: list[list]):
        self.groups = groups

    def apply(self, epoch: int) -> list[bool]:
        on = trainable_groups(epoch, len(self.groups))
        for params, trainable in zip(self.groups, on):
            for p in params:
                p.requires_grad_(trainable)
        return on

    def on_epoch_begin(self, args, state, control, **kw):
        self.apply(int(state.epoch or 0))
