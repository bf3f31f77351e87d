"""`knowtune teach`: supervised fine-tuning that teaches facts, as a recipe read top to bottom.

prepare  validate the data, group it into facts, split phrasings into train / dev / test, build views
train    the base model's own answers to general prompts mixed in against forgetting (replay); trl's
         SFTTrainer (LoRA or full), loss on answers only, early stopping on dev-probe accuracy, the best epoch
         restored at the end, checkpoints every epoch

The lifecycle (`train/lifecycle.py`) does the rest: run folder, the audits before and after, saving,
audit.json, the report, --resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from knowtune.config import (AuditSettings, EpochSettings, GenerationGroup, LoraSettings, OptimSettings, RunSettings,
                             SupervisedSettings)
from knowtune.data import augment, docfacts, documents, knowledge, unknowns
from knowtune.data.validate import load_examples
from knowtune.errors import KnowtuneError
from knowtune.eval.audit import AuditSet, probes_file
from knowtune.eval.grounding import Grounding
from knowtune.io import cached_rows, write_jsonl
from knowtune.models.load import qlora_possible
from knowtune.models.precision import bf16_linears, use_bf16
from knowtune.train.distributed import all_cores, is_main, main_first, to_save, world_size
from knowtune.train.hf import cpu_training_attention, lean_lora, lora_config, train_resumable, training_args
from knowtune.train.lifecycle import Method, Prepared, Run, Trained
from knowtune.train.private import Budget, CanarySettings, PrivacySettings, plan
from knowtune.train.replay import general_answers


class TeachSettings(RunSettings, EpochSettings, OptimSettings, LoraSettings, AuditSettings, GenerationGroup,
                    SupervisedSettings, PrivacySettings, CanarySettings):
    DEFAULTS = {"epochs": 6, "learning_rate": 1e-3, "batch_size": 8}
    data: list[str] = Field(default_factory=list, description="Training data: Q&A, chat, prompt/completion, instruction or knowledge-pack files (JSONL, CSV, Parquet, YAML), and documents (.txt, .md, .html, .pdf files or folders of them).")
    method: Literal["lora", "qlora", "full"] = Field("lora", description="lora: train small adapter matrices (fast, keeps the base intact); qlora: the same with the frozen base stored in 4 bits (NF4, bitsandbytes; a CUDA GPU only): about a quarter of the memory for the weights; full: update every weight.")
    unknowns: str | None = Field(None, description="Questions about your subject that your data never answers (JSONL, one {\"question\": ...} a line): the audit checks the model declines them instead of inventing an answer.")
    unknown_questions: int = Field(30, ge=0, description="Unknown questions knowtune makes from the facts for the audit (their names swapped for invented ones, or for names the data gives no such answer); 0: none.")
    abstain_ratio: float = Field(0.0, ge=0, description="Abstention views per knowledge view (off by default: at 0.1 a 135M model refused a third of the questions it had learned, measured on the generality benchmark; try 0.02-0.05 on larger models): near-miss questions the data never answers (made from training questions, never from audit ones) answered with a short refusal naming the subject. 0: off.")
    views: list[Literal["answer", "casual", "template", "statement", "cloze", "reverse", "context", "profile", "record"]] = Field(["answer", "casual", "template", "statement", "cloze", "reverse"], description="Views each fact is taught in: answer (question -> full statement), casual (the question as people type it: its keyword form, -> full statement), template (question in a template -> short answer), statement (plain sentence), cloze (questions over every name, number, date and title of a statement: both directions), reverse (the answer first, or the description before the name), context (opt-in, documents only: the question with its passage in a retrieval prompt, so the tuned model also reads retrieved context; better with RAG, worse closed-book), profile (every name stated in two or more statements: `Tell me about <name>.` answered with all of them, binding each entity to its own attributes), record (opt-in: each training record's own question and answer as written, one row per record: what --dp-epsilon trains, so a run without DP can be compared with it).")
    chunk_chars: int = Field(1200, ge=200, description="Longest document chunk in characters (chunks hold whole paragraphs or sentences).")
    generator: str | None = Field(None, description="Who writes facts and questions from documents: an OpenAI-compatible endpoint (http://host:port/v1) or a local model (alias, folder, run). None: the offline rule-based path.")
    generator_model: str = Field("default", description="Model name to ask the generator endpoint for.")
    generator_api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable that holds the generator endpoint's API key (if it needs one).")
    generator_timeout: float = Field(120.0, gt=0, description="Seconds to wait for one generator answer before retrying.")
    generator_retries: int = Field(4, ge=0, description="Retries per generator request (exponential backoff) on timeouts, HTTP 429/5xx and malformed answers.")
    paraphrases: int = Field(3, ge=0, description="Paraphrased statements the generator writes per fact.")
    questions_per_fact: int = Field(3, ge=1, description="Questions the generator writes per fact and direction.")
    cloze_per_entity: int = Field(8, ge=0, description="Most cloze (and, separately, reverse) views per entity across the data set.")
    replay_ratio: float = Field(0.3, ge=0, description="Replay examples (the base model's own answers to general prompts) per knowledge example, against forgetting.")
    test_fraction: float = Field(0.34, ge=0, lt=1, description="Share of each fact's phrasings held out for the audit (0: none; audit only the --probes file).")

    def default_run_name(self) -> str:
        return Path(self.data[0]).stem


@dataclass
class Knowledge:
    """Teach's prepared data: the facts, their training views and the dev probes early stopping reads."""
    facts: list[knowledge.Fact]
    dev: list[knowledge.Probe]
    test: list[knowledge.Probe]
    items: list[augment.TrainItem]  # knowledge views (replay is added when training starts)
    unknowns: list[knowledge.Probe] = field(default_factory=list)  # questions the data never answers
    chunks: list = field(default_factory=list)  # document chunks, when documents were given
    coverage: list[dict] = field(default_factory=list)  # views per fact
    grounding: Grounding | None = None  # the taught texts that `--grounded` checks answers against
    records: list[augment.TrainItem] = field(default_factory=list)  # DP-SGD: one row per training record, as given
    canaries: list = field(default_factory=list)  # eval.memorisation.Canary: random secrets inserted k times
    budget: Budget | None = None  # DP-SGD's plan


