"""`knowtune teach`: supervised fine-tuning that teaches facts, as a recipe read top to bottom.

prepare  validate the data, group it into facts, split phrasings into train / dev / test, build views
audit    score the base model on the held-out probes and the retention set (cached for --resume)
replay   the base model's own answers to general prompts, mixed in against forgetting
train    trl's SFTTrainer (LoRA or full), loss on answers only, early stopping on dev-probe accuracy,
         the best epoch restored at the end, checkpoints every epoch, NaN guard, Ctrl-C saves
audit    again, on the tuned model; per-fact verdicts, loss curves, report.md / report.html
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import EarlyStoppingCallback
from trl import SFTConfig, SFTTrainer

from knowtune.config import TeachSettings
from knowtune.data import augment, docfacts, documents, knowledge, unknowns
from knowtune.data.validate import load_examples
from knowtune.errors import KnowtuneError
from knowtune.eval import calibration
from knowtune.eval.audit import accuracy, fact_table, retention_probes, run_audit, score_probes, summary
from knowtune.eval.generate import GenerationSettings, generate_answers
from knowtune.eval.grounding import Grounding
from knowtune.io import cached_json, cached_rows, read_jsonl, save_pretrained_atomic, write_json, write_jsonl, write_text
from knowtune.models import load_for_inference
from knowtune.train.callbacks import FiniteGuard, MetricsLog, TargetStop
from knowtune.train.tokenize import encode_all

CHECKPOINT_DONE = "trainer_state.json"  # the Trainer writes it last: a checkpoint without it is incomplete


@dataclass
class Prepared:
    facts: list[knowledge.Fact]
    dev: list[knowledge.Probe]
    test: list[knowledge.Probe]
    items: list[augment.TrainItem]  # knowledge views (replay is added after the base audit)
    unknowns: list[knowledge.Probe] = field(default_factory=list)  # questions the data never answers
    chunks: list = field(default_factory=list)  # document chunks, when documents were given
    coverage: list[dict] = field(default_factory=list)  # views per fact
    grounding: Grounding | None = None  # the taught texts that `--grounded` checks answers against (both audits)


def prepare(s: TeachSettings, log=print) -> Prepared:
    """Validate the data and build facts, splits, probes and training views."""
    doc_paths = [d for d in s.data if documents.is_document(d)]
    data_files = [d for d in s.data if not documents.is_document(d)]
    examples = load_examples(data_files, max_length=s.max_length)[0] if data_files else []
    facts = knowledge.group_facts(examples)
    knowledge.split_facts(facts, seed=s.seed, test_fraction=s.test_fraction)
    knowledge.add_generated_questions(facts, test=s.test_fraction > 0)
    chunks, doc_items, doc_facts = [], [], []
    if doc_paths:
        chunks = documents.chunk_documents(doc_paths, max_chars=s.chunk_chars)
        doc_facts = document_facts(chunks, s, log)  # their own splits: questions generated, no test phrasings
        facts += doc_facts
        doc_items = docfacts.document_items(chunks)
    test = knowledge.probes_for(facts, "test")
    if s.probes:
        probe_examples, _ = load_examples([s.probes], min_examples=1)
        test += knowledge.user_probes(probe_examples, facts)
    # a generated question may happen to be a held-out one: the held-out question wins
    knowledge.drop_generated_overlaps(doc_facts, test)
    dev = knowledge.probes_for(facts, "dev")
    # ask each held-out and dev question also the way people type it (audited as its own group)
    test, dev = (probes + knowledge.add_casual_probes(probes, facts) for probes in (test, dev))
    unknown = unknowns.unknown_probes(facts, s.seed, s.unknown_questions) + (unknowns.read_unknowns(s.unknowns) if s.unknowns else [])
    items = augment.knowledge_items(facts, tuple(s.views), per_entity=s.cloze_per_entity, held_out=test + dev + unknown)
    items += unknowns.abstention_items(facts, round(s.abstain_ratio * len(items)), s.seed, held_out=test + dev + unknown)
    knowledge.assert_no_leak([it.prompt for it in items if it.kind != "text"], test + unknown)
    cover = docfacts.coverage(facts, items) if doc_paths else []
    if cover:
        log(f"Documents: {len(chunks)} chunks from {len({c.file for c in chunks})} file(s). "
            + docfacts.coverage_summary(cover))
    return Prepared(facts, dev, test, items + doc_items, unknown, chunks, cover, Grounding.from_facts(facts))


def document_facts(chunks, s: TeachSettings, log) -> list[knowledge.Fact]:
    """Facts from document chunks: written by the generator when one is set, else by rule."""
    if not s.generator:
        return docfacts.rule_facts(chunks)
    from tqdm.auto import tqdm

    from knowtune.augment.backends import make_generator
    from knowtune.augment.llm import generate_facts

    gen = make_generator(s.generator, s.generator_model, s.generator_api_key_env, s.generator_timeout,
                         s.generator_retries, log=log)
    with tqdm(desc=f"Generating with {s.generator}", unit="answer", leave=False) as bar:
        result = generate_facts(chunks, gen, s.paraphrases, s.questions_per_fact, progress=bar.update, log=log)
    dropped = ", ".join(f"{why} {n}" for why, n in result.dropped.items() if n)
    log(f"Generator: {len(result.facts)} facts ({gen.hits} answers from the cache {gen.path}, {gen.misses} new); "
        f"no usable fact from the generator in {len(result.fallback_chunks)} of {len(chunks)} chunks (rule-based facts cover every chunk)"
        + (f"; dropped: {dropped}." if dropped else "."))
    return result.facts


def run(s: TeachSettings, resume: bool = False, log=print) -> dict:
    """Teach, audit, report. Returns the summary that `teach` prints."""
    run_dir = s.run_dir()
    prep = prepare(s, log)  # validate before anything is written
    init_run_dir(run_dir, s, resume)
    _save_prepared(run_dir, prep)
    log(f"{len(prep.facts)} facts, {len(prep.items)} training views, {len(prep.dev)} dev and "
        f"{len(prep.test)} held-out probes.")
    torch.manual_seed(s.seed)
    model, tokenizer = load_for_inference(s.model, log=log)  # a run as the base: its tuned model
    gen = GenerationSettings(max_new_tokens=s.max_new_tokens)

    before = cached_json(run_dir / "audit_before.json", lambda: _audit(model, tokenizer, prep, gen, s, "base model", log))
    replay = cached_rows(run_dir / "data" / "replay.jsonl", lambda: _replay_answers(model, tokenizer, log))
    items = prep.items + augment.replay_items([(r["prompt"], r["answer"]) for r in replay],
                                              round(s.replay_ratio * len(prep.items)), s.seed)
    write_jsonl(run_dir / "data" / "train.jsonl", [it.to_row() for it in items])

    trainer, guard = _build_trainer(s, model, tokenizer, items, prep, run_dir, gen)
    log(f"Training {s.method} on {len(items)} examples ({trainer.accelerator.mixed_precision} precision, "
        f"{'answer-only' if s.label_only_logits else 'full'} logits).")
    _train(trainer, s, run_dir, resume, log)
    if guard.diverged_at is not None:
        raise KnowtuneError(
            f"Training diverged: the loss or weights became NaN/inf at step {guard.diverged_at}. Nothing "
            "non-finite was saved.", fix=f"lower the learning rate (now {s.learning_rate}) and run again.")
    _save_weights(trainer.model, tokenizer, s, run_dir)
    training = _training_summary(run_dir, trainer)
    del trainer, model
    after, confidence = _audit_saved_run(run_dir, prep, gen, s, log)
    from knowtune.eval.report import write_reports

    result = {"settings": s.model_dump(), "summary": summary(before, after) if s.audit else {},
              "facts": fact_table(before, after) if s.audit else [], "before": before, "after": after,
              "training": training, "coverage": prep.coverage, "confidence": confidence}
    write_json(run_dir / "audit.json", result)
    write_reports(run_dir, result)
    return result


def init_run_dir(run_dir: Path, s, resume: bool) -> None:
    """Create the run folder and write config.yaml; refuse to overwrite another run unless resuming."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if (run_dir / "config.yaml").exists():
            raise KnowtuneError(f"{run_dir} already holds a run.",
                                fix="add --resume to continue it (where the command has it), or choose another folder with --out.")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", s.to_yaml())


