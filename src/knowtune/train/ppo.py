"""`knowtune ppo`: reinforcement learning from a reward model with PPO (Schulman et al. 2017), the way
Ziegler et al. (2019) and Ouyang et al. (2022) apply it to language models. Our own: trl 1.x no longer
ships a PPO trainer.

policy     the start model (a base or a taught run) + a new LoRA adapter, and a value head on its last
           hidden state
reference  the same model with the adapter switched off: exactly the model before PPO, at no extra memory
each step  roll out answers to a batch of prompts (sampled at `temperature`); score them with the reward
           model; per-token reward -beta * (log pi - log pi_ref) plus the score on the last token; advantages
           by GAE; a few epochs of minibatch updates on the clipped objective + the value loss; beta adapts
           toward a target KL; training stops if the KL runs away (the last step within bounds is kept)
replay     (PPO-ptx, Ouyang et al. 2022) each minibatch update also fits a few of the start model's own answers
           to general prompts (a language-model loss weighted by replay_coef), so steering answers on the
           knowledge prompts does not drift what the model says elsewhere; off unless replay_coef > 0 (on the
           feedback benchmark it did not reduce the retention drop)
measure    mean reward of greedy answers to held-out prompts before and after (in the reward model's
           standard units), KL to the reference on them, and the knowledge audit before and after
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field

from knowtune.config import RunSettings
from knowtune.errors import KnowtuneError
from knowtune.io import (append_jsonl, cached_json, cached_rows, read_jsonl, replace_dir, save_pretrained_atomic,
                         write_json, write_jsonl, write_text)
from knowtune.train import ppo_losses as L


class PPOSettings(RunSettings):
    reward: str = Field("", description="The reward model: a `knowtune reward train` run folder.")
    prompts: list[str] = Field(default_factory=list, description="Prompts to practise on: JSONL of {prompt} or Q&A rows (the rating app's import format).")
    probes: str | None = Field(None, description="Held-out questions with answer keys (Q&A file) for the knowledge audit before and after.")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of prompts held out to measure the reward before and after.")
    steps: int = Field(60, ge=1, description="PPO steps: each rolls out one batch of answers and updates on it.")
    batch_size: int = Field(16, ge=1, description="Answers rolled out per step.")
    samples_per_prompt: int = Field(1, ge=1, description="Answers per prompt in a step (batch_size / this many prompts); above 1 each answer's score is taken relative to its siblings' mean before the KL penalty and GAE, so an easy prompt no longer looks like a good answer.")
    minibatch_size: int = Field(8, ge=1, description="Answers per gradient update.")
    ppo_epochs: int = Field(2, ge=1, description="Passes over each step's answers.")
    learning_rate: float = Field(1e-4, gt=0, description="Adam learning rate of the LoRA adapter and value head.")
    max_new_tokens: int = Field(48, ge=1, description="Longest answer rolled out (and in the reward measurement).")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature of the rollouts; the policy's and the reference's log-probabilities are taken at the same temperature.")
    init_kl_coef: float = Field(0.1, ge=0, description="Starting beta: weight of the KL penalty to the reference model.")
    target_kl: float = Field(3.0, gt=0, description="KL to the reference (nats per answer) that the adaptive beta steers toward.")
    adaptive_kl: bool = Field(True, description="Adapt beta toward target_kl (Ziegler et al. 2019); else keep it fixed.")
    kl_horizon: int = Field(10000, ge=1, description="How fast beta adapts (larger: slower).")
    kl_stop: float = Field(12.0, gt=0, description="Stop when the mean KL of a step passes this (nats per answer): the KL has run away.")
    replay_coef: float = Field(0.0, ge=0, description="Weight of a replay loss: the language-model loss on the start model's answers to general prompts, added to every minibatch update against forgetting (PPO-ptx); try 1.0. Off by default: on the feedback benchmark it cost a third more time per step and kept no more general knowledge (the policy memorised the 81 replay answers instead).")
    replay_batch: int = Field(4, ge=1, description="Replay answers per minibatch update.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount of GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="Lambda of GAE.")
    cliprange: float = Field(0.2, gt=0, description="Clip range of the policy ratio.")
    cliprange_value: float = Field(0.2, gt=0, description="Clip range of the value update.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    save_every: int = Field(10, ge=1, description="Steps between checkpoints (a killed run resumes from the last).")
    audit: bool = Field(True, description="Run the knowledge audit (probes and retention) before and after.")

    def default_run_name(self) -> str:
        return "ppo-" + Path(self.prompts[0]).stem if self.prompts else "ppo"


@dataclass
class Rollout:
    """One batch of answers and what PPO needs of them. Shapes: (B, L) sequences, (B, T) response tokens."""
    sequences: torch.Tensor  # prompt (left-padded) + response
    attention: torch.Tensor
    prompt_width: int
    response: torch.Tensor
    mask: torch.Tensor
    texts: list[str]


class ValueHead(torch.nn.Module):
    """V(s_t): one number per position from the policy's last hidden state."""

    def __init__(self, hidden: int):
        super().__init__()
        self.proj = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.proj.weight)  # V = 0 at first: rewards are in standard units, centred on 0
        torch.nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T)
        return self.proj(h.float()).squeeze(-1)


