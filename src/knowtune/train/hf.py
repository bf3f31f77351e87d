"""What every method trained with a transformers Trainer (teach, reward, DPO, KTO) shares: the Trainer's
arguments made from the settings groups, the LoRA adapter's config, bf16 and its memory saving, and training
that resumes from the last complete checkpoint and saves one on Ctrl-C."""

from __future__ import annotations

import math

from knowtune.errors import KnowtuneError

HF_OPTIMIZERS = {"adamw": "adamw_torch_fused", "sgd": "sgd"}  # fused: transformers' default, the arithmetic teach was tuned with


def use_bf16(setting: str) -> bool:
    """bf16 autocast where the hardware runs it fast: a bf16 CUDA GPU, or a CPU with AVX-512-BF16 / AMX."""
    import torch

    if setting in ("true", "false"):
        return setting == "true"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    return bool(cpu and (getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                         or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()))


def training_args(config_cls, s, run_dir, n_examples: int, evaluate: bool = False, **extra):
    """`config_cls` (TrainingArguments or a trl config) from the run, optimisation and precision settings.
    Logging goes to metrics.jsonl and the console's progress display, never to stdout as dicts."""
    import torch

    steps_per_epoch = math.ceil(n_examples / s.batch_size)
    total = s.max_steps if s.max_steps > 0 else steps_per_epoch * s.epochs
    every = s.checkpoint_every
    return config_cls(
        output_dir=str(run_dir / "checkpoints"), num_train_epochs=s.epochs, max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.batch_size,
        learning_rate=s.learning_rate, optim=HF_OPTIMIZERS[s.optimizer], lr_scheduler_type=s.lr_scheduler,
        warmup_steps=int(s.warmup_ratio * total), weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm,
        logging_steps=max(1, steps_per_epoch // 4),
        eval_strategy=("steps" if every else "epoch") if evaluate else "no", eval_steps=every or None,
        save_strategy="steps" if every else "epoch", save_steps=every or 500, save_total_limit=s.save_total_limit,
        restore_callback_states_from_checkpoint=True, seed=s.seed, data_seed=s.seed, report_to="none",
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True,
        bf16=use_bf16(s.bf16), **extra)


def lora_config(s, task_type: str = "CAUSAL_LM", **extra):
    from peft import LoraConfig

    targets = "all-linear" if s.lora_targets == "all-linear" else [t.strip() for t in s.lora_targets.split(",")]
    return LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules=targets,
                      task_type=task_type, **extra)


def frozen_linears_to_bf16(model, keep: tuple = ()) -> int:
    """Store the linear weights that LoRA keeps frozen in bf16; returns how many were cast. `keep`: linear
    modules that will be trained whole (a reward head) and so stay fp32.

    Under bf16 autocast every linear layer computes in bf16 anyway, so the numbers are unchanged; what goes
    is the fp32 copy of each weight and the bf16 copy autocast would cache each step (together ~1.5x the
    model's size). Embeddings, norms and the (often tied) output projection stay fp32; the LoRA matrices are
    created in fp32 by peft.
    """
    import torch

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


def train_resumable(trainer, run, verbose: bool = False) -> None:
    """`trainer.train()` from the run's last complete checkpoint (on --resume), with the console's progress
    display instead of the Trainer's dicts. Ctrl-C saves a full checkpoint (weights, optimiser, RNG) first."""
    from knowtune.progress import quiet_trainer

    quiet_trainer(trainer, verbose=verbose)
    try:
        trainer.train(resume_from_checkpoint=run.checkpoint())
    except KeyboardInterrupt:
        trainer._save_checkpoint(trainer.model, trial=None)  # the Trainer's own full checkpoint
        raise KnowtuneError(f"Interrupted at step {trainer.state.global_step}; a checkpoint was saved.",
                            fix=f"continue with the same command and --out {run.dir} --resume.")