def _save_prepared(run_dir: Path, prep: Prepared) -> None:
    data = run_dir / "data"
    write_jsonl(data / "facts.jsonl", [{"id": f.id, "style": f.style, "answer": f.answer, "aliases": f.aliases,
                                        "statements": f.statements,
                                        "phrasings": [{"prompt": p.prompt, "split": p.split, "source": p.source} for p in f.phrasings]}
                                       for f in prep.facts])
    write_jsonl(data / "probes_dev.jsonl", [p.to_row() for p in prep.dev])
    write_jsonl(data / "probes_test.jsonl", [p.to_row() for p in prep.test])
    write_jsonl(data / "unknowns.jsonl", [p.to_row() for p in prep.unknowns])
    if prep.chunks:
        write_jsonl(data / "chunks.jsonl", [c.to_row() for c in prep.chunks])
        write_jsonl(data / "coverage.jsonl", prep.coverage)


def _audit(model, tokenizer, prep: Prepared, gen, s: TeachSettings, what: str, log) -> dict:
    if not s.audit:
        return {"probe_accuracy": None, "retention_accuracy": None, "probes": [], "retention": [], "unknowns": []}
    retention = retention_probes()
    with _progress(len(prep.test) + len(retention) + len(prep.unknowns), f"Auditing the {what}") as bar:
        return run_audit(model, tokenizer, prep.test, retention, gen, progress=bar, unknowns=prep.unknowns,
                         grounding=prep.grounding)