def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def left_padded_prompts(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(ids, attention, width): the chat prompts left-padded, so every answer starts at column `width`."""
    encoded = [chat_prompt_ids(tokenizer, p) for p in prompts]
    width = max(map(len, encoded))
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, width - len(e):] = torch.tensor(e)
        attn[i, width - len(e):] = 1
    return ids, attn, width


def teacher_forced(tokenizer, prompts: list[str], answers: list[str]) -> Rollout:
    """Given answers (each closed by the end-of-turn token) laid out as a rollout, to score or fit them."""
    ids, attn, width = left_padded_prompts(tokenizer, prompts)
    encoded = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for a in answers]
    response = torch.full((len(encoded), max(map(len, encoded))), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(response)
    for i, e in enumerate(encoded):
        response[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
    return Rollout(torch.cat([ids, response], 1), torch.cat([attn, mask], 1), width, response, mask, list(answers))


@torch.no_grad()
def rollout(policy, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float | None = 1.0) -> Rollout:
    """Answer the prompts (sampled at `temperature`, or greedy when it is None) and mark each answer's tokens."""
    ids, attn, width = left_padded_prompts(tokenizer, prompts)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    device = next(policy.parameters()).device
    kw = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature else {"do_sample": False}
    seq = policy.generate(input_ids=ids.to(device), attention_mask=attn.to(device), max_new_tokens=max_new_tokens,
                          pad_token_id=pad, eos_token_id=eos, **kw).cpu()
    response = seq[:, width:]
    is_eos = (response == eos).int()
    # 1 up to and including the first end-of-turn token: (B, T)
    mask = ((is_eos.cumsum(1) - is_eos) == 0).long()
    texts = [tokenizer.decode(r[m.bool()], skip_special_tokens=True).strip() for r, m in zip(response, mask)]
    return Rollout(seq, torch.cat([attn, mask], 1), width, response, mask, texts)


def forward(policy, value_head, r: Rollout, rows=slice(None), with_values: bool = True, entropy: bool = False,
            temperature: float = 1.0):
    """Log-probabilities of the response tokens (and values, entropies) under the policy as it is now (the
    reference: call inside `policy.disable_adapter()`), at the sampling temperature. Only response positions are
    projected onto the vocabulary. Returns (logprobs (B, T), values (B, T) or None, entropy (B, T) or None)."""
    base = policy.get_base_model()
    device = next(policy.parameters()).device
    attn = r.attention[rows].to(device)
    position_ids = (attn.cumsum(1) - 1).clamp(min=0)  # left padding: positions count real tokens only
    hidden = base.get_decoder()(input_ids=r.sequences[rows].to(device), attention_mask=attn,
                                position_ids=position_ids, use_cache=False).last_hidden_state  # (B, L, d)
    h = hidden[:, r.prompt_width - 1:-1]  # (B, T, d): the state each response token is predicted from
    logits = base.get_output_embeddings()(h).float() / temperature  # (B, T, V)
    logprobs = L.token_logprobs(logits, r.response[rows].to(device))
    values = value_head(h) if with_values else None
    ent = L.entropy_from_logits(logits.detach()) if entropy else None
    return logprobs, values, ent


class PPOTrainer:
    """The policy (LoRA on the start model), its value head, the optimiser and the KL controller."""

    def __init__(self, s: PPOSettings, model, tokenizer, log=print, replay: list[dict] | None = None):
        from peft import LoraConfig, get_peft_model

        from knowtune.train.sft import use_bf16

        self.s, self.tokenizer, self.log = s, tokenizer, log
        torch.manual_seed(s.seed)
        targets = "all-linear" if s.lora_targets == "all-linear" else [t.strip() for t in s.lora_targets.split(",")]
        self.policy = get_peft_model(model, LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                                       target_modules=targets, task_type="CAUSAL_LM"))
        self.value_head = ValueHead(model.config.hidden_size).to(next(model.parameters()).device)
        params = [p for p in self.policy.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=0.0)
        self.kl = L.AdaptiveKL(s.init_kl_coef, s.target_kl, s.kl_horizon)
        self.bf16 = use_bf16(s.bf16)
        self.step = 0
        self.replay = [(r["prompt"], r["answer"]) for r in replay or []] if s.replay_coef else []

    def replay_loss(self, update: int):
        """Mean negative log-likelihood of `replay_batch` of the start model's general answers (a seeded pick)."""
        pick = random.Random(self.s.seed * 1000003 + self.step * 1009 + update).sample(
            self.replay, min(self.s.replay_batch, len(self.replay)))
        r = teacher_forced(self.tokenizer, [p for p, _ in pick], [a for _, a in pick])
        with self.autocast():
            logprobs, _, _ = forward(self.policy, self.value_head, r, with_values=False)
        return -L.masked_mean(logprobs, r.mask.to(logprobs.device).float())

    def autocast(self):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16)

    def train_step(self, prompts: list[str], reward_model) -> dict:
        """Roll out, score and (unless the KL has run away) update. The returned row has `stopped` set when
        the policy as it was at the start of this step is already too far from the reference."""
        s, t0 = self.s, time.time()
        self.policy.eval()
        with self.autocast():
            r = rollout(self.policy, self.tokenizer, prompts, s.max_new_tokens, s.temperature)
            with torch.no_grad():
                old_logprobs, old_values, _ = forward(self.policy, self.value_head, r, temperature=s.temperature)
                with self.policy.disable_adapter():
                    ref_logprobs, _, _ = forward(self.policy, self.value_head, r, with_values=False, temperature=s.temperature)
        scores = torch.tensor(reward_model.score(prompts, r.texts), dtype=torch.float32)
        relative = L.group_baseline(scores, s.samples_per_prompt)
        mask = r.mask.float()
        old_logprobs, old_values, ref_logprobs = old_logprobs.float().cpu(), old_values.float().cpu(), ref_logprobs.float().cpu()
        rewards, kl = L.kl_penalised_rewards(relative, old_logprobs, ref_logprobs, mask, self.kl.beta)
        row = {"step": self.step + 1, "reward": float(scores.mean()),
               "reward_std": float(scores.std()) if len(scores) > 1 else 0.0, "kl": float(kl.sum(1).mean()),
               "beta": self.kl.beta, "answer_tokens": float(mask.sum(1).mean())}
        if row["kl"] > s.kl_stop:
            return {**row, "stopped": True, "seconds": round(time.time() - t0, 2)}
        self.last_good = self.snapshot()
        advantages, returns = L.gae(rewards, old_values, mask, s.gamma, s.lam)
        advantages = L.masked_whiten(advantages, mask)
        row.update(self._update(r, old_logprobs, old_values, advantages, returns, mask))
        if s.adaptive_kl:
            self.kl.update(row["kl"], len(prompts))
        self.step += 1
        return {**row, "stopped": False, "seconds": round(time.time() - t0, 2)}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        state = {f"policy.{k}": v for k, v in get_peft_model_state_dict(self.policy).items()}
        return state | {f"value_head.{k}": v for k, v in self.value_head.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.policy, {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")})
        self.value_head.load_state_dict({k[len("value_head."):]: v for k, v in state.items() if k.startswith("value_head.")})

    def snapshot(self) -> dict:
        return {"weights": {k: v.detach().clone() for k, v in self.trainable_state().items()}, "step": self.step,
                "beta": self.kl.beta}

    def restore(self, snap: dict) -> None:
        self.load_trainable_state(snap["weights"])
        self.step, self.kl.beta = snap["step"], snap["beta"]

    def save_checkpoint(self, folder: Path) -> None:
        """Weights, optimiser, step, beta and RNG, written to a temporary folder and renamed into place."""
        from safetensors.torch import save_file

        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in self.trainable_state().items()}, str(tmp / "trainable.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": self.step, "beta": self.kl.beta}))
        replace_dir(tmp, folder)

    def load_checkpoint(self, folder: Path) -> None:
        from safetensors.torch import load_file

        self.load_trainable_state(load_file(str(folder / "trainable.safetensors")))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch_rng"])
        state = json.loads((folder / "state.json").read_text())
        self.step, self.kl.beta = state["step"], state["beta"]

    def _update(self, r: Rollout, old_logprobs, old_values, advantages, returns, mask) -> dict:
        s = self.s
        self.policy.train()
        device = next(self.policy.parameters()).device
        logs: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "clip_fraction", "value_clip_fraction",
                                                         "approx_kl", "entropy", "replay_loss")}
        n = len(r.texts)
        for _ in range(s.ppo_epochs):
            order = torch.randperm(n)
            for start in range(0, n, s.minibatch_size):
                rows = order[start:start + s.minibatch_size]
                m = mask[rows].to(device)
                with self.autocast():
                    logprobs, values, entropy = forward(self.policy, self.value_head, r, rows, entropy=True,
                                                        temperature=s.temperature)
                pg, clip_frac, approx_kl = L.policy_loss(logprobs, old_logprobs[rows].to(device), advantages[rows].to(device), m, s.cliprange)
                vf, vclip = L.value_loss(values, old_values[rows].to(device), returns[rows].to(device), m, s.cliprange_value)
                loss = pg + s.vf_coef * vf
                if self.replay:
                    ptx = self.replay_loss(len(logs["policy_loss"]))
                    loss = loss + s.replay_coef * ptx
                    logs["replay_loss"].append(float(ptx.detach()))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], s.max_grad_norm)
                self.optimizer.step()
                for k, v in (("policy_loss", pg), ("value_loss", vf), ("clip_fraction", clip_frac),
                             ("value_clip_fraction", vclip), ("approx_kl", approx_kl), ("entropy", L.masked_mean(entropy, m))):
                    logs[k].append(float(v.detach()))
        self.policy.eval()
        return {k: statistics.fmean(v) for k, v in logs.items() if v}


