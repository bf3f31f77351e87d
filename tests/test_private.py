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

    from knowtune.eval.loss import label_only_loss
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

    from knowtune.eval.loss import label_only_loss

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
                      dp_epsilon=8.0, learning_rate=5e-3, replay_ratio=0.0, unknown_questions=0, micro_batch=4)
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


def test_exposure_and_auc_by_hand():
    from knowtune.eval.memorisation import exposure, make_canaries, membership_auc

    cands = [float(x) for x in range(10, 1033)]  # 1,023 candidates
    assert exposure(1.0, cands)["exposure"] == pytest.approx(10.0)  # ranked first of 1,024: 10 bits
    assert exposure(522.0, cands)["rank"] == 1 + 512 - 1 + 1 and exposure(2000.0, cands)["exposure"] == pytest.approx(0.0)
    import random

    rng = random.Random(0)
    normal = [rng.gauss(50, 5) for _ in range(1023)]
    far = exposure(20.0, normal)  # six standard deviations below every candidate
    assert far["exposure"] == pytest.approx(10.0) and far["exposure_fitted"] > 15
    assert exposure(50.0, normal)["exposure_fitted"] == pytest.approx(1.0, abs=0.3)  # the median: one bit
    assert membership_auc([1.0, 2.0], [3.0, 4.0]) == 1.0 and membership_auc([1.0, 3.0], [2.0, 4.0]) == 0.75
    canaries = make_canaries(0, [1, 5], 3)
    assert [c.repeats for c in canaries] == [0] * 3 + [1] * 3 + [5] * 3
    assert len({c.account for c in canaries}) == 9 and all(len(c.secret) == 6 for c in canaries)
    assert make_canaries(0, [1, 5], 3) == canaries and make_canaries(1, [1, 5], 3) != canaries


def test_canaries_are_inserted_and_audited(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from knowtune.cli import app
    from knowtune.train.lifecycle import run, validate_audit_file
    from knowtune.train.methods.teach import Teach, TeachSettings

    data = _tickets(tmp_path / "tickets.jsonl", 60)
    unseen = _tickets(tmp_path / "unseen.jsonl", 40)
    s = TeachSettings(data=[str(data)], model=str(tiny_model), out=str(tmp_path / "run"), epochs=1, canaries=2,
                      canary_repeats=[3], unknown_questions=0, replay_ratio=0.0, views=["answer"])
    run(Teach(), s, log=lambda *_: None)
    rows = [json.loads(l) for l in (tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()]
    canary_rows = [r for r in rows if r["view"] == "canary"]
    assert len(canary_rows) == 2 * 3  # two canaries, three copies each; the references never inserted
    got = CliRunner().invoke(app, ["audit-privacy", str(tmp_path / "run"), "--non-members", str(unseen),
                                   "--candidates", "255", "--records", "20", "--json"])
    assert got.exit_code == 0, got.output
    m = json.loads(got.stdout)[str(tmp_path / "run")]["memorisation"]
    assert [g["repeats"] for g in m["groups"]] == [0, 3] and m["max_measurable_bits"] == pytest.approx(8.0)
    assert all(0 <= c["exposure"] <= 8.0 for c in m["canaries"]) and 0 <= m["membership_auc"] <= 1
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    validate_audit_file(audit)
    assert audit["memorisation"]["groups"] == m["groups"]
    assert "## Memorisation" in (tmp_path / "run" / "report.md").read_text()


def test_cached_canary_scoring_ranks_as_whole_sequences_do(tiny_model):
    """Exposure scores each candidate from the shared prompt's cached keys and values: the ranks must be those of
    scoring every whole sequence."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from knowtune.eval.memorisation import canary_exposures, make_canaries

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    canaries = make_canaries(0, [5], 2)
    fast = canary_exposures(model, tok, canaries, candidates=127, seed=3)
    slow = canary_exposures(model, tok, canaries, candidates=127, seed=3, cached=False)
    assert [e["rank"] for e in fast] == [e["rank"] for e in slow]
    assert [round(e.get("exposure_sampled", e["exposure"]), 6) for e in fast] == [round(e["exposure"], 6) for e in slow]


def test_exact_rank_counts_every_likelier_secret(tiny_model, monkeypatch):
    """The branch-and-bound walk over the digits must give the rank that scoring every secret of the format gives
    (3-digit secrets here, so all 1,000 can be scored), and give up past its node budget."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from knowtune.eval import memorisation as mem

    monkeypatch.setattr(mem, "SECRET_DIGITS", 3)
    monkeypatch.setattr(mem, "SPACE", 1000)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    canaries = mem.make_canaries(0, [5], 3)
    every = mem.canary_exposures(model, tok, canaries, candidates=999, exact_below_rank=1000)  # the sample is all
    assert [e["exact_rank"] for e in every] == [e["rank"] for e in every]
    assert all(e["exposure"] == pytest.approx(math.log2(1000 / e["rank"])) for e in every)
    assert len({e["rank"] for e in every}) > 1  # not all at one end of the ranking
    capped = mem.canary_exposures(model, tok, canaries, candidates=999, exact_below_rank=1000, max_nodes=5)
    assert all("exact_rank" not in e for e in capped if e["rank"] > 5)


def test_micro_batch_accumulates_gradients_to_the_batch(tmp_path):
    """--micro-batch: rows per pass; --batch-size stays the rows per optimiser step (gradient accumulation)."""
    from transformers import TrainingArguments

    from knowtune.train.hf import training_args
    from knowtune.train.methods.teach import TeachSettings

    args = training_args(TrainingArguments, TeachSettings(data=["x"], batch_size=64, micro_batch=8), tmp_path, 1000)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 8)
    args = training_args(TrainingArguments, TeachSettings(data=["x"], batch_size=8), tmp_path, 1000)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 1)