def _audit_saved_run(run_dir: Path, prep: Prepared, gen, s: TeachSettings, log) -> tuple[dict, dict | None]:
    """Audit the saved run exactly as `knowtune ask` / `eval` load it (fp32 base + merged adapter), not the
    training-time model, whose frozen base may be stored in bf16. Loads nothing when the audit is off.
    Also chooses the confidence thresholds on the dev probes (confidence.json) and says what they keep of
    the held-out questions."""
    if not s.audit:
        return _audit(None, None, prep, gen, s, "tuned model", log), None
    tuned, tokenizer = load_for_inference(str(run_dir), log=log)
    after = _audit(tuned, tokenizer, prep, gen, s, "tuned model", log)
    if not prep.dev:
        return after, None
    with _progress(len(prep.dev), "Choosing confidence thresholds on the dev probes") as bar:
        dev_rows = score_probes(tuned, tokenizer, prep.dev, gen, progress=bar)
    chosen = calibration.thresholds(dev_rows)
    write_json(run_dir / calibration.CONFIDENCE_FILE, chosen)
    chosen["held_out"] = {p: calibration.answered(after["probes"], t) for p, t in chosen["by_precision"].items()}
    return after, chosen


def _replay_answers(model, tokenizer, log) -> list[dict]:
    """The base model's greedy answers to the replay prompts; unfinished answers are cut to whole sentences."""
    prompts = [r["prompt"] for r in augment.general_rows("replay_prompts")]
    with _progress(len(prompts), "Writing replay answers with the base model") as bar:
        answers = generate_answers(model, tokenizer, [("chat", [{"role": "user", "content": p}]) for p in prompts],
                                   GenerationSettings(max_new_tokens=80), progress=bar)
    rows = []
    for p, a in zip(prompts, answers):
        n = len(tokenizer(a, add_special_tokens=False)["input_ids"])
        if n >= 78 and "." in a:
            a = a[: a.rfind(".") + 1]
        if a.strip():
            rows.append({"prompt": p, "answer": a.strip()})
    return rows


class _progress:
    """A tqdm bar as a context manager whose value is an `advance(n)` function."""

    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="q", leave=False)

    def __enter__(self):
        return self.bar.update

    def __exit__(self, *exc):
        self.bar.close()