def prompt_batches(prompts: list[str], batch_size: int, seed: int):
    """An endless stream of prompt batches: each pass over the prompts in a fresh seeded order. Deterministic,
    so a resumed run skips the batches it already used and goes on exactly as it would have."""
    k = 0
    while True:
        order = prompts[:]
        random.Random(seed * 100003 + k).shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield order[start:start + batch_size]
        k += 1


def measure_reward(trainer: PPOTrainer, reward_model, prompts: list[str], batch: int = 16, samples: int = 2) -> dict:
    """The reward model's mean score (standard units) of answers to held-out prompts: greedy answers (what
    `knowtune ask` gives) and `samples` sampled answers per prompt at the rollout temperature (what PPO
    optimises); and the KL to the reference on the sampled ones (log pi - log pi_ref summed over each answer)."""
    temp = trainer.s.temperature
    answers, scores, sampled_scores, kls = [], [], [], []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        with trainer.autocast(), torch.no_grad():
            greedy = rollout(trainer.policy, trainer.tokenizer, chunk, trainer.s.max_new_tokens, None)
        answers += greedy.texts
        scores += reward_model.score(chunk, greedy.texts)
        for _ in range(samples):
            with trainer.autocast(), torch.no_grad():
                sampled = rollout(trainer.policy, trainer.tokenizer, chunk, trainer.s.max_new_tokens, temp)
                logp, _, _ = forward(trainer.policy, trainer.value_head, sampled, with_values=False, temperature=temp)
                with trainer.policy.disable_adapter():
                    ref, _, _ = forward(trainer.policy, trainer.value_head, sampled, with_values=False, temperature=temp)
            kls += ((logp.float().cpu() - ref.float().cpu()) * sampled.mask).sum(1).tolist()
            sampled_scores += reward_model.score(chunk, sampled.texts)
    return {"n": len(prompts), "reward_mean": statistics.fmean(scores), "reward_std": statistics.pstdev(scores),
            "sampled_reward_mean": statistics.fmean(sampled_scores), "sampled_reward_std": statistics.pstdev(sampled_scores),
            "kl_mean": statistics.fmean(kls),
            "answers": [{"prompt": p, "answer": a, "reward": r} for p, a, r in zip(prompts, answers, scores)]}