def test_killed_dp_run_resumes_to_the_same_weights_and_budget(tiny_model, tmp_path, monkeypatch):
    """A DP-SGD run killed after its first epoch's checkpoint resumes from it (weights, optimiser, the accountant's
    history, the secret noise seed) and ends with the weights and epsilon of an uninterrupted run. The noise seed
    is drawn from the OS for each run; the test fixes it (KNOWTUNE_DP_TEST_SEED) so that two runs can be compared.
    A finished run keeps no checkpoint (they hold the seed)."""
    from conftest import assert_kill_and_resume_match

    monkeypatch.setenv("KNOWTUNE_DP_TEST_SEED", "12345")
    data = _tickets(tmp_path / "tickets.jsonl", 200)
    args = ["teach", str(data), "--model", str(tiny_model), "--epochs", "4", "--batch-size", "16", "--dp-epsilon", "8",
            "--micro-batch", "4", "--replay-ratio", "0", "--unknown-questions", "0", "--bf16", "false", "--no-audit"]
    assert_kill_and_resume_match(args, tmp_path / "straight", tmp_path / "killed", "adapter/adapter_model.safetensors",
                                 marker="*/state.json")
    a, b = (json.loads((tmp_path / r / "audit.json").read_text())["privacy"] for r in ("straight", "killed"))
    assert a["epsilon"] == pytest.approx(b["epsilon"]) and a["steps"] == b["steps"]
    assert not (tmp_path / "killed" / "checkpoints").exists() and "12345" not in (tmp_path / "killed" / "config.yaml").read_text()


def test_an_empty_poisson_sample_still_takes_a_noisy_accounted_step(tiny_model):
    """An empty logical batch (Poisson sampling can draw none) is a step like any other: noise is added to the
    weights and the accountant counts it (skipping it would reveal that the sample was empty)."""
    from torch.utils.data import DataLoader

    from knowtune.train.private import dp_step, make_private

    model = _lora_model(tiny_model)
    params = list(_trainable(model).values())
    before = [p.detach().clone() for p in params]
    loader = DataLoader([(torch.tensor(i),) for i in range(4)], batch_size=2)
    _, dp_opt, _, engine = make_private(model, torch.optim.SGD(params, lr=0.1), loader, noise_multiplier=1.0,
                                        max_grad_norm=1.0)
    assert dp_step(model, dp_opt, [], lambda *a: None, params) is None
    assert len(engine.accountant.history) == 1 and engine.accountant.history[0][2] == 1
    assert all(not torch.equal(p, b) for p, b in zip(params, before))


def test_dp_refuses_a_trainable_output_layer(tiny_model):
    """The answer-only loss projects single tokens through lm_head: Opacus would clip per token, not per record."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from knowtune.train.private import check_wrappable

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "lm_head"]))
    model.train()
    with pytest.raises(KnowtuneError, match="clip per token"):
        check_wrappable(model)
