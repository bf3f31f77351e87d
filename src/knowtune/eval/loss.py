"""The causal-LM loss on answer tokens only, shared by training (teach, task, DP-SGD) and the audits that read a
model's loss on a text (the memorisation audit)."""

from __future__ import annotations

import torch


def label_only_loss(model, inputs: dict, num_items_in_batch=None, per_row: bool = False, summed: bool = False) -> torch.Tensor:
    """Causal-LM loss that runs the vocabulary projection only where a label follows.

    Short Q&A rows are mostly prompt (system prompt, template, question): projecting every position onto a
    49k vocabulary and taking its log-softmax is the costliest wasted work of a plain SFT step.
    `per_row`: each row's mean over its own answer tokens, (B,), as DP-SGD needs (a row's loss then depends
    on that row alone); with `summed`, each row's sum (its log-perplexity, as the canaries' exposure reads it).
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
        return sums if summed else sums / keep.sum(1).clamp(min=1)
    n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum") / torch.as_tensor(n).clamp(min=1)