def prepare_knowledge(s: TeachSettings, log=print) -> Knowledge:
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
    test += probes_file(s.probes, facts)
    # a generated question may happen to be a held-out one: the held-out question wins
    knowledge.drop_generated_overlaps(doc_facts, test)
    dev = knowledge.probes_for(facts, "dev")
    # ask each held-out and dev question also the way people type it (audited as its own group)
    test, dev = (probes + knowledge.add_casual_probes(probes, facts) for probes in (test, dev))
    unknown = unknowns.unknown_probes(facts, s.seed, s.unknown_questions) + (unknowns.read_unknowns(s.unknowns) if s.unknowns else [])
    views = tuple(v for v in s.views if v != "record")
    items = augment.knowledge_items(facts, views, per_entity=s.cloze_per_entity, held_out=test + dev + unknown) if views else []
    if "record" in s.views and not s.dp_epsilon:
        items += record_items(examples, facts)
    items += unknowns.abstention_items(facts, round(s.abstain_ratio * len(items)), s.seed, held_out=test + dev + unknown)
    knowledge.assert_no_leak([it.prompt for it in items if it.kind != "text"], test + unknown)
    cover = docfacts.coverage(facts, items) if doc_paths else []
    if cover:
        log(f"Documents: {len(chunks)} chunks from {len({c.file for c in chunks})} file(s). "
            + docfacts.coverage_summary(cover))
    k = Knowledge(facts, dev, test, items + doc_items, unknown, chunks, cover, Grounding.from_facts(facts))
    if s.canaries:
        from knowtune.eval.memorisation import make_canaries

        k.canaries = make_canaries(s.seed, s.canary_repeats, s.canaries)
    if s.dp_epsilon:
        private_knowledge(k, examples, facts, s, log)
    return k


def private_knowledge(k: Knowledge, examples, facts, s: TeachSettings, log) -> None:
    """DP-SGD's data: every record trained as written, one row each; the held-out questions only from --probes
    (holding out a record's question would be a choice the data makes, which the accountant does not see); no
    dev probes (no early stopping); the budget over the records."""
    from knowtune.errors import DataError

    if k.chunks:
        raise DataError("--dp-epsilon cannot train documents: a document is cut into many chunks, and the privacy "
                        "unit would be a chunk, not the document.",
                        fix="train documents without --dp-epsilon, or give their facts as Q&A records.")
    k.records = private_records(examples, s)
    k.test = [p for p in k.test if p.origin == "probe-file"]
    k.dev = []
    knowledge.assert_no_leak([it.prompt for it in k.records], k.test + k.unknowns)
    copies = sum(c.repeats for c in k.canaries)
    rows = len(k.records) + copies + round(s.replay_ratio * len(k.records))
    k.budget = plan(s, rows, s.epochs, units=len(k.records))
    log(f"DP-SGD: {len(k.records)} records trained as written, one privacy unit each (no augmented views: a view "
        f"made from several records would break the per-record guarantee); held-out questions from --probes only "
        f"({len(k.test)}); noise multiplier {k.budget.noise_multiplier:.3f} for epsilon {s.dp_epsilon:g} at delta "
        f"{k.budget.delta:.2g}; {s.epochs} epochs, no early stopping (choosing an epoch by the data is not accounted "
        "for).")


