"""The causal-LM loss on answer tokens only, shared by training (teach, task, DP-SGD, distill) and the audits that
read a model's loss on a text (the memorisation audit); the distillation loss on the same tokens."""

from __future__ import annotations

import torch


def answer_logits(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, targets, keep): the model's fp32 logits only at the positions where an answer token follows,
    (N, V); those tokens, (N,); and where they are, (B, T-1) booleans.

    Short Q&A rows are mostly prompt (system prompt, template, question): projecting every position onto a
    49k vocabulary and taking its log-softmax is the costliest wasted work of a plain SFT step."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live inside it
    hidden = base.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                position_ids=inputs.get("position_ids"), use_cache=False).last_hidden_state  # (B, T, d)
    targets = inputs["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at position t
    keep = targets != -100
    return base.get_output_embeddings()(hidden[:, :-1][keep]).float(), targets[keep], keep


def label_only_loss(model, inputs: dict, num_items_in_batch=None, per_row: bool = False, summed: bool = False) -> torch.Tensor:
    """Causal-LM loss that runs the vocabulary projection only where a label follows (`answer_logits`).
    `per_row`: each row's mean over its own answer tokens, (B,), as DP-SGD needs (a row's loss then depends
    on that row alone); with `summed`, each row's sum (its log-perplexity, as the canaries' exposure reads it).
    """
    logits, targets, keep = answer_logits(model, inputs)
    if per_row:
        losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        sums = torch.zeros(keep.shape[0], dtype=losses.dtype, device=losses.device)
        sums = sums.index_add(0, keep.nonzero()[:, 0], losses)
        return sums if summed else sums / keep.sum(1).clamp(min=1)
    n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum") / torch.as_tensor(n).clamp(min=1)


def distillation_loss(student, teacher, inputs: dict, temperature: float, weight: float,
                      num_items_in_batch=None) -> torch.Tensor:
    """Knowledge distillation on the answer tokens (Hinton et al. 2015): `weight` x T^2 x KL(teacher || student)
    between the two token distributions softened by temperature T, plus (1 - weight) x the usual loss on the
    answer tokens. Teacher and student must share the vocabulary. `weight` 0: the usual loss alone (the teacher
    is not run)."""
    logits, targets, keep = answer_logits(student, inputs)
    n = torch.as_tensor(num_items_in_batch if num_items_in_batch is not None else keep.sum()).clamp(min=1)
    hard = torch.nn.functional.cross_entropy(logits, targets, reduction="sum") / n
    if weight == 0:
        return hard
    with torch.no_grad():
        teacher_logits = answer_logits(teacher, inputs)[0]
    log_p = torch.nn.functional.log_softmax(logits / temperature, dim=-1)
    log_q = torch.nn.functional.log_softmax(teacher_logits / temperature, dim=-1)
    kl = torch.nn.functional.kl_div(log_p, log_q, log_target=True, reduction="sum") / n
    return weight * temperature ** 2 * kl + (1 - weight) * hard
