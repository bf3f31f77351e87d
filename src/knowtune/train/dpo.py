"""`knowtune dpo`: preference optimisation straight from pairs, with trl's DPOTrainer (Rafailov et al. 2023),
or KTO (Ethayarajh et al. 2024, trl's KTOTrainer) from answers labelled good or bad; as a recipe.

prepare  read pairs (or KTO labels; pairs become one good and one bad answer each), split by prompt
before   greedy answers of the start model to the held-out prompts (and their reward, with --reward)
train    DPO or KTO on a new LoRA adapter; the reference is the start model (the adapter switched off)
after    held-out preference accuracy (the tuned model's implicit reward ranks chosen above rejected),
         greedy answers and reward again, and the knowledge audit before and after
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch
from pydantic import Field

from knowtune.config import RunSettings
from knowtune.data.preference import Pair, json_objects, load_pairs, pairs_to_kto, split_pairs, split_prompts
from knowtune.errors import DataError, KnowtuneError
from knowtune.io import cached_json, read_jsonl, save_pretrained_atomic, write_json, write_text
from knowtune.train.callbacks import FiniteGuard, MetricsLog


class DPOSettings(RunSettings):
    data: list[str] = Field(default_factory=list, description="Preference pairs {prompt, chosen, rejected} (`knowtune feedback export pairs`); with --kto also KTO labels {prompt, completion, label}.")
    kto: bool = Field(False, description="Train with KTO (good / bad answers, no pairing needed) instead of DPO.")
    probes: str | None = Field(None, description="Held-out questions with answer keys (Q&A file) for the knowledge audit before and after.")
    reward: str | None = Field(None, description="A reward model run to score held-out answers before and after (optional).")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of prompts whose pairs are held out (preference accuracy, answers before and after).")
    epochs: int = Field(2, ge=1, description="Passes over the training pairs.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of the LoRA adapter.")
    batch_size: int = Field(8, ge=1, description="Pairs (DPO) or answers (KTO) per optimiser step.")
    beta: float = Field(0.1, gt=0, description="Strength of the pull toward the reference model (higher: stay closer).")
    sft_weight: float = Field(1.0, ge=0, description="DPO only: weight of a language-model loss on the chosen answers added to the DPO loss (RPO, Pang et al. 2024). DPO alone can lower the chosen answer's likelihood along with the rejected one's until the model's text falls apart; this keeps it up. 0 turns it off.")
    max_length: int = Field(384, ge=16, description="Longest prompt + answer in tokens.")
    max_new_tokens: int = Field(48, ge=1, description="Longest greedy answer in the before / after comparison.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps spent warming the learning rate up.")
    audit: bool = Field(True, description="Run the knowledge audit (probes and retention) before and after.")

    def default_run_name(self) -> str:
        return ("kto-" if self.kto else "dpo-") + Path(self.data[0]).stem if self.data else "dpo"


def load_kto_rows(paths: list[str]) -> list[dict]:
    """KTO rows {prompt, completion, label: bool} from files holding either KTO labels or preference pairs."""
    rows, problems = [], []
    for path in paths:
        if not Path(path).exists():
            raise DataError(f"{path}: no such file.", fix="check the path.")
        found: list[str] = []
        objects = list(json_objects(Path(path).read_text(encoding="utf-8-sig"), path, found))
        if objects and "label" not in objects[0][1]:  # preference pairs: load_pairs checks them line by line
            rows += pairs_to_kto(load_pairs([path]))
            continue
        problems += found
        for i, obj in objects:
            if not (isinstance(obj.get("prompt"), str) and isinstance(obj.get("completion"), str)
                    and isinstance(obj.get("label"), bool)):
                problems.append(f"{path}:{i}: needs \"prompt\" and \"completion\" strings and a true/false \"label\"")
                continue
            rows.append({"prompt": obj["prompt"], "completion": obj["completion"], "label": obj["label"]})
    if problems:
        raise DataError(f"{len(problems)} bad KTO line(s):\n" + "\n".join(problems[:20]),
                        fix="fix them (`knowtune feedback export kto` writes this format).")
    if not rows:
        raise DataError("No KTO examples.", fix="give KTO labels or preference pairs.")
    return rows


def _conversational_pairs(pairs: list[Pair]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}],
                               "chosen": [{"role": "assistant", "content": p.chosen}],
                               "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs])


def _conversational_kto(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                               "completion": [{"role": "assistant", "content": r["completion"]}],
                               "label": r["label"]} for r in rows])


def greedy_answers(ref: str, prompts: list[str], max_new_tokens: int, log=print) -> list[str]:
    from knowtune.eval.generate import GenerationSettings, generate_answers
    from knowtune.models.load import load_for_inference

    model, tokenizer = load_for_inference(ref, log=log)
    return generate_answers(model, tokenizer, [("chat", [{"role": "user", "content": p}]) for p in prompts],
                            GenerationSettings(max_new_tokens=max_new_tokens))


def run(s: DPOSettings, pairs: list[Pair] | None = None, log=print) -> dict:
    """DPO (or KTO) on a LoRA adapter, then answers, reward and the knowledge audit before and after."""
    from peft import LoraConfig

    from knowtune.models.load import load_for_inference
    from knowtune.train.alignment import audit_before_after, load_probes
    from knowtune.train.sft import init_run_dir, use_bf16

    if s.kto:
        rows = load_kto_rows(s.data) if pairs is None else pairs_to_kto(pairs)
        train_prompts, held_list = split_prompts([r["prompt"] for r in rows], s.eval_fraction, s.seed)
        train_rows = [r for r in rows if r["prompt"] in set(train_prompts)]
        train_n, held = len(train_rows), []
    else:
        pairs = pairs if pairs is not None else load_pairs(s.data)
        train_pairs, held = split_pairs(pairs, s.eval_fraction, s.seed)
        train_n, held_list = len(train_pairs), sorted({p.prompt for p in held})
    if not train_n:
        raise KnowtuneError("Nothing left to train on after holding prompts out.", fix="lower eval_fraction or add data.")
    probes = load_probes(s.probes)
    run_dir = s.run_dir()
    init_run_dir(run_dir, s, resume=False)
    method = "KTO" if s.kto else "DPO"
    log(f"{method} on {train_n} {'answers' if s.kto else 'pairs'}; {len(held_list)} prompts held out.")

    before = cached_json(run_dir / "answers_before.json",
                     lambda: greedy_answers(s.model, held_list, s.max_new_tokens, log)) if held_list else []
    model, tokenizer = load_for_inference(s.model, log=log)
    bf16 = use_bf16(s.bf16)
    targets = "all-linear" if s.lora_targets == "all-linear" else [t.strip() for t in s.lora_targets.split(",")]
    peft_config = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules=targets,
                             task_type="CAUSAL_LM")
    steps = s.epochs * math.ceil(train_n / s.batch_size)
    common = dict(output_dir=str(run_dir / "checkpoints"), num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
                  per_device_eval_batch_size=s.batch_size, learning_rate=s.learning_rate, lr_scheduler_type="cosine",
                  warmup_steps=int(s.warmup_ratio * steps), logging_steps=max(1, steps // 20), save_strategy="no",
                  report_to="none", seed=s.seed, max_length=s.max_length, beta=s.beta, bf16=bf16,
                  use_cpu=not torch.cuda.is_available(), activation_checkpointing=False, disable_tqdm=False,
                  precompute_ref_log_probs=True, dataloader_num_workers=0)
    guard = FiniteGuard()
    callbacks = [guard, MetricsLog(run_dir / "metrics.jsonl")]
    if s.kto:
        from trl import KTOConfig, KTOTrainer

        trainer = KTOTrainer(model=model, args=KTOConfig(**common, eval_strategy="no"), train_dataset=_conversational_kto(train_rows),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    else:
        from trl import DPOConfig, DPOTrainer

        losses = dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, s.sft_weight]) if s.sft_weight else {}
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, **losses, eval_strategy="no"),
                             train_dataset=_conversational_pairs(train_pairs),
                             eval_dataset=_conversational_pairs(held) if held else None,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    log(f"Training {method} ({'bf16' if bf16 else 'fp32'} precision).")
    trainer.train()
    if guard.diverged_at is not None:
        raise KnowtuneError(f"{method} diverged at step {guard.diverged_at} (NaN/inf).",
                            fix=f"lower the learning rate (now {s.learning_rate}) and run again.")
    held_metrics = trainer.evaluate() if held and not s.kto else {}
    save_pretrained_atomic(run_dir / "adapter", trainer.model, tokenizer)
    del trainer, model
    after = greedy_answers(str(run_dir), held_list, s.max_new_tokens, log) if held_list else []
    result = {"settings": s.model_dump(), "method": method, "train_examples": train_n, "heldout_prompts": len(held_list),
              "heldout_preference_accuracy": held_metrics.get("eval_rewards/accuracies"),
              "heldout_reward_margin": held_metrics.get("eval_rewards/margins"),
              "training": [(r["step"], r["loss"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]}
    if s.reward and held_list:
        from knowtune.train.reward import RewardModel

        rm = RewardModel.load(s.reward, log=log)
        rb, ra = rm.score(held_list, before), rm.score(held_list, after)
        result["reward_before"], result["reward_after"] = statistics.fmean(rb), statistics.fmean(ra)
        result["reward_gain_in_std"] = (result["reward_after"] - result["reward_before"]) / (statistics.pstdev(rb) or 1.0)
    write_json(run_dir / "answers.json", [{"prompt": p, "before": b, "after": a} for p, b, a in zip(held_list, before, after)])
    result["audit"] = audit_before_after(s, run_dir, probes, log) if s.audit else None
    write_json(run_dir / f"{method.lower()}.json", result)
    write_text(run_dir / "report.md", _report(run_dir, result))
    return result


def _report(run_dir: Path, r: dict) -> str:
    from knowtune.eval.report import pct
    from knowtune.train.alignment import audit_lines

    lines = [f"# {r['method']}: {run_dir.name}", "",
             f"Start model `{r['settings']['model']}` + LoRA; {r['train_examples']} training examples, "
             f"{r['heldout_prompts']} held-out prompts.", ""]
    if r.get("heldout_preference_accuracy") is not None:
        lines += [f"Held-out preference accuracy (the tuned model's implicit reward ranks the chosen answer first): "
                  f"{pct(r['heldout_preference_accuracy'])}.", ""]
    if "reward_before" in r:
        lines += [f"Mean reward of greedy held-out answers: {r['reward_before']:+.3f} before, {r['reward_after']:+.3f} after "
                  f"({r['reward_gain_in_std']:+.2f} std).", ""]
    if r["audit"]:
        lines += audit_lines(r["audit"])
    return "\n".join(lines) + "\n"
