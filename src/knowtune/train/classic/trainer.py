"""Gradient training of a task model, shared by every recipe but `feature`: the model for the task's kind (a
classifier with a new head on the LLM's body, or the causal LM itself for generation), the recipe's choice of
what trains, the optimiser from the settings (SGD / Adam / AdamW over the recipe's param groups), a transformers
Trainer with checkpoints every epoch (resume after a kill), and early stopping on the task's metric on the dev
examples (the best epoch restored at the end)."""

from __future__ import annotations

import math

import torch
from transformers import Trainer

from knowtune.eval.tasks import Task
from knowtune.train.classic.predict import collate, encode_example, predict


class TaskTrainer(Trainer):
    """A Trainer whose evaluation also scores the task on the dev examples with the live model (what early
    stopping and the best epoch follow: `eval_dev_<metric>`), and whose generation-task loss projects onto the
    vocabulary only at answer tokens (teach's `label_only_loss`)."""

    def __init__(self, *args, task: Task, dev=(), labels=(), s=None, opts=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task, self.dev, self.labels, self.s, self.opts = task, list(dev), list(labels), s, opts or {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.task.kind == "generate" and model.training and not return_outputs:
            from knowtune.eval.loss import label_only_loss

            with self.accelerator.autocast():
                return label_only_loss(self.accelerator.unwrap_model(model), inputs, num_items_in_batch)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """A generation task's validation loss, also projected onto the vocabulary only at answer tokens: the
        Trainer's own pass keeps every position's logits (a SQuAD batch of long passages: gigabytes)."""
        if self.task.kind != "generate":
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        from knowtune.eval.loss import label_only_loss

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.accelerator.autocast():
            loss = label_only_loss(self.accelerator.unwrap_model(model), inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.dev:
            with self.accelerator.autocast():
                got = predict(self.task, self.model, self.processing_class, self.dev, self.labels, self.s.max_length,
                              self.opts, self.s.max_new_tokens)
            output.metrics[f"{metric_key_prefix}_dev_{self.task.metric}"] = self.task.score(self.dev, got)[self.task.metric]
        return output


def frozen_in_bf16(model, recipe, bf16: bool) -> None:
    """Under bf16 autocast, a frozen backbone's linear weights stored in bf16 (no cast every step); the head
    that trains stays fp32."""
    from knowtune.models.precision import bf16_linears

    if bf16 and recipe.frozen_base:
        bf16_linears(model, keep=tuple(m for m in (getattr(model, "score", None),) if m is not None))


def build_model(task: Task, s, labels: list[str], log, start: str | None = None):
    """(model, tokenizer): a classifier with a new head (sequence / token tasks) or the causal LM (generation),
    built from `start` (default: the settings' model), with the settings' dropout."""
    from knowtune.models.load import load_for_inference, set_dropout, with_new_head

    start = start or s.model
    if task.kind == "generate":
        model, tokenizer = load_for_inference(start, log=log)
        set_dropout(model.config, s.dropout, model=model)
        return model, tokenizer
    return with_new_head(start, task.kind, len(labels), s.seed, labels, s.dropout, log=log)


def encode_rows(task: Task, tokenizer, examples, labels, s, opts):
    from datasets import Dataset

    rows = [r for ex in examples for r in encode_example(task, ex, tokenizer, labels, s.max_length, opts)]
    return Dataset.from_list(rows)


def train_gradient(recipe, task: Task, s, data, run, opts: dict):
    """Train with `recipe`; returns (trainer, guard). `data` holds train / dev examples and the labels."""
    from transformers import EarlyStoppingCallback, TrainingArguments

    from knowtune.train.callbacks import FiniteGuard, MetricsLog
    from knowtune.train.hf import cpu_training_attention, training_args
    from knowtune.train.optim import make_optimizer, make_scheduler

    start = recipe.start_model(s, data.train, run)
    torch.manual_seed(s.seed)
    model, tokenizer = build_model(task, s, data.labels, run.log, start)
    cpu_training_attention(model)
    train_ds = encode_rows(task, tokenizer, data.train, data.labels, s, opts)
    if not len(train_ds):
        from knowtune.errors import KnowtuneError

        raise KnowtuneError(f"None of the {len(data.train)} training examples fits in {s.max_length} tokens with its answer.",
                            fix="raise --max-length.")
    dev_ds = encode_rows(task, tokenizer, data.dev, data.labels, s, opts) if data.dev else None
    evaluate = dev_ds is not None
    metric = f"dev_{task.metric}"
    args = training_args(TrainingArguments, s, run.dir, len(train_ds), evaluate=evaluate,
                         load_best_model_at_end=evaluate, metric_for_best_model=metric if evaluate else None,
                         greater_is_better=True, remove_unused_columns=False, train_sampling_strategy="group_by_length",
                         save_only_model=False)
    frozen_in_bf16(model, recipe, args.bf16)
    model, groups = recipe.setup(model, s)
    total = args.max_steps if args.max_steps > 0 else math.ceil(len(train_ds) / s.batch_size) * s.epochs
    optimizer = make_optimizer(groups, s)
    scheduler = recipe.scheduler(optimizer, total, s)
    if scheduler is None:
        scheduler = make_scheduler(optimizer, s, total)
    guard = FiniteGuard()
    callbacks = [guard, MetricsLog(run.metrics), *recipe.callbacks(model)]
    if evaluate:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=s.early_stopping_patience))
    trainer = TaskTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                          data_collator=lambda rows: collate(rows, tokenizer.pad_token_id), processing_class=tokenizer,
                          optimizers=(optimizer, scheduler), callbacks=callbacks, task=task, dev=data.dev,
                          labels=data.labels, s=s, opts=opts)
    return trainer, guard
