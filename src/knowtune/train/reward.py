"""`knowtune reward train`: a reward model from preference pairs, with trl's RewardTrainer, as a recipe.

The reward model is the base LLM (an alias, a folder or a taught run, so it knows what the run knows) with
a scalar head (`score`) read at the last token, and LoRA on the rest.

prepare  read the pairs and split them by prompt into train / held-out (no held-out prompt is trained on)
measure  held-out accuracy of the untrained model (a random head: about chance)
train    RewardTrainer: loss -log sigmoid(r_chosen - r_rejected) (Bradley-Terry), LoRA + the head
measure  held-out accuracy (chosen scored above rejected) and the score scale on the training pairs, so PPO
         gets rewards in standard units
save     reward/ (adapter + head + tokenizer), reward.json, report.md
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch
from pydantic import Field

from knowtune.config import RunSettings
from knowtune.data.preference import Pair, load_pairs, split_pairs
from knowtune.errors import KnowtuneError
from knowtune.io import read_jsonl, save_pretrained_atomic, write_json, write_jsonl, write_text
from knowtune.train.callbacks import FiniteGuard, MetricsLog


class RewardSettings(RunSettings):
    data: list[str] = Field(default_factory=list, description="Preference pairs: JSONL files of {prompt, chosen, rejected} (`knowtune feedback export pairs` writes one), or a rating database.")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of prompts whose pairs are held out to measure the reward model's accuracy.")
    epochs: int = Field(2, ge=1, description="Passes over the training pairs.")
    learning_rate: float = Field(5e-4, gt=0, description="Peak learning rate (LoRA and the reward head).")
    batch_size: int = Field(8, ge=1, description="Pairs per optimiser step.")
    max_length: int = Field(384, ge=16, description="Longest prompt + answer in tokens; longer pairs are left out.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming the learning rate up.")
    center_rewards: float = Field(0.01, ge=0, description="Penalty on the squared mean reward, keeping scores centred on 0.")

    def default_run_name(self) -> str:
        return "reward-" + Path(self.data[0]).stem if self.data else "reward"


def encode_conversation(tokenizer, prompt: str, answer: str) -> list[int]:
    """Token ids of a one-turn chat: the text the reward model scores (the same in training and in PPO)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                                         tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def build_reward_backbone(ref: str, seed: int = 0, log=print):
    """A sequence classifier with one output (the reward) whose body is the model `ref` names (a run's tuned
    model included); the head is new. Returns (model, tokenizer)."""
    from transformers import AutoModelForSequenceClassification

    from knowtune.models.load import load_for_inference

    causal, tokenizer = load_for_inference(ref, log=log)
    torch.manual_seed(seed)
    config = causal.config
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    body = getattr(model, model.base_model_prefix)
    body.load_state_dict(getattr(causal, causal.base_model_prefix).state_dict())
    del causal
    model.eval()
    return model, tokenizer


