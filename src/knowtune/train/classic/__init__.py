"""The methods of `knowtune task train` (issue 19), one module each, listed in `RECIPES`. A recipe says only
what is its own: which task kinds it serves and which weights train (and, for ULMFiT, how their rates and
freezing change). Building the model, encoding the task, the optimiser, early stopping on the dev metric,
checkpoints and resume are shared (`classic.trainer`); the run folder, saving and the audit are the lifecycle's
(`train.methods.task`).

    feature  the frozen LLM as a feature extractor + a scikit-learn classifier (no gradient through the LLM)
    head     "fine-tuning I": a new dense head trained by gradient, the backbone frozen
    freeze   the top k transformer blocks and the head train, the rest frozen
    ulmfit   gradual unfreezing, discriminative learning rates, slanted triangular schedule
    lora     LoRA adapters (and the new head)
    dora     DoRA adapters (peft's use_dora: LoRA with a learned magnitude per output)
    full     "fine-tuning II": every weight
"""

from __future__ import annotations

from knowtune.train.classic.base import Recipe
from knowtune.train.classic.feature import Feature
from knowtune.train.classic.freeze import Freeze
from knowtune.train.classic.full import Full
from knowtune.train.classic.head import Head
from knowtune.train.classic.lora import Dora, Lora
from knowtune.train.classic.ulmfit import ULMFiT

RECIPES: dict[str, type[Recipe]] = {r.name: r for r in (Feature, Head, Freeze, ULMFiT, Lora, Dora, Full)}