def private_records(examples, s: TeachSettings) -> list[augment.TrainItem]:
    """DP-SGD's training rows: each record's own question and answer, one row per record (a record is one line
    of a data file), every record but those the user marked held out. Refuses, naming file and line, a record
    that holds several examples (one privacy unit must be one row) or one longer than --max-length."""
    from knowtune.errors import DataError
    from knowtune.eval.generate import token_counter

    by_record: dict[str, list] = {}
    for ex in examples:
        by_record.setdefault(ex.source, []).append(ex)
    several = [f"{src}: {len(exs)} examples in one record" for src, exs in by_record.items() if len(exs) > 1]
    if several:
        raise DataError.listing("data for DP-SGD", several,
                                fix="under --dp-epsilon each record is one privacy unit and must be one question and "
                                    "answer: give each its own line, or train without --dp-epsilon.")
    kept = [ex for ex in examples if not ex.pinned_test]
    count, how = token_counter(s.model)
    long = [f"{ex.source}: {n} tokens ({how})" for ex in kept if (n := count(ex)) > s.max_length]
    if long:
        raise DataError.listing(f"data for DP-SGD (records longer than --max-length {s.max_length})", long,
                                fix="under --dp-epsilon a record is one privacy unit and cannot be truncated or split "
                                    "across rows: raise --max-length, or shorten those records.")
    return [record_item(ex) for ex in kept]


def trained_examples(examples, facts: list[knowledge.Fact]) -> list:
    """The examples a `record` view trains: every one whose question is not held out (train and dev phrasings;
    with --test-fraction 0, every record, as DP-SGD trains them), in file order."""
    held = {knowledge.prompt_key(p.prompt) for f in facts for p in f.split("test")}
    return [ex for ex in examples if knowledge.prompt_key(ex.prompt) not in held and not ex.pinned_test]


def record_item(ex) -> augment.TrainItem:
    """One record's question and answer as written: one training row."""
    return augment.TrainItem(ex.style, ex.prompt, ex.answer, f"record:{ex.source}", "record")


def record_items(examples, facts: list[knowledge.Fact]) -> list[augment.TrainItem]:
    """The `record` view: each trained example's question and answer as written, one row each."""
    return [record_item(ex) for ex in trained_examples(examples, facts)]


def document_facts(chunks, s: TeachSettings, log) -> list[knowledge.Fact]:
    """Facts from document chunks: written by the generator when one is set, else by rule."""
    if not s.generator:
        return docfacts.rule_facts(chunks)
    from knowtune.augment.backends import make_generator
    from knowtune.augment.llm import generate_facts
    from knowtune.progress import phase

    gen = make_generator(s.generator, s.generator_model, s.generator_api_key_env, s.generator_timeout,
                         s.generator_retries, log=log)
    with phase(f"Generating with {s.generator}", unit="answer") as advance:
        result = generate_facts(chunks, gen, s.paraphrases, s.questions_per_fact, progress=advance, log=log)
    dropped = ", ".join(f"{why} {n}" for why, n in result.dropped.items() if n)
    log(f"Generator: {len(result.facts)} facts ({gen.hits} answers from the cache {gen.path}, {gen.misses} new); "
        f"no usable fact from the generator in {len(result.fallback_chunks)} of {len(chunks)} chunks (rule-based facts cover every chunk)"
        + (f"; dropped: {dropped}." if dropped else "."))
    return result.facts


