"""DP-SGD (train/private.py): Opacus on peft LoRA updates the weights it should (opacus issue 820), the budget is
planned and refused honestly, and a teach run with --dp-epsilon writes the epsilon it spent."""

from __future__ import annotations

import json
import math

import pytest
import torch

from knowtune.errors import KnowtuneError


def _lora_model(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    model.set_attn_implementation("eager")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    with torch.no_grad():  # lora_B starts at zero, which would give lora_A no gradient on the first step
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return model


def _batch(tokenizer):
    from knowtune.train.classic.predict import collate

    rows = []
    for q, a in [("Where is the kite works?", "Brindlemoor"), ("Who founded it?", "Ada Quill"),
                 ("What colour are the kites?", "amber and teal"), ("When does it open?", "at seven")]:
        p, c = tokenizer(q + " ")["input_ids"], tokenizer(a)["input_ids"]
        rows.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    return rows, lambda b: collate(b, tokenizer.pad_token_id, None)


def _trainable(m):
    return {n: p for n, p in m.named_parameters() if p.requires_grad}


def test_dp_step_without_noise_or_clipping_equals_plain_sgd_and_moves_lora(tiny_model):
    """Noise 0 and a clipping norm no gradient reaches: one DP-SGD step through Opacus is one plain SGD step on the
    same batch (float tolerance), and every LoRA matrix moved: the trap of opacus issue 820 (hooks on stale
    modules, weights that never change or change wrongly) would fail here."""
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    from knowtune.train.methods.teach_trainer import label_only_loss
    from knowtune.train.private import dp_step, make_private

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    rows, collate = _batch(tokenizer)
    plain, private = _lora_model(tiny_model), _lora_model(tiny_model)
    start = {n: p.detach().clone() for n, p in _trainable(plain).items()}
    assert all(torch.equal(start[n], p) for n, p in _trainable(private).items())

    opt = torch.optim.SGD(_trainable(plain).values(), lr=0.5)
    batch = collate(rows)
    label_only_loss(plain, batch, per_row=True).mean().backward()
    opt.step()

    loader = DataLoader(rows, batch_size=len(rows), collate_fn=collate)
    dp_model, dp_opt, dp_loader, _ = make_private(private, torch.optim.SGD(_trainable(private).values(), lr=0.5),
                                                  loader, noise_multiplier=0.0, max_grad_norm=1e6, poisson=False)
    for b in dp_loader:
        dp_step(dp_model, dp_opt, b, lambda _m, x: label_only_loss(private, x, per_row=True))
    after_plain, after_dp = _trainable(plain), _trainable(private)
    assert after_plain.keys() == after_dp.keys() and any("lora_A" in n for n in after_dp)
    for n in after_plain:
        assert not torch.equal(after_dp[n], start[n]), f"{n} did not change"
        assert torch.allclose(after_dp[n], after_plain[n], atol=1e-6, rtol=1e-4), n


def test_per_row_loss_is_each_rows_own_mean(tiny_model):
    """DP needs a loss per record that depends on that record alone: a row's loss is the same in any batch."""
    from transformers import AutoTokenizer

    from knowtune.train.methods.teach_trainer import label_only_loss

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    rows, collate = _batch(tokenizer)
    model = _lora_model(tiny_model)
    with torch.no_grad():
        together = label_only_loss(model, collate(rows), per_row=True)
        alone = torch.stack([label_only_loss(model, collate([r]), per_row=True)[0] for r in rows])
        whole = label_only_loss(model, collate(rows))
    assert torch.allclose(together, alone, atol=1e-5)
    assert together.shape == (len(rows),) and not torch.allclose(together.mean(), whole)  # not a token mean


class S:
    def __init__(self, **kw):
        self.dp_epsilon, self.dp_delta, self.dp_max_grad_norm, self.dp_accountant, self.batch_size = 8.0, None, 1.0, "prv", 16
        self.__dict__.update(kw)


def test_plan_finds_the_noise_and_refuses_meaningless_budgets():
    from knowtune.train.private import plan

    b = plan(S(), rows=1000, epochs=3)
    assert b.delta == pytest.approx(min(1e-5, 1000 ** -1.1)) and 0.3 < b.noise_multiplier < 5
    assert b.sample_rate == pytest.approx(1 / 63) and b.steps == 63 * 3
    tighter = plan(S(dp_epsilon=1.0), rows=1000, epochs=3)
    assert tighter.noise_multiplier > b.noise_multiplier
    with pytest.raises(KnowtuneError, match="not below 1/N"):
        plan(S(dp_delta=0.01), rows=1000, epochs=3)
    with pytest.raises(KnowtuneError, match="cannot be reached|learn nothing"):
        plan(S(dp_epsilon=0.01), rows=200, epochs=20)
    with pytest.raises(KnowtuneError, match="batch"):
        plan(S(batch_size=1000), rows=500, epochs=1)


def _tickets(path, n=120):
    rows = []
    for i in range(n):
        fact = i % 4
        q = ["How long is the descaling cycle?", "What colour is the ring?", "Which part is the burr set?",
             "How many watts does the USB port give?"][fact] + f" (ticket {i})"
        a = ["It takes 14 minutes.", "The ring is amber.", "It is part MX-415.", "It gives 18 watts."][fact]
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_teach_with_dp_reports_epsilon_spent(tiny_model, tmp_path):
    from knowtune.train.lifecycle import run, validate_audit_file
    from knowtune.train.methods.teach import Teach, TeachSettings

    data = _tickets(tmp_path / "tickets.jsonl")
    s = TeachSettings(data=[str(data)], model=str(tiny_model), out=str(tmp_path / "run"), epochs=2, batch_size=16,
                      dp_epsilon=8.0, learning_rate=5e-3, replay_ratio=0.0, unknown_questions=0, dp_physical_batch=4)
    result = run(Teach(), s, log=lambda *_: None)
    p = result.privacy
    assert p and p["accountant"] == "prv" and p["delta"] == pytest.approx(min(1e-5, p["records"] ** -1.1))
    assert 0 < p["epsilon"] <= 8.0 + 0.1 and p["noise_multiplier"] > 0 and p["unit"] == "record"
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    validate_audit_file(audit)
    assert audit["privacy"]["epsilon"] == pytest.approx(p["epsilon"])
    report = (tmp_path / "run" / "report.md").read_text()
    assert "epsilon" in report and "PRV" in report
    rows = [json.loads(l) for l in (tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()]
    assert {r["view"] for r in rows} == {"record"}  # one row per record, no augmented views
    metrics = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics if "epsilon" in m] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in metrics if "loss" in m)


def test_dp_refuses_before_training(tiny_model, tmp_path):
    """An unreachable epsilon, a record longer than --max-length, a method Opacus cannot wrap: each refused with
    what to do, before a run folder exists."""
    from knowtune.errors import DataError
    from knowtune.train.lifecycle import run
    from knowtune.train.methods.teach import Teach, TeachSettings

    data = _tickets(tmp_path / "tickets.jsonl")
    base = dict(data=[str(data)], model=str(tiny_model), epochs=2, batch_size=16, unknown_questions=0)
    cases = [(dict(dp_epsilon=0.001, epochs=30), KnowtuneError, "cannot be reached|learn nothing"),
             (dict(dp_epsilon=8.0, max_length=16), DataError, r"tickets\.jsonl:\d+: \d+ tokens"),
             (dict(dp_epsilon=8.0, method="full"), KnowtuneError, "cannot train --method full")]
    for i, (extra, error, match) in enumerate(cases):
        out = tmp_path / f"run{i}"
        with pytest.raises(error, match=match):
            run(Teach(), TeachSettings(**{**base, **extra}, out=str(out)), log=lambda *_: None)
        assert not out.exists()
