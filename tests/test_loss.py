"""The label-only loss equals the model's own causal-LM loss (it only skips work)."""

from __future__ import annotations

import torch

from knowtune.train.sft import label_only_loss


def test_label_only_loss_matches_full_loss(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (3, 12))
    labels = ids.clone()
    labels[:, :7] = -100
    labels[2, 7:9] = -100
    full = model(input_ids=ids, labels=labels).loss
    assert torch.allclose(label_only_loss(model, {"input_ids": ids, "labels": labels}), full, atol=1e-5)
    # by hand for one row: mean negative log-likelihood of the answer tokens
    logp = torch.log_softmax(model(input_ids=ids[:1]).logits[0, :-1], -1)
    by_hand = -torch.stack([logp[t, ids[0, t + 1]] for t in range(6, 11)]).mean()
    one = label_only_loss(model, {"input_ids": ids[:1], "labels": labels[:1]})
    assert torch.allclose(one, by_hand, atol=1e-5)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert torch.allclose(label_only_loss(lora, {"input_ids": ids, "labels": labels}), lora(input_ids=ids, labels=labels).loss, atol=1e-5)
