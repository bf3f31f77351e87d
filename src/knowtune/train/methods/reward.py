"""`knowtune reward train`: a reward model from preference pairs, with trl's RewardTrainer, as a recipe.

The reward model is the base LLM (an alias, a folder or a taught run, so it knows what the run knows) with
a scalar head (`score`) read at the last token, and LoRA on the rest.

prepare  read the pairs and split them by prompt into train / held-out (no held-out prompt is trained on)
train    RewardTrainer: loss -log sigmoid(r_chosen - r_rejected) (Bradley-Terry), LoRA + the head
audit    its own kind of audit, in the one schema: held-out pairs ranked right (chosen above rejected), and
         general questions whose right answer it scores above another question's answer; before training (a
         new head: about chance) and after, loaded as PPO loads it. After training it also measures the score
         scale on the training answers (reward.json), so PPO gets rewards in standard units
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from knowtune.config import AuditSettings, EpochSettings, LoraSettings, OptimSettings, RunSettings
from knowtune.data.preference import Pair, load_pairs, split_pairs
from knowtune.errors import KnowtuneError
from knowtune.eval.audit import AuditSet, accuracy, probes_file, retention_probes
from knowtune.io import write_json
from knowtune.models.precision import bf16_linears
from knowtune.train.hf import lora_config, train_resumable, training_args
from knowtune.train.lifecycle import Method, Prepared, Run, Trained


class RewardSettings(RunSettings, EpochSettings, OptimSettings, LoraSettings, AuditSettings):
    DEFAULTS = {"epochs": 2, "learning_rate": 5e-4}
    data: list[str] = Field(default_factory=list, description="Preference pairs: JSONL files of {prompt, chosen, rejected} (`knowtune feedback export pairs` writes one), or a rating database.")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of prompts whose pairs are held out to measure the reward model's accuracy.")
    max_length: int = Field(384, ge=16, description="Longest prompt + answer in tokens; longer pairs are left out.")
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
    from knowtune.models.load import with_new_head

    return with_new_head(ref, "sequence", 1, seed, log=log)


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

    def raw_scores(self, prompts: list[str], answers: list[str], batch_size: int = 16) -> list[float]:
        import torch

        from knowtune.eval.generate import pad_batch

        encoded = [encode_conversation(self.tokenizer, p, a) for p, a in zip(prompts, answers)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = [0.0] * len(encoded)
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            ids, mask = pad_batch([encoded[i] for i in batch], pad)  # right padding: the score is read at the last token
            with torch.no_grad():
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


@dataclass
class PairData:
    train: list[Pair]
    held: list[Pair]


class Reward(Method):
    name = "reward"
    verb = "reward train"
    help = ("Train a reward model (a scalar head on the base LLM, LoRA) with trl's RewardTrainer and report its "
            "accuracy on held-out pairs (prompts it never saw).")
    Settings = RewardSettings
    reads_ratings = True
    saved: tuple | None = None  # (run folder, RewardModel) finish loaded, which the after-audit reuses

    def prepare(self, s: RewardSettings, log) -> Prepared:
        pairs = self.pairs if self.pairs is not None else load_pairs(s.data)
        train, held = split_pairs(pairs, s.eval_fraction, s.seed)
        if not train:
            raise KnowtuneError(f"All {len(pairs)} pairs were held out.", fix="lower eval_fraction or add pairs.")
        probes = probes_file(s.probes)
        return Prepared(AuditSet(probes), PairData(train, held),
                        {"pairs_train": [p.to_row() for p in train], "pairs_heldout": [p.to_row() for p in held]},
                        f"{len(pairs)} preference pairs: {len(train)} to train on, {len(held)} held out "
                        f"({len({p.prompt for p in held})} prompts never trained on).")

    def train(self, s: RewardSettings, prep: Prepared, run: Run) -> Trained:
        from trl import RewardConfig, RewardTrainer

        from knowtune.train.callbacks import FiniteGuard, MetricsLog

        pairs: PairData = prep.data
        model, tokenizer = build_reward_backbone(s.model, s.seed, log=run.log)
        cfg = training_args(RewardConfig, s, run.dir, len(pairs.train), max_length=s.max_length,
                            activation_checkpointing=False, center_rewards_coefficient=s.center_rewards or None)
        if cfg.bf16:
            bf16_linears(model, keep=(model.score,))
        guard = FiniteGuard()
        trainer = RewardTrainer(model=model, args=cfg, train_dataset=_encoded(tokenizer, pairs.train),
                                processing_class=tokenizer, peft_config=lora_config(s, "SEQ_CLS", modules_to_save=["score"]),
                                callbacks=[guard, MetricsLog(run.metrics)])
        run.log(f"Training the reward model ({'bf16' if cfg.bf16 else 'fp32'} precision).")
        train_resumable(trainer, run, run.verbose)
        return Trained("reward", (trainer.model, tokenizer), trainer.state.global_step, trainer.state.epoch,
                       diverged_at=guard.diverged_at)

    def finish(self, s: RewardSettings, prep: Prepared, run: Run) -> None:
        """The score scale on the training answers (reward.json), measured exactly as PPO will load the model,
        so rewards are in standard units."""
        pairs: PairData = prep.data
        rm = RewardModel.load(run.dir, log=run.log, scaled=False)
        raw = rm.raw_scores([p.prompt for p in pairs.train] * 2,
                            [p.chosen for p in pairs.train] + [p.rejected for p in pairs.train])
        rm.mean, rm.std = statistics.fmean(raw), statistics.pstdev(raw) or 1.0
        self.saved = (str(run.dir), rm)
        write_json(run.dir / "reward.json", {"scale": {"mean": rm.mean, "std": rm.std},
                                             "heldout_after": pair_accuracy(rm, pairs.held),
                                             "train_after": pair_accuracy(rm, pairs.train[:200])})

    def audit(self, s: RewardSettings, prep: Prepared, ref: str, after: bool, log) -> dict:
        """Pairs ranked right, in the audit's schema: held-out pairs (and --probes questions: the right answer
        against another's) as the probes, general questions the same way as the retention set."""
        pairs: PairData = prep.data
        if after:
            rm = self.saved[1] if self.saved and self.saved[0] == str(ref) else RewardModel.load(ref, log=log)  # as PPO loads it
        else:
            rm = RewardModel(*build_reward_backbone(ref, s.seed, log=log))  # the new head: about chance
        return pair_audit(rm, pairs.held + answer_pairs(prep.audit.probes), answer_pairs(retention_probes()))