def _build_trainer(s: TeachSettings, model, tokenizer, items, prep: Prepared, run_dir: Path, gen):
    train_ds = encode_all(tokenizer, items, s.max_length)
    dev_views = [augment.TrainItem("chat" if p.style == "chat" else "plain", p.prompt, p.answer, "dev") for p in prep.dev]
    eval_ds = encode_all(tokenizer, dev_views, s.max_length) if dev_views else None
    metric = "dev_accuracy" if prep.dev else "loss"
    steps_per_epoch = math.ceil(len(train_ds) / s.batch_size)
    cfg = SFTConfig(
        output_dir=str(run_dir / "checkpoints"), num_train_epochs=s.epochs, max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.batch_size,
        learning_rate=s.learning_rate, lr_scheduler_type=s.lr_scheduler,
        warmup_steps=int(s.warmup_ratio * steps_per_epoch * s.epochs), weight_decay=s.weight_decay,
        logging_steps=max(1, steps_per_epoch // 4), eval_strategy="epoch" if eval_ds is not None else "no",
        save_strategy="epoch", save_total_limit=s.save_total_limit, load_best_model_at_end=eval_ds is not None and s.keep_best,
        restore_callback_states_from_checkpoint=True,
        metric_for_best_model=metric, greater_is_better=metric != "loss", seed=s.seed, data_seed=s.seed,
        report_to="none", max_length=s.max_length, completion_only_loss=True, pad_to_multiple_of=16,
        train_sampling_strategy="group_by_length", use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, disable_tqdm=False, save_only_model=False, bf16=use_bf16(s.bf16),
        activation_checkpointing=s.gradient_checkpointing,  # transformers 5 name; trl turns it on by default
    )
    peft_config = None
    if s.method == "lora":
        if cfg.bf16:
            frozen_linears_to_bf16(model)
        targets = "all-linear" if s.lora_targets == "all-linear" else [t.strip() for t in s.lora_targets.split(",")]
        peft_config = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                 target_modules=targets, task_type="CAUSAL_LM")
    guard = FiniteGuard()
    callbacks = [guard, MetricsLog(run_dir / "metrics.jsonl")]
    if eval_ds is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=s.early_stopping_patience))
        if prep.dev:
            callbacks.append(TargetStop("eval_dev_accuracy", s.target_dev_accuracy, s.min_epochs))
    trainer = ProbeSFTTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                              processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
                              dev_probes=prep.dev, generation=gen, label_only_logits=s.label_only_logits)
    return trainer, guard


def frozen_linears_to_bf16(model, keep: tuple = ()) -> int:
    """Store the linear weights that LoRA keeps frozen in bf16; returns how many were cast. `keep`: linear
    modules that will be trained whole (a reward head) and so stay fp32.

    Under bf16 autocast every linear layer computes in bf16 anyway, so the numbers are unchanged; what goes
    is the fp32 copy of each weight and the bf16 copy autocast would cache each step (together ~1.5x the
    model's size). Embeddings, norms and the (often tied) output projection stay fp32; the LoRA matrices are
    created in fp32 by peft.
    """
    skip = [model.get_output_embeddings(), *keep]
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not any(module is k for k in skip) and module.weight.dtype == torch.float32:
            module.to(torch.bfloat16)
            n += 1
    # Weights loaded from safetensors are views of a memory-mapped file that stays mapped (and resident once
    # read) while any tensor still points into it: copy the fp32 rest out so the mapping can go.
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.dtype == torch.float32:
                t.data = t.data.clone()
    return n


