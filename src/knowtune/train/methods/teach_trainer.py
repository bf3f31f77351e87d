"""Teach's trainer: trl's SFTTrainer whose loss projects onto the vocabulary only at answer tokens, and whose
evaluation also scores the dev probes by greedy generation (what early stopping and the best epoch follow)."""

from __future__ import annotations

import torch
from trl import SFTTrainer

from knowtune.eval.audit import accuracy, score_probes


def label_only_loss(model, inputs: dict, num_items_in_batch=None, per_row: bool = False) -> torch.Tensor:
    """Causal-LM loss that runs the vocabulary projection only where a label follows.

    Short Q&A rows are mostly prompt (system prompt, template, question): projecting every position onto a
    49k vocabulary and taking its log-softmax is the costliest wasted work of a plain SFT step.
    `per_row`: each row's mean over its own answer tokens, (B,), as DP-SGD needs (a row's loss then depends
    on that row alone).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live inside it
    hidden = base.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                position_ids=inputs.get("position_ids"), use_cache=False).last_hidden_state  # (B, T, d)
    targets = inputs["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at position t
    keep = targets != -100
    logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()  # (N, V), N = answer tokens
    if per_row:
        losses = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="none")
        sums = torch.zeros(keep.shape[0], dtype=losses.dtype, device=losses.device)
        sums = sums.index_add(0, keep.nonzero()[:, 0], losses)
        return sums / keep.sum(1).clamp(min=1)
    n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum") / torch.as_tensor(n).clamp(min=1)


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