class RewardModel:
    """A trained reward model: `score(prompts, answers)` in standard units (0 = the mean answer of the
    training pairs, 1 = one standard deviation)."""

    def __init__(self, model, tokenizer, mean: float = 0.0, std: float = 1.0):
        self.model, self.tokenizer, self.mean, self.std = model, tokenizer, mean, std

    @classmethod
    def load(cls, run: str | Path, log=print, scaled: bool = True) -> "RewardModel":
        """The reward model of a `knowtune reward train` run (scaled: in the standard units it measured)."""
        import json

        import yaml
        from peft import PeftModel

        run = Path(run)
        done = (run / "reward").exists() and (not scaled or (run / "reward.json").exists())
        if not done:
            raise KnowtuneError(f"{run} holds no trained reward model (reward/ and reward.json).",
                                fix="train one with `knowtune reward train PAIRS --out RUN`.")
        settings = yaml.safe_load((run / "config.yaml").read_text())
        model, tokenizer = build_reward_backbone(settings["model"], log=log)
        model = PeftModel.from_pretrained(model, str(run / "reward")).merge_and_unload()
        model.eval()
        if not scaled:
            return cls(model, tokenizer)
        scale = json.loads((run / "reward.json").read_text())["scale"]
        return cls(model, tokenizer, scale["mean"], scale["std"])

    @torch.no_grad()
    def raw_scores(self, prompts: list[str], answers: list[str], batch_size: int = 16) -> list[float]:
        encoded = [encode_conversation(self.tokenizer, p, a) for p, a in zip(prompts, answers)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = [0.0] * len(encoded)
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # right padding: (B, T)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, :len(encoded[i])] = 1
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (B, 1)
            for row, i in enumerate(batch):
                out[i] = float(logits[row, 0])
        return out

    def score(self, prompts: list[str], answers: list[str], batch_size: int = 16) -> list[float]:
        return [(r - self.mean) / self.std for r in self.raw_scores(prompts, answers, batch_size)]


def pair_accuracy(rm: RewardModel, pairs: list[Pair]) -> dict:
    """Share of pairs whose chosen answer scores above the rejected one, and the mean margin."""
    if not pairs:
        return {"n": 0, "accuracy": None, "margin": None}
    prompts = [p.prompt for p in pairs]
    chosen = rm.raw_scores(prompts, [p.chosen for p in pairs])
    rejected = rm.raw_scores(prompts, [p.rejected for p in pairs])
    return {"n": len(pairs), "accuracy": sum(c > r for c, r in zip(chosen, rejected)) / len(pairs),
            "margin": statistics.fmean(c - r for c, r in zip(chosen, rejected)) / rm.std}


def run(s: RewardSettings, pairs: list[Pair] | None = None, log=print) -> dict:
    """Train and measure a reward model; returns what reward.json holds."""
    from peft import LoraConfig
    from trl import RewardConfig, RewardTrainer

    from knowtune.train.sft import frozen_linears_to_bf16, init_run_dir, use_bf16

    pairs = pairs if pairs is not None else load_pairs(s.data)
    train, held = split_pairs(pairs, s.eval_fraction, s.seed)
    if not train:
        raise KnowtuneError(f"All {len(pairs)} pairs were held out.", fix="lower eval_fraction or add pairs.")
    run_dir = s.run_dir()
    init_run_dir(run_dir, s, resume=False)
    write_jsonl(run_dir / "data" / "pairs_train.jsonl", [p.to_row() for p in train])
    write_jsonl(run_dir / "data" / "pairs_heldout.jsonl", [p.to_row() for p in held])
    log(f"{len(pairs)} preference pairs: {len(train)} to train on, {len(held)} held out "
        f"({len({p.prompt for p in held})} prompts never trained on).")

    model, tokenizer = build_reward_backbone(s.model, s.seed, log=log)
    before = pair_accuracy(RewardModel(model, tokenizer), held)
    cfg = RewardConfig(
        output_dir=str(run_dir / "checkpoints"), num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
        learning_rate=s.learning_rate, lr_scheduler_type="cosine",
        warmup_steps=int(s.warmup_ratio * s.epochs * math.ceil(len(train) / s.batch_size)),
        logging_steps=max(1, len(train) // s.batch_size // 4), save_strategy="no", eval_strategy="no",
        report_to="none", seed=s.seed, max_length=s.max_length, bf16=use_bf16(s.bf16),
        use_cpu=not torch.cuda.is_available(), activation_checkpointing=False, disable_tqdm=False,
        center_rewards_coefficient=s.center_rewards or None, dataloader_num_workers=0)
    if cfg.bf16:
        frozen_linears_to_bf16(model, keep=(model.score,))
    targets = "all-linear" if s.lora_targets == "all-linear" else [t.strip() for t in s.lora_targets.split(",")]
    peft_config = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules=targets,
                             task_type="SEQ_CLS", modules_to_save=["score"])
    guard = FiniteGuard()
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=_encoded(tokenizer, train),
                            processing_class=tokenizer, peft_config=peft_config,
                            callbacks=[guard, MetricsLog(run_dir / "metrics.jsonl")])
    log(f"Training the reward model ({'bf16' if cfg.bf16 else 'fp32'} precision).")
    trainer.train()
    if guard.diverged_at is not None:
        raise KnowtuneError(f"Reward training diverged at step {guard.diverged_at} (NaN/inf).",
                            fix=f"lower the learning rate (now {s.learning_rate}) and run again.")
    save_pretrained_atomic(run_dir / "reward", trainer.model, tokenizer)
    del trainer, model
    rm = RewardModel.load(run_dir, log=log, scaled=False)  # measured exactly as PPO will load it
    raw = rm.raw_scores([p.prompt for p in train] * 2, [p.chosen for p in train] + [p.rejected for p in train])
    rm.mean, rm.std = statistics.fmean(raw), statistics.pstdev(raw) or 1.0
    after = pair_accuracy(rm, held)
    result = {"settings": s.model_dump(), "pairs": {"train": len(train), "heldout": len(held)},
              "heldout_before": before, "heldout_after": after, "train_after": pair_accuracy(rm, train[:200]),
              "scale": {"mean": rm.mean, "std": rm.std}, "training": _losses(run_dir)}
    write_json(run_dir / "reward.json", result)
    write_text(run_dir / "report.md", render_report(result))
    return result


def _encoded(tokenizer, pairs: list[Pair]):
    from datasets import Dataset

    return Dataset.from_list([{"chosen_ids": encode_conversation(tokenizer, p.prompt, p.chosen),
                               "rejected_ids": encode_conversation(tokenizer, p.prompt, p.rejected)} for p in pairs])


def _losses(run_dir: Path) -> list:
    path = run_dir / "metrics.jsonl"
    return [(r["step"], r["loss"]) for r in read_jsonl(path) if "loss" in r] if path.exists() else []


def render_report(result: dict) -> str:
    from knowtune.eval.report import pct

    b, a = result["heldout_before"], result["heldout_after"]
    return "\n".join([
        f"# Reward model: {result['settings']['out'] or ''}", "",
        f"Base `{result['settings']['model']}` + LoRA r{result['settings']['lora_r']} and a reward head; "
        f"{result['pairs']['train']} training pairs, {result['pairs']['heldout']} held out (by prompt).", "",
        "| measure | before training | after training |", "|---|---|---|",
        f"| held-out pair accuracy ({a['n']}) | {pct(b['accuracy'])} | {pct(a['accuracy'])} |",
        f"| training pair accuracy | | {pct(result['train_after']['accuracy'])} |",
        f"| mean margin, held out (std units) | | {a['margin']:.2f} |" if a["margin"] is not None else "",
        "", f"Scores are reported in standard units: raw mean {result['scale']['mean']:.3f}, "
            f"std {result['scale']['std']:.3f} over the training answers.", ""])
