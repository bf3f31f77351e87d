"""PPO's machinery (see `ppo.py` for the recipe): the LoRA policy and its value head, rollouts with
`generate`, log-probabilities of the answer tokens, minibatch updates on the clipped objective, the adaptive
KL controller, checkpoints that resume exactly, and the reward measurement before and after."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from knowtune.eval.generate import pad_batch
from knowtune.models.precision import autocast, use_bf16
from knowtune.train.lifecycle import read_checkpoint, write_checkpoint
from knowtune.train.methods import ppo_losses as L
from knowtune.train.optim import make_optimizer, make_scheduler

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
    ids, attn = pad_batch([chat_prompt_ids(tokenizer, p) for p in prompts], tokenizer.pad_token_id, left=True)
    return ids, attn, ids.shape[1]


def teacher_forced(tokenizer, prompts: list[str], answers: list[str]) -> Rollout:
    """Given answers (each closed by the end-of-turn token) laid out as a rollout, to score or fit them."""
    ids, attn, width = left_padded_prompts(tokenizer, prompts)
    encoded = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for a in answers]
    response, mask = pad_batch(encoded, tokenizer.pad_token_id)
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

    def __init__(self, s, model, tokenizer, log=print, replay: list[dict] | None = None):
        from peft import LoraConfig, get_peft_model

        self.s, self.tokenizer, self.log = s, tokenizer, log
        torch.manual_seed(s.seed)
        targets = "all-linear" if s.lora_targets == "all-linear" else [t.strip() for t in s.lora_targets.split(",")]
        self.policy = get_peft_model(model, LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                                       target_modules=targets, task_type="CAUSAL_LM"))
        self.value_head = ValueHead(model.config.hidden_size).to(next(model.parameters()).device)
        params = [p for p in self.policy.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = make_optimizer(params, s)
        updates = s.steps * s.ppo_epochs * -(-s.batch_size // s.minibatch_size)
        self.scheduler = make_scheduler(self.optimizer, s, updates)
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
        return autocast(self.bf16)

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
        row["loss"] = row["policy_loss"] + s.vf_coef * row["value_loss"]  # the objective minimised, for the loss plot
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
        """Weights, optimiser, schedule, step, beta and RNG (`lifecycle.write_checkpoint`)."""
        write_checkpoint(folder, self.trainable_state(), self.optimizer, self.scheduler,
                         {"step": self.step, "beta": self.kl.beta}, {"torch_rng": torch.get_rng_state()},
                         keep=self.s.save_total_limit)

    def load_checkpoint(self, folder: Path) -> None:
        weights, state, tensors = read_checkpoint(folder, self.optimizer, self.scheduler)
        self.load_trainable_state(weights)
        torch.set_rng_state(tensors["torch_rng"])
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
                self.scheduler.step()
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