class Teach(Method):
    name = "teach"
    help = ("Teach a model the facts in DATA (data files, or documents: .txt .md .html .pdf files and folders): "
            "validate, turn documents into facts, augment (both directions), split, audit the base model, train "
            "with early stopping on held-out phrasings, audit again, write the report. Prints a before/after table.")
    Settings = TeachSettings
    data_parallel = True
    callbacks: tuple = ()  # more TrainerCallbacks for the trainer (`knowtune tune`'s pruner sets them)

    def prepare(self, s: TeachSettings, log) -> Prepared:
        if not s.data:
            raise KnowtuneError("No data files given.", fix="run `knowtune teach FILE...` (see `knowtune teach --help`).")
        if s.dp_epsilon and s.method != "lora":
            raise KnowtuneError(f"--dp-epsilon cannot train --method {s.method}: Opacus would need a per-record gradient "
                                "of every weight (135 million per record for the default model) and cannot clip the "
                                "embedding the output layer shares with the input.",
                                fix="use --method lora with --dp-epsilon.")
        if s.method == "qlora":
            qlora_possible(s.model)
        if s.dp_epsilon and world_size() > 1:
            raise KnowtuneError("--dp-epsilon trains in one process: its privacy accounting follows one sampler.",
                                fix="leave out --processes (or the launcher) with --dp-epsilon.")
        k = prepare_knowledge(s, log)
        files = {"facts": [{"id": f.id, "style": f.style, "answer": f.answer, "aliases": f.aliases,
                            "statements": f.statements,
                            "phrasings": [{"prompt": p.prompt, "split": p.split, "source": p.source} for p in f.phrasings]}
                           for f in k.facts],
                 "probes_dev": [p.to_row() for p in k.dev], "probes_test": [p.to_row() for p in k.test],
                 "unknowns": [p.to_row() for p in k.unknowns]}
        if k.chunks:
            files |= {"chunks": [c.to_row() for c in k.chunks], "coverage": k.coverage}
        if k.canaries:
            files["canaries"] = [c.to_row() for c in k.canaries]
        return Prepared(AuditSet(k.test, k.unknowns, k.dev, k.grounding, s.max_new_tokens), k, files,
                        f"{len(k.facts)} facts, {len(k.items)} training views, {len(k.dev)} dev and "
                        f"{len(k.test)} held-out probes.", k.coverage)

    def train(self, s: TeachSettings, prep: Prepared, run: Run) -> Trained:
        from knowtune.models import load_for_answering, load_for_inference
        from knowtune.models.load import load_4bit

        k: Knowledge = prep.data
        if s.method == "qlora":
            model, tokenizer = load_4bit(s.model, log=run.log)
        else:
            model, tokenizer = load_for_inference(s.model, log=run.log)  # a run as the base: its tuned model
        # the start model's answers, written by a copy loaded for answering (bf16 where fast), as the audit answers
        with main_first(), all_cores():  # across processes: the main one writes them, the others read them
            replay = cached_rows(run.dir / "data" / "replay.jsonl",
                                 lambda: general_answers(*load_for_answering(s.model, log=run.log)))
        taught = k.records if k.budget else k.items
        items = taught + augment.replay_items([(r["prompt"], r["answer"]) for r in replay],
                                              round(s.replay_ratio * len(taught)), s.seed)
        # canaries: each inserted as its own record, k times (never through the views, which would multiply it)
        items += [augment.TrainItem("chat", c.prompt(), c.answer(), f"canary:{c.id}", "canary")
                  for c in k.canaries for _ in range(c.repeats)]
        if is_main():
            write_jsonl(run.dir / "data" / "train.jsonl", [it.to_row() for it in items])
        if k.budget:
            return train_teach_private(s, model, tokenizer, items, k.budget, run)
        trainer, guard = build_trainer(s, model, tokenizer, items, k.dev, run.dir, callbacks=self.callbacks)
        run.log(f"Training {s.method} on {len(items)} examples ({trainer.accelerator.mixed_precision} precision, "
                f"{'answer-only' if trainer.label_only_logits else 'full'} logits"
                + (f", {world_size()} processes" if world_size() > 1 else "") + ").")
        train_resumable(trainer, run, run.verbose)
        st = trainer.state
        return Trained("model" if s.method == "full" else "adapter", to_save(trainer, tokenizer, run.dir), st.global_step,
                       st.epoch, diverged_at=guard.diverged_at, best_checkpoint=st.best_model_checkpoint,
                       best_metric=st.best_metric)


