"""`ulmfit`: Howard & Ruder's (2018) fine-tuning of a language model for a task: gradual unfreezing (the top
layer group in the first epoch, one more each epoch), discriminative learning rates (each group's rate the one
above divided by --ulmfit-factor, 2.6) and the slanted triangular schedule. The schedules themselves, with
their unit test, are in `train/ulmfit.py`. With --ulmfit-lm-epochs the paper's first stage runs first: the
language model tuned on the task's own training text (every weight, discriminative rates, slanted triangular
schedule), saved as the run's lm/ folder, which the classifier is then built on."""

import math

from knowtune.train.classic.base import Recipe
from knowtune.train.optim import decay_groups
from knowtune.train.ulmfit import GradualUnfreezing, discriminative_param_groups, group_rates, layer_groups, slanted_triangular


class ULMFiT(Recipe):
    name = "ulmfit"
    help = "gradual unfreezing (one more layer group from the top each epoch), discriminative rates (/2.6 per group), slanted triangular schedule"

    def setup(self, model, s):
        per_group = s.ulmfit_blocks_per_group or math.ceil(len(model.get_decoder().layers) / max(1, s.epochs - 1))
        self.groups = layer_groups(model, per_group)
        names = {id(p): n for n, p in model.named_parameters()}
        rates = group_rates(s.learning_rate, len(self.groups), s.ulmfit_factor)
        param_groups = []
        for params, lr in zip(self.groups, rates):  # every group is in the optimiser, frozen or not (yet)
            param_groups += decay_groups([(names[id(p)], p) for p in params], s.weight_decay, lr=lr)
        GradualUnfreezing(self.groups).apply(0)
        return model, param_groups

    def callbacks(self, model) -> list:
        return [GradualUnfreezing(self.groups)]

    def start_model(self, s, examples: list, run) -> str:
        return language_model_stage(s, [lm_text(e.input) for e in examples], run) if s.ulmfit_lm_epochs else s.model

    def scheduler(self, optimizer, total_steps: int, s):
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(optimizer, lambda step: slanted_triangular(step, total_steps))


def lm_text(x) -> str:
    """An example's input as running text (a language model's training text): QA's passage then question,
    NER's words joined."""
    if isinstance(x, tuple):
        return f"{x[1]}\n{x[0]}"
    return " ".join(x) if isinstance(x, list) else x


def language_model_stage(s, texts: list[str], run) -> str:
    """ULMFiT's first stage: the start model tuned as a language model on `texts` for `s.ulmfit_lm_epochs`
    epochs (checkpoints in lm-stage/, resumable), saved atomically to the run's lm/ folder; returns that folder.
    A finished stage is not run again."""
    from datasets import Dataset
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import TrainingArguments

    from knowtune.data.augment import TrainItem
    from knowtune.eval.tasks import Task
    from knowtune.io import save_pretrained_atomic
    from knowtune.models.load import load_for_inference
    from knowtune.train.callbacks import MetricsLog
    from knowtune.train.classic.predict import collate
    from knowtune.train.classic.trainer import TaskTrainer
    from knowtune.train.hf import cpu_training_attention, train_resumable, training_args
    from knowtune.train.lifecycle import Run
    from knowtune.train.optim import make_optimizer
    from knowtune.train.tokenize import encode

    folder = run.dir / "lm"
    if (folder / "config.json").exists():
        return str(folder)
    stage = Run(run.dir / "lm-stage", run.settings, run.resume, run.log, run.verbose)
    stage.dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_for_inference(s.model, log=run.log)
    cpu_training_attention(model)
    rows = [encode(tokenizer, TrainItem("text", "", text, "task"), s.max_length)["input_ids"] for text in texts]
    data = Dataset.from_list([{"input_ids": ids, "labels": ids} for ids in rows])
    lm = s.model_copy(update={"epochs": s.ulmfit_lm_epochs})
    args = training_args(TrainingArguments, lm, stage.dir, len(data), remove_unused_columns=False,
                         train_sampling_strategy="group_by_length", save_only_model=False)
    total = math.ceil(len(data) / s.batch_size) * lm.epochs
    per_group = s.ulmfit_blocks_per_group or 1
    optimizer = make_optimizer(discriminative_param_groups(layer_groups(model, per_group), s.learning_rate,
                                                          s.ulmfit_factor, s.weight_decay), s)
    trainer = TaskTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                          data_collator=lambda batch: collate(batch, tokenizer.pad_token_id),
                          optimizers=(optimizer, LambdaLR(optimizer, lambda step: slanted_triangular(step, total))),
                          callbacks=[MetricsLog(stage.metrics)], task=Task("lm", "generate", "loss", "", None, None), s=s)
    run.log(f"ULMFiT stage 1: the language model tuned on the task's {len(texts):,} training texts for {lm.epochs} epoch(s).")
    train_resumable(trainer, stage, run.verbose)
    save_pretrained_atomic(folder, trainer.model, tokenizer)
    return str(folder)
