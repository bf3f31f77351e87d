"""Callbacks shared by every training method."""

from __future__ import annotations

import math
import time

import torch
from transformers import TrainerCallback

from knowtune.io import append_jsonl


class FiniteGuard(TrainerCallback):
    """Stops training as soon as a trainable weight is NaN/inf, and cancels the save that would have written
    it, so no checkpoint ever holds non-finite weights. `diverged_at` tells the caller what happened."""

    def __init__(self):
        self.diverged_at: int | None = None

    def on_step_end(self, args, state, control, model=None, **kw):
        trained = [p.detach() for p in model.parameters() if p.requires_grad]
        # one norm per tensor (a NaN or inf anywhere makes it non-finite): 8x cheaper than isfinite per tensor
        if not trained or torch.isfinite(torch.stack(torch._foreach_norm(trained))).all():
            return control
        self.diverged_at = state.global_step
        control.should_save = False
        control.should_evaluate = False
        control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss) and self.diverged_at is None:
            self.diverged_at = state.global_step
            control.should_save = False
            control.should_training_stop = True
        return control


class TargetStop(TrainerCallback):
    """Stop once the monitored metric reaches a target (no point training on: it only risks forgetting)."""

    def __init__(self, metric: str, target: float, min_epochs: float = 0):
        self.metric, self.target, self.min_epochs = metric, target, min_epochs

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        value = (metrics or {}).get(self.metric)
        if value is not None and value >= self.target and (state.epoch or 0) >= self.min_epochs:
            control.should_training_stop = True
        return control


class MetricsLog(TrainerCallback):
    """Appends every log record (train loss, eval loss, dev accuracy, learning rate) to metrics.jsonl."""

    def __init__(self, path):
        self.path = path
        self.start = time.time()

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and state.is_world_process_zero:  # one record per step, however many processes train
            append_jsonl(self.path, {"step": state.global_step, "epoch": state.epoch,
                                     "seconds": round(time.time() - self.start, 2), **logs})
        return control