def train_teach_private(s: TeachSettings, model, tokenizer, items, budget: Budget, run: Run) -> Trained:
    """LoRA trained with DP-SGD (`train/private.py`) on one row per record, loss on the answers."""
    from peft import get_peft_model

    from knowtune.eval.loss import label_only_loss
    from knowtune.eval.report import privacy_sentence
    from knowtune.train.classic.predict import collate
    from knowtune.train.optim import decay_groups, make_optimizer
    from knowtune.train.private import trainable_weights, train_private
    from knowtune.train.tokenize import encode_labelled

    cpu_training_attention(model)
    if use_bf16(s.bf16):
        bf16_linears(model)  # the frozen weights stored in bf16, as the Trainer path does; LoRA's stay fp32
    model = get_peft_model(model, lora_config(s))  # before Opacus hooks the modules (opacus issue 820)
    rows = [encode_labelled(tokenizer, it, s.max_length) for it in items]
    budget = train_private(model, rows, lambda b: collate(b, tokenizer.pad_token_id, PAD_TO),
                           lambda _m, batch: label_only_loss(model, batch, per_row=True), s, run, budget,
                           lambda m: make_optimizer(decay_groups(trainable_weights(m).items(), s.weight_decay), s))
    run.log(privacy_sentence(budget.to_json()))
    return Trained("adapter", (model, tokenizer), budget.steps, float(budget.epochs), privacy=budget.to_json())


# Rows of a batch are padded to a multiple of 16 tokens. That wastes 14% of the tokens on the example pack
# (length-grouped batches of ~60-token rows), and padding only to the longest row trained 8% faster
# (teach_speed --ablate), but raised peak memory by ~350 MiB (2.5 -> 2.86 GiB): more distinct shapes.
PAD_TO: int | None = 16


def build_trainer(s, model, tokenizer, items, dev: list[knowledge.Probe], run_dir: Path, trainer_cls=None,
                  callbacks: tuple = (), **trainer_kwargs):
    """The SFT trainer of a teach run (or of a method that trains as teach does: distill, whose `trainer_cls`
    adds the teacher), and its NaN guard. LoRA when the settings say `method: lora`, else every weight.
    `callbacks`: more TrainerCallbacks (a tuning trial's pruner)."""
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig

    from knowtune.eval.generate import GenerationSettings
    from knowtune.train.callbacks import FiniteGuard, MetricsLog, TargetStop
    from knowtune.train.methods.teach_trainer import ProbeSFTTrainer
    from knowtune.train.tokenize import encode_all

    train_ds = encode_all(tokenizer, items, s.max_length)
    dev_views = [augment.TrainItem("chat" if p.style == "chat" else "plain", p.prompt, p.answer, "dev") for p in dev]
    eval_ds = encode_all(tokenizer, dev_views, s.max_length) if dev_views else None
    metric = "dev_accuracy" if dev else "loss"
    cfg = training_args(
        SFTConfig, s, run_dir, len(train_ds), evaluate=eval_ds is not None,
        load_best_model_at_end=eval_ds is not None and s.keep_best, metric_for_best_model=metric,
        greater_is_better=metric != "loss", max_length=s.max_length, completion_only_loss=True, pad_to_multiple_of=PAD_TO,
        train_sampling_strategy="group_by_length", save_only_model=False,
        activation_checkpointing=s.gradient_checkpointing)  # transformers 5 name; trl turns it on by default
    peft_config = None
    cpu_training_attention(model)
    if getattr(s, "method", "full") == "qlora":  # 4-bit frozen weights: peft's preparation, no bf16 copy
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=s.gradient_checkpointing)
        peft_config = lora_config(s)
    elif getattr(s, "method", "full") == "lora":
        if cfg.bf16:
            bf16_linears(model)
        peft_config = lora_config(s)
    guard = FiniteGuard()
    callbacks = [guard, MetricsLog(run_dir / "metrics.jsonl"), *callbacks]
    if eval_ds is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=s.early_stopping_patience))
        if dev:
            callbacks.append(TargetStop("eval_dev_accuracy", s.target_dev_accuracy, s.min_epochs))
    trainer = (trainer_cls or ProbeSFTTrainer)(
        model=model, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        peft_config=peft_config, callbacks=callbacks, dev_probes=dev,
        generation=GenerationSettings(max_new_tokens=s.max_new_tokens),
        label_only_logits=s.label_only_logits and world_size() == 1,  # its loss bypasses DDP's wrapper
        **trainer_kwargs)
    lean_lora(trainer.model)
    return trainer, guard
