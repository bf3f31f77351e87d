"""ULMFiT's three schedules (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
Classification", section 3.2-3.3), as plain functions of the step, the epoch and the layer group:

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
