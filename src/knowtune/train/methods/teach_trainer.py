"""Teach's trainer: trl's SFTTrainer whose loss projects onto the vocabulary only at answer tokens, and whose
evaluation also scores the dev probes by greedy generation (what early stopping and the best epoch follow)."""

from __future__ import annotations

from trl import SFTTrainer

from knowtune.eval.audit import accuracy, score_probes
from knowtune.eval.loss import label_only_loss


class ProbeSFTTrainer(SFTTrainer):
    """SFTTrainer whose evaluation also scores the dev probes by greedy generation, so early stopping and
    best-checkpoint selection follow what the audit measures (`eval_dev_accuracy`), not only loss."""

    def __init__(self, *args, dev_probes=None, generation=None, label_only_logits=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.dev_probes, self.generation = dev_probes or [], generation
        self.label_only_logits = label_only_logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not (self.label_only_logits and model.training and not return_outputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # The loss calls the decoder directly, bypassing the autocast that accelerate wraps around forward().
        with self.accelerator.autocast():
            return label_only_loss(self.accelerator.unwrap_model(model), inputs, num_items_in_batch)

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.dev_probes:
            with self.accelerator.autocast():  # the frozen base may be stored in bf16
                rows = score_probes(self.model, self.processing_class, self.dev_probes, self.generation)
            output.metrics[f"{metric_key_prefix}_dev_accuracy"] = accuracy(rows)
        return output
