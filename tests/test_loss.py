"""The label-only loss equals the model's own causal-LM loss (it only skips work)."""

from __future__ import annotations

import torch

from knowtune.eval.loss import label_only_loss


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


def test_trainer_loss_runs_in_mixed_precision(tmp_path, tiny_model):
    """The label-only loss calls the decoder directly; it must still run inside accelerate's bf16 autocast
    (bypassing it once made every step run in fp32, ~2x slower on CPUs with bf16 support)."""
    from knowtune.data.augment import TrainItem
    from knowtune.models import load_model_and_tokenizer
    from knowtune.train.methods.teach import TeachSettings, build_trainer

    model, tok = load_model_and_tokenizer(str(tiny_model))
    s = TeachSettings(data=["x"], model=str(tiny_model), bf16="true", batch_size=2, epochs=1)
    items = [TrainItem("plain", f"Question {i}:", f" answer {i}", "bench") for i in range(4)]
    trainer, _ = build_trainer(s, model, tok, items, [], tmp_path)
    assert not trainer.args.gradient_checkpointing  # knowtune's default; trl's is on
    seen = []
    layer = trainer.model.get_base_model().model.layers[0].mlp.down_proj
    layer.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    assert torch.isfinite(loss) and seen == [torch.bfloat16]


def test_overfitting_verdict():
    from knowtune.train.lifecycle import overfitting_verdict

    train = [(1, 2.0), (2, 1.0), (3, 0.5)]
    assert overfitting_verdict(train, [(1, 2.0), (2, 1.5), (3, 1.6)], [])[0] is False  # within 10% of best
    flag, note = overfitting_verdict(train, [(1, 2.0), (2, 1.5), (3, 2.0)], [(1, 0.2), (2, 0.6), (3, 0.4)])
    assert flag and "accuracy fell" in note
    flag, note = overfitting_verdict(train, [(1, 2.0), (2, 1.5), (3, 2.0)], [(1, 0.2), (2, 0.6), (3, 0.6)])
    assert flag and "did not fall" in note
    assert overfitting_verdict(train[:1], [(1, 2.0)], [])[0] is False
