"""Reward model, PPO, DPO and KTO end to end on the tiny model: losses finite, weights changed, artifacts
written, the audit run; PPO resumes exactly and stops when its KL runs away."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from knowtune.data.preference import Pair

PAIRS = [Pair(f"What colour is kite {i}?", f"Kite {i} is blue.", f"Kite {i} is red.") for i in range(30)]


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
    from knowtune.train.reward import RewardSettings, run

    s = RewardSettings(data=["pairs.jsonl"], model=str(tiny_model), out=str(work / "reward"), epochs=2,
                       learning_rate=3e-3, batch_size=4)
    return s.run_dir(), run(s, PAIRS, log=lambda *a: None)


def test_reward_model_ranks_held_out_pairs(reward_run):
    from knowtune.train.reward import RewardModel

    run_dir, result = reward_run
    assert result["pairs"] == {"train": 24, "heldout": 6}
    assert all(math.isfinite(loss) for _, loss in result["training"]) and result["training"][-1][1] < result["training"][0][1]
    assert result["heldout_after"]["accuracy"] == 1.0 and result["heldout_after"]["margin"] > 0
    assert (run_dir / "reward" / "adapter_model.safetensors").exists() and (run_dir / "report.md").exists()
    rm = RewardModel.load(run_dir, log=lambda *a: None)  # loads back to the same scores
    [blue, red] = rm.score(["What colour is kite 99?"] * 2, ["Kite 99 is blue.", "Kite 99 is red."])
    assert blue > red


def ppo_settings(tiny_model, reward_run, prompts, out, **kw):
    from knowtune.train.ppo import PPOSettings

    base = dict(model=str(tiny_model), reward=str(reward_run[0]), prompts=[prompts], out=str(out), steps=3,
                batch_size=4, minibatch_size=2, max_new_tokens=6, learning_rate=5e-3, eval_fraction=0.2, audit=False,
                save_every=2)
    return PPOSettings(**{**base, **kw})


def test_ppo_runs_logs_and_saves(tiny_model, reward_run, prompts, probes, work):
    from knowtune.models.load import load_for_inference
    from knowtune.train import ppo

    start = work / "taught"  # a start model that is a taught run brings its replay answers (the tiny one writes none)
    shutil.copytree(tiny_model, start)
    (start / "data").mkdir()
    (start / "data" / "replay.jsonl").write_text("".join(json.dumps({"prompt": f"Name a colour, please ({i}).", "answer": "Blue."})
                                                         + "\n" for i in range(6)))
    s = ppo_settings(start, reward_run, prompts, work / "ppo", probes=probes, audit=True, replay_coef=1.0)
    r = ppo.run(s, log=lambda *a: None)
    assert [row["step"] for row in r["steps"]] == [1, 2, 3]
    for row in r["steps"]:
        for key in ("reward", "kl", "beta", "entropy", "clip_fraction", "value_loss", "policy_loss", "approx_kl", "replay_loss"):
            assert math.isfinite(row[key]), key
    assert r["reward_before"]["n"] == 6 and r["reward_before"]["kl_mean"] == pytest.approx(0.0, abs=1e-3)
    assert math.isfinite(r["reward_gain_in_std"]) and r["audit"]["n_retention"] == 120 and r["audit"]["n_probes"] == 4
    lora_b = [v for k, v in load_file(str(s.run_dir() / "adapter" / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in lora_b)  # the policy moved (LoRA B starts at zero)
    for name in ("ppo.json", "report.md", "plots/ppo.png", "answers.json", "audit.json"):
        assert (s.run_dir() / name).exists(), name
    model, _ = load_for_inference(str(s.run_dir()), log=lambda *a: None)  # a PPO run loads like any run
    assert model is not None


def test_replay_answers_are_scored_as_if_alone(tiny_model):
    """The replay loss scores given answers to left-padded prompts of different lengths: each answer's
    log-probabilities must equal those of its prompt + answer run through the model alone, unpadded."""
    from peft import LoraConfig, get_peft_model

    from knowtune.models.load import load_for_inference
    from knowtune.train.ppo import chat_prompt_ids, forward, teacher_forced

    model, tok = load_for_inference(str(tiny_model), log=lambda *a: None)
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


def test_ppo_resumes_from_its_checkpoint_exactly(tiny_model, reward_run, prompts, work):
    from knowtune.train import ppo

    whole = ppo_settings(tiny_model, reward_run, prompts, work / "whole", steps=4, bf16="false")
    ppo.run(whole, log=lambda *a: None)
    part = ppo_settings(tiny_model, reward_run, prompts, work / "part", steps=2, bf16="false")
    ppo.run(part, log=lambda *a: None)  # stops after step 2 (its checkpoint)
    cont = ppo_settings(tiny_model, reward_run, prompts, work / "part", steps=4, bf16="false")
    r = ppo.run(cont, resume=True, log=lambda *a: None)
    assert [row["step"] for row in r["steps"]] == [1, 2, 3, 4]
    a = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cont.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ppo_stops_when_the_kl_runs_away(tiny_model, reward_run, prompts, work):
    from knowtune.train import ppo

    s = ppo_settings(tiny_model, reward_run, prompts, work / "runaway", steps=12, kl_stop=1e-4, learning_rate=5e-2)
    r = ppo.run(s, log=lambda *a: None)
    assert r["stopped"], "a KL bound of 1e-4 nats must be passed within 12 steps at this learning rate"
    stop = len(r["steps"]) + 1  # the step whose rollout was too far from the reference: not trained on
    assert f"ran away at step {stop}" in r["stopped"] and f"kept the policy of step {stop - 2}" in r["stopped"]
    assert all(row["kl"] <= 1e-4 for row in r["steps"])
    assert (s.run_dir() / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("kto", [False, True], ids=["dpo", "kto"])
def test_dpo_and_kto(tiny_model, reward_run, probes, work, kto):
    from knowtune.train.dpo import DPOSettings, run

    s = DPOSettings(data=["pairs.jsonl"], model=str(tiny_model), kto=kto, probes=probes, reward=str(reward_run[0]),
                    out=str(work / ("kto" if kto else "dpo")), epochs=1, batch_size=4, learning_rate=5e-3, max_new_tokens=8)
    r = run(s, PAIRS, log=lambda *a: None)
    assert r["method"] == ("KTO" if kto else "DPO") and r["heldout_prompts"] == 6
    assert r["training"] and all(math.isfinite(loss) for _, loss in r["training"])
    if not kto:
        assert 0 <= r["heldout_preference_accuracy"] <= 1
    assert math.isfinite(r["reward_gain_in_std"]) and r["audit"]["n_retention"] == 120
    answers = json.loads((s.run_dir() / "answers.json").read_text())
    assert len(answers) == 6 and {"prompt", "before", "after"} <= set(answers[0])
    lora_b = [v for k, v in load_file(str(s.run_dir() / "adapter" / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in lora_b)