def label_only_loss(model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """Causal-LM loss that runs the vocabulary projection only where a label follows.

    Short Q&A rows are mostly prompt (system prompt, template, question): projecting every position onto a
    49k vocabulary and taking its log-softmax is the costliest wasted work of a plain SFT step.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers live inside it
    hidden = base.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                position_ids=inputs.get("position_ids"), use_cache=False).last_hidden_state  # (B, T, d)
    targets = inputs["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at position t
    keep = targets != -100
    logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()  # (N, V), N = answer tokens
    n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum") / torch.as_tensor(n).clamp(min=1)


def use_bf16(setting: str) -> bool:
    """bf16 autocast where the hardware runs it fast: a bf16 CUDA GPU, or a CPU with AVX-512-BF16 / AMX."""
    if setting in ("true", "false"):
        return setting == "true"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    return bool(cpu and (getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                         or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()))


class ProbeSFTTrainer(SFTTrainer):
    """SFTTrainer whose evaluation also scores the dev probes by greedy generation, so early stopping and
    best-checkpoint selection follow what the audit measures (`eval_dev_accuracy`), not only loss."""

    def __init__(self, *args, dev_probes=None, generation=None, label_only_logits=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.dev_probes, self.generation = dev_probes or [], generation
        self.label_only_logits = label_only_logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not (self.label_only_logits and model.training and not return_outputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # The loss calls the decoder directly, bypassing the autocast that accelerate wraps around forward().
        with self.accelerator.autocast():
            return label_only_loss(self.accelerator.unwrap_model(model), inputs, num_items_in_batch)

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.dev_probes:
            with self.accelerator.autocast():  # the frozen base may be stored in bf16
                rows = score_probes(self.model, self.processing_class, self.dev_probes, self.generation)
            output.metrics[f"{metric_key_prefix}_dev_accuracy"] = accuracy(rows)
        return output


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that was written to the end; incomplete ones (a run killed mid-save) are removed."""
    if not folder.exists():
        return None
    found = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[-1]))
    for ckpt in reversed(found):
        if (ckpt / CHECKPOINT_DONE).exists():
            return str(ckpt)
        shutil.rmtree(ckpt, ignore_errors=True)
    return None


def _train(trainer, s: TeachSettings, run_dir: Path, resume: bool, log) -> None:
    ckpt = last_complete_checkpoint(run_dir / "checkpoints") if resume else None
    if resume:
        log(f"Resuming from {ckpt}." if ckpt else "No complete checkpoint yet: training from the start.")
    try:
        trainer.train(resume_from_checkpoint=ckpt)
    except KeyboardInterrupt:
        trainer._save_checkpoint(trainer.model, trial=None)  # the Trainer's own full checkpoint (weights, optimiser, RNG)
        raise KnowtuneError(f"Interrupted at step {trainer.state.global_step}; a checkpoint was saved.",
                            fix=f"continue with `knowtune teach {' '.join(s.data)} --out {run_dir} --resume`.")


def _save_weights(model, tokenizer, s: TeachSettings, run_dir: Path) -> Path:
    return save_pretrained_atomic(run_dir / ("adapter" if s.method == "lora" else "model"), model, tokenizer)


def _training_summary(run_dir: Path, trainer) -> dict:
    rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    dev = [(r["epoch"], r["eval_dev_accuracy"]) for r in rows if "eval_dev_accuracy" in r]
    overfit, note = overfitting_verdict(train, evals, dev)
    return {"steps": trainer.state.global_step, "epochs": trainer.state.epoch,
            "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
            "train_loss": train, "eval_loss": evals, "dev_accuracy": dev, "overfitting": overfit,
            "overfitting_note": note}


def overfitting_verdict(train: list, evals: list, dev: list) -> tuple[bool, str]:
    """(flag, one sentence). Flagged when validation loss ended 10% above its best while training loss fell.
    With dev probes, the sentence also says whether held-out accuracy fell: a rising loss with steady
    accuracy means over-confidence on the answers it gets wrong, not lost knowledge."""
    if len(evals) < 2 or len(train) < 2:
        return False, "too few evaluations to judge overfitting."
    best = min(v for _, v in evals)
    if not (evals[-1][1] > 1.1 * best and train[-1][1] < train[0][1]):
        return False, "no sign of overfitting: validation loss stayed within 10% of its best."
    if dev and dev[-1][1] < max(a for _, a in dev):
        return True, ("overfitting: validation loss rose while training loss fell, and dev-probe accuracy fell "
                      "from its best (the best epoch was kept).")
    if dev:
        return True, ("validation loss rose while training loss fell (over-confidence on the answers it gets "
                      "wrong), but dev-probe accuracy did not fall.")
    return True, "overfitting: validation loss rose while training loss fell."
