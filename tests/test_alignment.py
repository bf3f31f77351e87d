"""What reward, PPO, DPO and KTO measure beyond the lifecycle's proof (tests/test_methods.py): the reward model
ranks held-out pairs and reloads to the same scores, PPO scores replayed answers as if alone, resumes exactly
when its step count grows, and stops when its KL runs away; DPO / KTO write answers before and after."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from knowtune.data.preference import Pair
from knowtune.train import lifecycle
from knowtune.train.methods.dpo import DPO, KTO
from knowtune.train.methods.ppo import PPO, PPOSettings
from knowtune.train.methods.reward import Reward, RewardModel, RewardSettings

PAIRS = [Pair(f"What colour is kite {i}?", f"Kite {i} is blue.", f"Kite {i} is red.") for i in range(30)]
quiet = dict(log=lambda *a: None)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("align")


@pytest.fixture(scope="module")
def probes(work):
    path = work / "probes.jsonl"
    path.write_text("".join(json.dumps({"question": p.prompt, "answer": "blue"}) + "\n" for p in PAIRS[:4]))
    return str(path)


@pytest.fixture(scope="module")
def prompts(work):
    path = work / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p.prompt}) + "\n" for p in PAIRS))
    return str(path)


@pytest.fixture(scope="module")
def reward_run(work, tiny_model):
    s = RewardSettings(data=["pairs.jsonl"], model=str(tiny_model), out=str(work / "reward"), epochs=2,
                       learning_rate=3e-3, batch_size=4)
    return s.run_dir(), lifecycle.run(Reward(PAIRS), s, **quiet)


def test_reward_model_ranks_held_out_pairs(reward_run):
    run_dir, result = reward_run
    held = [r for r in result.after["probes"] if r["source"] != "answer key"]
    assert len(held) == 6 and len(result.facts) >= 1
    losses = [loss for _, loss in result.training.train_loss]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert all(r["correct"] for r in held) and result.summary.probe_label == "Held-out pairs ranked right"
    saved = json.loads((run_dir / "reward.json").read_text())
    assert saved["heldout_after"]["accuracy"] == 1.0 and saved["heldout_after"]["margin"] > 0
    rm = RewardModel.load(run_dir, **quiet)  # loads back to the same scores
    [blue, red] = rm.score(["What colour is kite 99?"] * 2, ["Kite 99 is blue.", "Kite 99 is red."])
    assert blue > red


def ppo_settings(tiny_model, reward_run, prompts, out, **kw):
    base = dict(model=str(tiny_model), reward=str(reward_run[0]), prompts=[prompts], out=str(out), steps=3,
                batch_size=4, minibatch_size=2, max_new_tokens=6, learning_rate=5e-3, eval_fraction=0.2, audit=False,
                checkpoint_every=2)
    return PPOSettings(**{**base, **kw})


def test_ppo_runs_logs_and_saves(tiny_model, reward_run, prompts, probes, work):
    from knowtune.io import read_jsonl
    from knowtune.models.load import load_for_inference

    start = work / "taught"  # a start model that is a taught run brings its replay answers (the tiny one writes none)
    shutil.copytree(tiny_model, start)
    (start / "data").mkdir()
    (start / "data" / "replay.jsonl").write_text("".join(json.dumps({"prompt": f"Name a colour, please ({i}).", "answer": "Blue."})
                                                         + "\n" for i in range(6)))
    s = ppo_settings(start, reward_run, prompts, work / "ppo", probes=probes, audit=True, replay_coef=1.0)
    r = lifecycle.run(PPO(), s, **quiet)
    steps = read_jsonl(s.run_dir() / "metrics.jsonl")
    assert [row["step"] for row in steps] == [1, 2, 3]
    for row in steps:
        for key in ("reward", "kl", "beta", "entropy", "clip_fraction", "value_loss", "policy_loss", "approx_kl", "replay_loss", "loss"):
            assert math.isfinite(row[key]), key
    kl = next(m for m in r.measures if m.name.startswith("KL"))
    assert kl.before == pytest.approx(0.0, abs=1e-3) and all(math.isfinite(m.after) for m in r.measures)
    assert r.summary.n_retention == 120 and r.summary.n_probes == 4
    for name in ("ppo.json", "report.md", "report.html", "plots/ppo.png", "answers.json", "audit.json"):
        assert (s.run_dir() / name).exists(), name
    assert "plots/ppo.png" in (s.run_dir() / "report.html").read_text()
    model, _ = load_for_inference(str(s.run_dir()), **quiet)  # a PPO run loads like any run
    assert model is not None


def test_replay_answers_are_scored_as_if_alone(tiny_model):
    """The replay loss scores given answers to left-padded prompts of different lengths: each answer's
    log-probabilities must equal those of its prompt + answer run through the model alone, unpadded."""
    from peft import LoraConfig, get_peft_model

    from knowtune.models.load import load_for_inference
    from knowtune.train.methods.ppo_policy import chat_prompt_ids, forward, teacher_forced

    model, tok = load_for_inference(str(tiny_model), **quiet)
    policy = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    prompts = ["What colour is kite 1?", "Name the kite that flew highest over the northern hills last spring."]
    answers = ["Kite 1 is blue and it flies well in strong wind.", "Blue."]
    r = teacher_forced(tok, prompts, answers)
    with torch.no_grad():
        logprobs, _, _ = forward(policy, None, r, with_values=False)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        prompt, answer = chat_prompt_ids(tok, p), tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert r.mask[i].sum() == len(answer) and tok.decode(r.response[i][r.mask[i].bool()], skip_special_tokens=True) == a
        with torch.no_grad():
            logits = model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:-1].float()
        alone = torch.log_softmax(logits, -1).gather(1, torch.tensor(answer)[:, None]).squeeze(1)
        assert torch.allclose(logprobs[i, :len(answer)], alone, atol=1e-4)


def test_ppo_resumes_with_more_steps_exactly(tiny_model, reward_run, prompts, work):
    """A finished run continued with a larger step count ends where one run of that many steps ends."""
    whole = ppo_settings(tiny_model, reward_run, prompts, work / "whole", steps=4, bf16="false", lr_scheduler="constant")
    lifecycle.run(PPO(), whole, **quiet)
    part = ppo_settings(tiny_model, reward_run, prompts, work / "part", steps=2, bf16="false", lr_scheduler="constant")
    lifecycle.run(PPO(), part, **quiet)  # stops after step 2 (its checkpoint)
    cont = ppo_settings(tiny_model, reward_run, prompts, work / "part", steps=4, bf16="false", lr_scheduler="constant")
    r = lifecycle.run(PPO(), cont, resume=True, **quiet)
    assert r.training.steps == 4
    a = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cont.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ppo_stops_when_the_kl_runs_away(tiny_model, reward_run, prompts, work):
    from knowtune.io import read_jsonl

    s = ppo_settings(tiny_model, reward_run, prompts, work / "runaway", steps=12, kl_stop=1e-4, learning_rate=5e-2)
    r = lifecycle.run(PPO(), s, **quiet)
    note = r.training.note
    assert note, "a KL bound of 1e-4 nats must be passed within 12 steps at this learning rate"
    steps = read_jsonl(s.run_dir() / "metrics.jsonl")
    stop = len(steps) + 1  # the step whose rollout was too far from the reference: not trained on
    assert f"ran away at step {stop}" in note and f"kept the policy of step {stop - 2}" in note
    assert all(row["kl"] <= 1e-4 for row in steps)
    assert (s.run_dir() / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("method", [DPO, KTO], ids=["dpo", "kto"])
def test_dpo_and_kto_compare_answers(tiny_model, reward_run, probes, work, method):
    s = method.Settings(data=["pairs.jsonl"], model=str(tiny_model), probes=probes, reward=str(reward_run[0]),
                        out=str(work / method.name), epochs=1, batch_size=4, learning_rate=5e-3, max_new_tokens=8)
    r = lifecycle.run(method(PAIRS), s, **quiet)
    assert r.method == method.name and s.kto == (method is KTO)
    names = [m.name for m in r.measures]
    assert any("reward" in n for n in names) and (method is KTO or any("prefers" in n for n in names))
    assert all(m.after is not None and math.isfinite(m.after) for m in r.measures)
    answers = json.loads((s.run_dir() / "answers.json").read_text())
    assert len(answers) == 6 and {"prompt", "before", "after"} <= set(answers[0])