def replay_answers(s: PPOSettings, model, tokenizer, run_dir: Path, log) -> list[dict]:
    """The replay set: a taught start run's own (its base model's answers to the general prompts, which its
    teaching kept), else the start model's greedy answers to them, written once into the run folder."""
    if not s.replay_coef:
        return []
    taught = Path(s.model) / "data" / "replay.jsonl"
    if taught.exists():
        return read_jsonl(taught)
    from knowtune.train.sft import _replay_answers

    rows = cached_rows(run_dir / "data" / "replay.jsonl", lambda: _replay_answers(model, tokenizer, log))
    if not rows:
        log("The start model gave no answers to the general prompts: PPO runs without replay.")
    return rows


def load_prompts(paths: list[str]) -> list[str]:
    from knowtune.data.preference import parse_prompt_lines

    out: list[str] = []
    for path in paths:
        if not Path(path).exists():
            raise KnowtuneError(f"{path}: no such file.", fix="check the --prompts path.")
        out += [r["prompt"] for r in parse_prompt_lines(Path(path).read_text(encoding="utf-8-sig"), path)]
    return list(dict.fromkeys(out))


def run(s: PPOSettings, resume: bool = False, log=print) -> dict:
    """PPO against a reward model, with the reward measured and the knowledge audited before and after."""
    from tqdm.auto import tqdm

    from knowtune.data.preference import split_prompts
    from knowtune.models.load import load_for_inference
    from knowtune.train.alignment import audit_before_after, load_probes
    from knowtune.train.reward import RewardModel
    from knowtune.train.sft import init_run_dir

    if not s.reward:
        raise KnowtuneError("No reward model given.", fix="pass --reward RUN (a `knowtune reward train` run).")
    train, held = split_prompts(load_prompts(s.prompts), s.eval_fraction, s.seed)
    if s.batch_size % s.samples_per_prompt:
        raise KnowtuneError(f"batch_size {s.batch_size} is not a multiple of samples_per_prompt {s.samples_per_prompt}.",
                            fix="make batch_size a multiple of samples_per_prompt.")
    if len(train) < s.batch_size // s.samples_per_prompt:
        raise KnowtuneError(f"Only {len(train)} training prompts for a batch of {s.batch_size}.",
                            fix="add prompts, or lower --batch-size.")
    probes = load_probes(s.probes)
    run_dir = s.run_dir()
    init_run_dir(run_dir, s, resume)
    reward_model = RewardModel.load(s.reward, log=log)
    model, tokenizer = load_for_inference(s.model, log=log)
    trainer = PPOTrainer(s, model, tokenizer, log, replay=replay_answers(s, model, tokenizer, run_dir, log))
    log(f"PPO on {len(train)} prompts ({len(held)} held out), {s.steps} steps of {s.batch_size} answers; "
        f"reward model {s.reward}; {'bf16' if trainer.bf16 else 'fp32'}.")
    before = cached_json(run_dir / "before.json", lambda: measure_reward(trainer, reward_model, held)) if held else None
    metrics = run_dir / "metrics.jsonl"
    ckpt = run_dir / "checkpoint"
    if resume and (ckpt / "state.json").exists():
        trainer.load_checkpoint(ckpt)
        log(f"Resuming from step {trainer.step}.")
    if metrics.exists():  # keep only the steps the checkpoint holds
        write_jsonl(metrics, [r for r in read_jsonl(metrics) if r["step"] <= trainer.step])
    k = s.samples_per_prompt
    batches = ([p for p in b for _ in range(k)] for b in prompt_batches(train, s.batch_size // k, s.seed))
    for _ in range(trainer.step):
        next(batches)
    stopped, trainer.last_good = None, trainer.snapshot()
    with tqdm(total=s.steps, initial=trainer.step, desc="PPO", unit="step") as bar:
        while trainer.step < s.steps:
            row = trainer.train_step(next(batches), reward_model)
            if row.pop("stopped"):
                stopped = (f"KL to the reference ran away at step {row['step']} ({row['kl']:.1f} nats per answer > "
                           f"kl_stop {s.kl_stop}); kept the policy of step {trainer.last_good['step']}.")
                trainer.restore(trainer.last_good)
                log(stopped)
                break
            append_jsonl(metrics, row)
            bar.set_postfix(reward=f"{row['reward']:+.2f}", kl=f"{row['kl']:.2f}", beta=f"{row['beta']:.3f}")
            bar.update(1)
            if trainer.step % s.save_every == 0 or trainer.step == s.steps:
                trainer.save_checkpoint(ckpt)
    _save_policy(trainer, tokenizer, run_dir)
    after = measure_reward(trainer, reward_model, held) if held else None
    del trainer, model
    audit = audit_before_after(s, run_dir, probes, log) if s.audit else None
    result = {"settings": s.model_dump(), "prompts": {"train": len(train), "heldout": len(held)},
              "reward_before": _brief(before), "reward_after": _brief(after), "stopped": stopped,
              "steps": read_jsonl(metrics) if metrics.exists() else [], "audit": audit}
    if before and after:
        result["reward_gain_in_std"] = (after["reward_mean"] - before["reward_mean"]) / (before["reward_std"] or 1.0)
        result["sampled_reward_gain_in_std"] = ((after["sampled_reward_mean"] - before["sampled_reward_mean"])
                                                / (before["sampled_reward_std"] or 1.0))
        write_json(run_dir / "answers.json", {"before": before["answers"], "after": after["answers"]})
    write_json(run_dir / "ppo.json", result)
    _write_report(run_dir, result)
    return result


def _brief(m: dict | None) -> dict | None:
    return None if m is None else {k: v for k, v in m.items() if k != "answers"}


def _save_policy(trainer: PPOTrainer, tokenizer, run_dir: Path) -> None:
    from safetensors.torch import save_file

    save_pretrained_atomic(run_dir / "adapter", trainer.policy, tokenizer,
                           extra=lambda tmp: save_file(trainer.value_head.state_dict(), str(tmp / "value_head.safetensors")))


def _write_report(run_dir: Path, result: dict) -> None:
    from knowtune.eval.report import save_figure
    from knowtune.train.alignment import audit_lines

    rows = result["steps"]
    plot = None
    if rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
        steps = [r["step"] for r in rows]
        for ax, key, title in zip(axes, ("reward", "kl", "beta"), ("mean reward (std units)", "KL to reference (nats/answer)", "beta (KL weight)")):
            ax.plot(steps, [r[key] for r in rows])
            ax.set_title(title)
            ax.set_xlabel("step")
        plot = save_figure(fig, run_dir / "plots" / "ppo.png").relative_to(run_dir)
    b, a = result["reward_before"], result["reward_after"]
    lines = [f"# PPO: {run_dir.name}", "", f"Policy `{result['settings']['model']}` + LoRA, reward model "
             f"`{result['settings']['reward']}`, {len(rows)} steps. {result['stopped'] or ''}", ""]
    if b and a:
        lines += ["| held-out prompts | before | after |", "|---|---|---|",
                  f"| mean reward of greedy answers (std units, {a['n']} prompts) | {b['reward_mean']:+.3f} | {a['reward_mean']:+.3f} |",
                  f"| mean reward of sampled answers (temperature {result['settings']['temperature']}) | "
                  f"{b['sampled_reward_mean']:+.3f} | {a['sampled_reward_mean']:+.3f} |",
                  f"| KL to the reference (nats per answer) | {b['kl_mean']:.2f} | {a['kl_mean']:.2f} |", "",
                  f"Reward gain in standard deviations of the reward before PPO: greedy answers "
                  f"{result['reward_gain_in_std']:+.2f}, sampled answers {result['sampled_reward_gain_in_std']:+.2f}.", ""]
    if result["audit"]:
        lines += audit_lines(result["audit"])
    if plot:
        lines += [f"![PPO curves]({plot})", ""]
    write_text(run_dir / "report.md", "\n".join(lines) + "\n")