def answer_pairs(probes) -> list[Pair]:
    """Questions with answer keys as pairs: the right answer chosen over the next question's answer."""
    from knowtune.data.knowledge import question_text

    n = len(probes)
    return [Pair(question_text(p.prompt), p.answer, probes[(i + 1) % n].answer, source="answer key")
            for i, p in enumerate(probes) if n > 1 and probes[(i + 1) % n].answer != p.answer]


def pair_audit(rm: "RewardModel", probes: list[Pair], general: list[Pair]) -> dict:
    """The audit's dict (rows, accuracies, calibration) for a reward model: a row is right when the chosen
    answer scores above the other; its confidence is the Bradley-Terry probability of that ranking."""
    from knowtune.eval.calibration import expected_calibration_error

    def rows(pairs: list[Pair], split: str) -> list[dict]:
        prompts = [p.prompt for p in pairs]
        chosen, rejected = rm.raw_scores(prompts, [p.chosen for p in pairs]), rm.raw_scores(prompts, [p.rejected for p in pairs])
        return [{"fact_id": p.prompt, "style": "chat", "prompt": [{"role": "user", "content": p.prompt}],
                 "answer": p.chosen, "aliases": [], "split": split, "source": p.source or "held-out pair",
                 "output": f"chosen {c:+.3f} / other {r:+.3f}", "correct": c > r, "declined": False,
                 "confidence": round(1 / (1 + math.exp(-abs(c - r))), 4)}
                for p, c, r in zip(pairs, chosen, rejected)]

    probe_rows, general_rows = rows(probes, "test"), rows(general, "retention")
    return {"probe_accuracy": accuracy(probe_rows), "retention_accuracy": accuracy(general_rows),
            "calibration_error": expected_calibration_error(probe_rows + general_rows),
            "probes": probe_rows, "retention": general_rows, "unknowns": [],
            "labels": {"probes": "Held-out pairs ranked right", "retention": "General questions: right answer ranked first"}}


def _encoded(tokenizer, pairs: list[Pair]):
    from datasets import Dataset

    return Dataset.from_list([{"chosen_ids": encode_conversation(tokenizer, p.prompt, p.chosen),
                               "rejected_ids": encode_conversation(tokenizer, p.prompt, p.rejected)} for p in pairs])
