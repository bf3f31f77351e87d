"""What every method trained with a transformers Trainer (teach, reward, DPO, KTO) shares: the Trainer's
arguments made from the settings groups, the LoRA adapter's config, eager attention for CPU training, a leaner
LoRA forward, and training that resumes from the last complete checkpoint and saves one on Ctrl-C."""

from __future__ import annotations

import math
import types

from knowtune.errors import Interrupted
from knowtune.models.precision import use_bf16
from knowtune.train.optim import hf_optimizer



def training_args(config_cls, s, run_dir, n_examples: int, evaluate: bool = False, **extra):
    """`config_cls` (TrainingArguments or a trl config) from the run, optimisation and precision settings.
    Logging goes to metrics.jsonl and the console's progress display, never to stdout as dicts."""
    import torch

    from knowtune.train.distributed import batch_split, world_size

    steps_per_epoch = math.ceil(n_examples / s.batch_size)
    share, micro = batch_split(s.batch_size, s.micro_batch, world_size())  # each process's rows, rows per pass
    total = s.max_steps if s.max_steps > 0 else steps_per_epoch * s.epochs
    every = s.checkpoint_every
    return config_cls(
        output_dir=str(run_dir / "checkpoints"), num_train_epochs=s.epochs, max_steps=s.max_steps,
        per_device_train_batch_size=micro, per_device_eval_batch_size=micro,
        gradient_accumulation_steps=share // micro,
        learning_rate=s.learning_rate, **hf_optimizer(s), lr_scheduler_type=s.lr_scheduler,
        warmup_steps=int(s.warmup_ratio * total), weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm,
        logging_steps=max(1, steps_per_epoch // 4),
        eval_strategy=("steps" if every else "epoch") if evaluate else "no", eval_steps=every or None,
        save_strategy="steps" if every else "epoch", save_steps=every or 500, save_total_limit=s.save_total_limit,
        restore_callback_states_from_checkpoint=True, seed=s.seed, data_seed=s.seed, report_to="none",
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True,
        bf16=use_bf16(s.bf16), **({"ddp_backend": "gloo"} if world_size() > 1 and not torch.cuda.is_available() else {}),
        ddp_find_unused_parameters=False,  # every trainable weight takes part in every step (LoRA's too)
        **extra)


def lora_config(s, task_type: str = "CAUSAL_LM", **extra):
    from peft import LoraConfig

    targets = "all-linear" if s.lora_targets == "all-linear" else [t.strip() for t in s.lora_targets.split(",")]
    return LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules=targets,
                      task_type=task_type, **extra)


def cpu_training_attention(model) -> None:
    """Eager attention (plain matmuls and softmax) for training on CPU. On 2 EPYC cores, a SmolLM2 training
    step with 8 rows of 80 tokens spent 17% of its time in the backward pass of SDPA's CPU flash kernel, ~6x
    its forward; eager attention made the whole step 18% faster at 80 tokens and 17% at 240 (sdpa with the
    math kernel: 6% and 10%). GPUs keep SDPA. Generation is unaffected (it loads its own model)."""
    import torch

    if not torch.cuda.is_available() and getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation("eager")


def lean_lora(model) -> int:
    """Give every LoRA linear layer of a peft model the leaner forward below; returns how many got it.

    peft's forward casts the layer input to the adapter's dtype (fp32) and autocast casts it back to bf16 for
    each matmul, then scales the adapter's output and adds it in two more passes. Measured on teach: ~3% faster
    on 2 EPYC cores (full runs alternating with peft's forward: 721 / 690 against 688 / 683 tokens/s), a bf16
    step 1.12x faster on an H200; loss and gradients match peft's (tests/test_speed_levers.py)."""
    from peft.tuners.lora.layer import Linear

    layers = [m for m in model.modules() if type(m) is Linear]
    for layer in layers:
        layer.forward = types.MethodType(_lean_lora_forward, layer)
    return len(layers)


def _lean_lora_forward(self, x, *args, **kwargs):
    """`base(x) + scale * B(A(dropout(x)))`, with x cast once to autocast's dtype and the scaled sum done by
    one addmm. Anything but one plain active adapter (disabled, merged, DoRA, an adapter bias, extra arguments)
    runs peft's own forward."""
    import torch

    names = self.active_adapters
    name = names[0] if len(names) == 1 else None
    if (args or kwargs or self.disable_adapters or self.merged or name not in self.lora_A or name in self.lora_variant
            or self.lora_B[name].bias is not None):
        return type(self).forward(self, x, *args, **kwargs)
    device = x.device.type
    if torch.is_autocast_enabled(device):
        x = x.to(torch.get_autocast_dtype(device))
    elif x.dtype != self.lora_A[name].weight.dtype:
        return type(self).forward(self, x)
    result = self.base_layer(x)
    h = self.lora_A[name](self.lora_dropout[name](x))
    flat = torch.addmm(result.reshape(-1, result.shape[-1]), h.reshape(-1, h.shape[-1]), self.lora_B[name].weight.t(),
                       alpha=self.scaling[name])
    return flat.view(result.shape)


def train_resumable(trainer, run, verbose: bool = False) -> None:
    """`trainer.train()` from the run's last complete checkpoint (on --resume), with the console's progress
    display instead of the Trainer's dicts. Ctrl-C saves a full checkpoint (weights, optimiser, RNG) first."""
    from knowtune.progress import quiet_trainer

    quiet_trainer(trainer, verbose=verbose)
    try:
        trainer.train(resume_from_checkpoint=run.checkpoint())
    except KeyboardInterrupt:
        trainer._save_checkpoint(trainer.model, trial=None)  # the Trainer's own full checkpoint
        raise Interrupted(f"Interrupted at step {trainer.state.global_step}; a checkpoint was saved.",
                            fix=f"continue with the same command and --out {run.dir} --resume.")
