"""The speed levers change no number that matters: each training lever is checked against the plain path
(loss and gradients of the trained weights), and answering in bf16 against fp32 logits, on the tiny model."""

from __future__ import annotations

import torch

from knowtune.train.hf import cpu_training_attention, lean_lora
from knowtune.eval.loss import label_only_loss


def lora_model(tiny_model, attention: str = "sdpa"):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=attention)
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM",
                                             init_lora_weights=False))  # B != 0: every adapter gets a gradient
    return lora


def batch(vocab: int):
    """Two right-padded rows (the collator's layout), labels only on the answers."""
    torch.manual_seed(1)
    ids = torch.randint(3, vocab, (2, 14))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :6] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loss_and_grads(model, inputs, autocast: bool = False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = label_only_loss(model, inputs)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_same(a, b, atol):
    (la, ga), (lb, gb) = a, b
    assert torch.allclose(la, lb, atol=atol), (la, lb)
    assert ga.keys() == gb.keys() and ga
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=atol, rtol=1e-3), n


def test_eager_attention_trains_as_sdpa_does(tiny_model):
    sdpa = lora_model(tiny_model, "sdpa")
    inputs = batch(sdpa.config.vocab_size)
    reference = loss_and_grads(sdpa, inputs)
    eager = lora_model(tiny_model, "sdpa")
    cpu_training_attention(eager.get_base_model())
    assert eager.config._attn_implementation == "eager"
    assert_same(loss_and_grads(eager, inputs), reference, atol=1e-5)


def test_lean_lora_trains_as_peft_does(tiny_model, monkeypatch):
    """The lean LoRA forward gives peft's loss and adapter gradients, in fp32 and under bf16 autocast; with the
    adapter disabled it is the base model again."""
    from peft.tuners.lora.layer import Linear

    for autocast, atol in ((False, 1e-5), (True, 2e-2)):
        peft_path = lora_model(tiny_model)
        inputs = batch(peft_path.config.vocab_size)
        reference = loss_and_grads(peft_path, inputs, autocast)
        lean = lora_model(tiny_model)
        assert lean_lora(lean) == 7 * lean.config.num_hidden_layers  # q k v o gate up down
        with monkeypatch.context() as m:  # the plain case must not fall back to peft's forward
            m.setattr(Linear, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("peft's forward ran")))
            got = loss_and_grads(lean, inputs, autocast)
        assert_same(got, reference, atol=atol)
    with torch.no_grad(), lean.disable_adapter():
        off = lean(input_ids=inputs["input_ids"]).logits
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        assert torch.allclose(off, base(input_ids=inputs["input_ids"]).logits, atol=1e-6)


def test_teach_trainer_uses_the_levers_on_cpu(tmp_path, tiny_model):
    from knowtune.data.augment import TrainItem
    from knowtune.models import load_model_and_tokenizer
    from knowtune.train.methods.teach import TeachSettings, build_trainer

    model, tok = load_model_and_tokenizer(str(tiny_model))
    items = [TrainItem("plain", f"Question {i}:", f" answer {i}", "bench") for i in range(4)]
    for bf16 in ("true", "false"):
        s = TeachSettings(data=["x"], model=str(tiny_model), bf16=bf16, batch_size=2, epochs=1)
        trainer, _ = build_trainer(s, model, tok, items, [], tmp_path / bf16)
        assert trainer.model.config._attn_implementation == "eager"
        assert all(m.forward.__func__.__name__ == "_lean_lora_forward" for m in trainer.model.modules()
                   if type(m).__name__ == "Linear" and hasattr(m, "lora_A"))
        batch_ = next(iter(trainer.get_train_dataloader()))
        trainer.model.train()
        assert torch.isfinite(trainer.compute_loss(trainer.model, batch_))
        model, tok = load_model_and_tokenizer(str(tiny_model))


def test_answering_in_bf16_keeps_the_logits_and_the_embeddings(tiny_model):
    """for_answering: linear layers in bf16, the tied output projection as its own bf16 copy, embeddings and
    norms fp32; under answering_precision its logits stay within bf16 rounding of the fp32 model's."""
    from transformers import AutoModelForCausalLM

    from knowtune.eval.generate import generate_answers
    from knowtune.models import load_tokenizer
    from knowtune.models.precision import answering_precision, for_answering

    fp32 = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    assert for_answering(fp32, "false") is fp32 and not getattr(fp32, "answers_in_bf16", False)
    model = for_answering(AutoModelForCausalLM.from_pretrained(tiny_model).eval(), "true")
    assert model.answers_in_bf16
    assert model.model.layers[0].mlp.down_proj.weight.dtype == torch.bfloat16
    assert model.get_output_embeddings().weight.dtype == torch.bfloat16
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    ids = batch(model.config.vocab_size)["input_ids"]
    with torch.no_grad(), answering_precision(model):
        got = model(input_ids=ids).logits.float()
    with torch.no_grad():
        want = fp32(input_ids=ids).logits
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    tok = load_tokenizer(str(tiny_model))
    answers = generate_answers(model, tok, [("plain", "Question 1:"), ("plain", "Question 22:")])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
