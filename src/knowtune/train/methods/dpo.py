"""`knowtune dpo` / `knowtune kto`: preference optimisation straight from pairs, with trl's DPOTrainer
(Rafailov et al. 2023), or KTO (Ethayarajh et al. 2024, trl's KTOTrainer) from answers labelled good or bad;
as a recipe.

prepare  read pairs (or KTO labels; pairs become one good and one bad answer each), split by prompt
train    greedy answers of the start model to the held-out prompts (and their reward, with --reward); DPO or
         KTO on a new LoRA adapter, the reference being the start model (the adapter switched off); then the
         held-out preference accuracy (the tuned model's implicit reward ranks chosen above rejected), greedy
         answers and reward again

The lifecycle (`train/lifecycle.py`) does the rest: run folder, the knowledge audits before and after,
saving, audit.json, the report, --resume.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from knowtune.config import AuditSettings, EpochSettings, GenerationGroup, LoraSettings, OptimSettings, RunSettings
from knowtune.data.preference import Pair, json_objects, load_pairs, pairs_to_kto, split_pairs, split_prompts
from knowtune.errors import DataError, KnowtuneError
from knowtune.eval.audit import AuditSet, probes_file
from knowtune.io import write_json
from knowtune.train.hf import lora_config, train_resumable, training_args
from knowtune.train.lifecycle import Measure, Method, Prepared, Run, Trained


class DPOSettings(RunSettings, EpochSettings, OptimSettings, LoraSettings, AuditSettings, GenerationGroup):
    DEFAULTS = {"epochs": 2, "learning_rate": 5e-5, "warmup_ratio": 0.1, "max_new_tokens": 48}
    data: list[str] = Field(default_factory=list, description="Preference pairs {prompt, chosen, rejected} (`knowtune feedback export pairs`); with --kto also KTO labels {prompt, completion, label}.")
    kto: bool = Field(False, description="Train with KTO (good / bad answers, no pairing needed) instead of DPO.")
    reward: str | None = Field(None, description="A reward model run to score held-out answers before and after (optional).")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of prompts whose pairs are held out (preference accuracy, answers before and after).")
    beta: float = Field(0.1, gt=0, description="Strength of the pull toward the reference model (higher: stay closer).")
    sft_weight: float = Field(1.0, ge=0, description="DPO only: weight of a language-model loss on the chosen answers added to the DPO loss (RPO, Pang et al. 2024). DPO alone can lower the chosen answer's likelihood along with the rejected one's until the model's text falls apart; this keeps it up. 0 turns it off.")
    max_length: int = Field(384, ge=16, description="Longest prompt + answer in tokens.")

    def default_run_name(self) -> str:
        return ("kto-" if self.kto else "dpo-") + Path(self.data[0]).stem if self.data else "dpo"


class KTOSettings(DPOSettings):
    DEFAULTS = {**DPOSettings.DEFAULTS, "kto": True}


@dataclass
class PreferenceData:
    held_prompts: list[str]  # prompts whose answers are compared before and after
    train_pairs: list[Pair] = field(default_factory=list)  # DPO
    held_pairs: list[Pair] = field(default_factory=list)  # DPO: held-out preference accuracy
    train_rows: list[dict] = field(default_factory=list)  # KTO: {prompt, completion, label}


class DPO(Method):
    name = "dpo"
    help = ("Direct preference optimisation (trl's DPOTrainer; KTO with --kto) on a LoRA adapter, then the "
            "held-out preference accuracy, answers (and reward) before and after, and the knowledge audit.")
    Settings = DPOSettings
    reads_ratings = True

    def prepare(self, s: DPOSettings, log) -> Prepared:
        if s.kto:
            rows = load_kto_rows(s.data) if self.pairs is None else pairs_to_kto(self.pairs)
            train_prompts, held = split_prompts([r["prompt"] for r in rows], s.eval_fraction, s.seed)
            keep = set(train_prompts)
            data = PreferenceData(held, train_rows=[r for r in rows if r["prompt"] in keep])
            n, files = len(data.train_rows), {"kto_train": data.train_rows}
        else:
            pairs = self.pairs if self.pairs is not None else load_pairs(s.data)
            train, held_pairs = split_pairs(pairs, s.eval_fraction, s.seed)
            data = PreferenceData(sorted({p.prompt for p in held_pairs}), train, held_pairs)
            n = len(train)
            files = {"pairs_train": [p.to_row() for p in train], "pairs_heldout": [p.to_row() for p in held_pairs]}
        if not n:
            raise KnowtuneError("Nothing left to train on after holding prompts out.", fix="lower eval_fraction or add data.")
        return Prepared(AuditSet(probes_file(s.probes)), data, files,
                        f"{'KTO' if s.kto else 'DPO'} on {n} {'answers' if s.kto else 'pairs'}; "
                        f"{len(data.held_prompts)} prompts held out.")

    def train(self, s: DPOSettings, prep: Prepared, run: Run) -> Trained:
        from knowtune.models.load import load_for_inference
        from knowtune.train.callbacks import FiniteGuard, MetricsLog

        d: PreferenceData = prep.data
        model, tokenizer = load_for_inference(s.model, log=run.log)
        before = run.cached("answers_before.json", lambda: greedy_answers(model, tokenizer, d.held_prompts, s.max_new_tokens))
        guard = FiniteGuard()
        callbacks = [guard, MetricsLog(run.metrics)]
        common = dict(max_length=s.max_length, beta=s.beta, activation_checkpointing=False, precompute_ref_log_probs=True)
        if s.kto:
            from trl import KTOConfig, KTOTrainer

            trainer = KTOTrainer(model=model, args=training_args(KTOConfig, s, run.dir, len(d.train_rows), **common),
                                 train_dataset=_conversational_kto(d.train_rows), processing_class=tokenizer,
                                 peft_config=lora_config(s), callbacks=callbacks)
        else:
            from trl import DPOConfig, DPOTrainer

            losses = dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, s.sft_weight]) if s.sft_weight else {}
            trainer = DPOTrainer(model=model, args=training_args(DPOConfig, s, run.dir, len(d.train_pairs), **common, **losses),
                                 train_dataset=_conversational_pairs(d.train_pairs),
                                 eval_dataset=_conversational_pairs(d.held_pairs) if d.held_pairs else None,
                                 processing_class=tokenizer, peft_config=lora_config(s), callbacks=callbacks)
        run.log(f"Training {'KTO' if s.kto else 'DPO'} ({'bf16' if trainer.args.bf16 else 'fp32'} precision).")
        train_resumable(trainer, run, run.verbose)
        measures = []
        if guard.diverged_at is None:
            measures = self.measures(s, d, trainer, tokenizer, before, run)
        return Trained("adapter", (trainer.model, tokenizer), trainer.state.global_step, trainer.state.epoch,
                       diverged_at=guard.diverged_at, measures=measures)

    def measures(self, s: DPOSettings, d: PreferenceData, trainer, tokenizer, before: list[str], run: Run) -> list[Measure]:
        """Held-out preference accuracy; the tuned model's greedy answers beside the start model's (answers.json),
        and with --reward their mean reward before and after."""
        out = []
        if d.held_pairs:
            held = trainer.evaluate()
            out.append(Measure("Held-out pairs the tuned model prefers the right way (implicit reward)", None,
                               held.get("eval_rewards/accuracies"), "share"))
        after = greedy_answers(trainer.model, tokenizer, d.held_prompts, s.max_new_tokens)
        write_json(run.dir / "answers.json", [{"prompt": p, "before": b, "after": a}
                                              for p, b, a in zip(d.held_prompts, before, after)])
        if s.reward and d.held_prompts:
            from knowtune.train.methods.reward import RewardModel

            rm = RewardModel.load(s.reward, log=run.log)
            rb, ra = rm.score(d.held_prompts, before), rm.score(d.held_prompts, after)
            out.append(Measure("Mean reward of greedy held-out answers (std units)", statistics.fmean(rb), statistics.fmean(ra)))
        return out


class KTO(DPO):
    name = "kto"
    help = ("KTO (trl's KTOTrainer) on a LoRA adapter from answers labelled good or bad (or preference pairs, "
            "each one good and one bad answer); answers (and reward) before and after, and the knowledge audit.")
    Settings = KTOSettings


def load_kto_rows(paths: list[str]) -> list[dict]:
    """KTO rows {prompt, completion, label: bool} from files holding either KTO labels or preference pairs
    (scrubbed under --scrub-pii, as every reader does)."""
    from knowtune.data.privacy import scrub_if_on

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
            rows.append(scrub_if_on({"prompt": obj["prompt"], "completion": obj["completion"], "label": obj["label"]}))
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


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """The model's greedy chat answers to the prompts (the held-out comparison before and after)."""
    from knowtune.eval.generate import GenerationSettings, generate_answers

    if not prompts:
        return []
    return generate_answers(model, tokenizer, [("chat", [{"role": "user", "content": p}]) for p in prompts],
                            GenerationSettings(max_new_tokens=max_new_tokens))
