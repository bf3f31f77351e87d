"""DP-SGD with Opacus: training whose privacy guarantee holds per training record, with the epsilon actually spent.

    plan      before training, from the number of records, the batch size and the epochs: the sample rate, delta
              (default the smaller of 1e-5 and 1/N^1.1) and the noise multiplier that reaches the target epsilon
              (Opacus's accountant); settings that would make the guarantee meaningless are refused here
    wrap      Opacus's PrivacyEngine on the trainable weights: per-sample gradients, each clipped to
              `dp_max_grad_norm`, Gaussian noise, and Poisson sampling of the records (without it the accountant's
              epsilon is not a guarantee); physical batches of `--micro-batch` rows (8 by default)
    train     epochs of noisy steps, a checkpoint after each (weights, optimiser, the accountant's history, the epoch)
              so a killed run resumes at the last whole epoch with the same sampling and noise
    spent     the accountant's epsilon at delta, written to audit.json and the report

Why our own loop rather than a transformers Trainer: the Trainer draws its batches with its own sampler and
averages the loss over the batch's tokens; DP-SGD needs Poisson-sampled records, a loss per record (a record's
gradient may depend on that record alone), and Opacus's optimiser in place of the Trainer's clipping. trl has no
DP trainer. Opacus's own examples train with a plain loop like this one.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, Field

from knowtune.errors import KnowtuneError
from knowtune.io import append_jsonl
from knowtune.train.lifecycle import read_checkpoint, write_checkpoint


class PrivacySettings(BaseModel):
    """DP-SGD's settings (teach with LoRA, task train with the dense head)."""
    dp_epsilon: float | None = Field(None, gt=0, description="Train with DP-SGD (Opacus) to this privacy budget epsilon (smaller: more private; 1-8 is the usual range). The noise is found for it; the epsilon actually spent is reported. None: no differential privacy.")
    dp_delta: float | None = Field(None, gt=0, lt=1, description="DP-SGD's delta (the chance the guarantee fails); default the smaller of 1e-5 and 1/N^1.1 for N training records. Must be below 1/N.")
    dp_max_grad_norm: float = Field(1.0, gt=0, description="DP-SGD: each record's gradient is clipped to this norm before the noise is added.")
    dp_accountant: Literal["prv", "rdp"] = Field("prv", description="DP-SGD's privacy accountant: prv (Gopi et al. 2021, tight) or rdp (Renyi DP, Mironov 2017; looser, the classic choice).")


class CanarySettings(BaseModel):
    """The memorisation audit's canaries (teach)."""
    canaries: int = Field(0, ge=0, description="Memorisation audit: insert this many random secrets (canaries) for each count in --canary-repeats into the training data, plus as many never inserted; `knowtune audit-privacy RUN` then measures how far the model memorised them (exposure in bits). 0: none.")
    canary_repeats: list[int] = Field([1, 5], description="How many times each group of canaries is inserted (one group per number).")


@dataclass
class Budget:
    """A DP-SGD run's plan, then what it spent."""
    target_epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    max_grad_norm: float
    accountant: str
    records: int  # the private records the guarantee is about (one training row each)
    epochs: int
    steps: int  # logical batches
    epsilon: float | None = None  # spent, after training
    unit: str = "record"
    rows: int = 0  # all training rows sampled from: the records and public rows (replay answers, canaries)

    def to_json(self) -> dict:
        return asdict(self)


def plan(s, rows: int, epochs: int, what: str = "records", units: int | None = None) -> Budget:
    """The noise multiplier for the target epsilon over `rows` training rows, of which `units` (default all) are
    the private records the guarantee is about (the rest public: replay answers, canaries); delta is judged
    against them. Refuses settings whose guarantee would be meaningless or unreachable, before any training."""
    try:
        from opacus.accountants.utils import get_noise_multiplier
    except ImportError:
        raise KnowtuneError("--dp-epsilon needs Opacus, which is not installed.",
                            fix="pip install 'knowtune[dp]' (or pip install opacus).") from None
    n = units if units is not None else rows
    if n < 2:
        raise KnowtuneError(f"DP-SGD needs training {what}; got {n}.", fix="add data.")
    delta = s.dp_delta if s.dp_delta is not None else min(1e-5, 1 / n ** 1.1)
    if delta >= 1 / n:
        raise KnowtuneError(
            f"--dp-delta {delta:g} is not below 1/N = {1 / n:.2g} for N = {n:,} training {what}: with such a "
            "delta, publishing one whole record at random would satisfy the guarantee.",
            fix=f"use --dp-delta {min(1e-5, 1 / n ** 1.1):.2g} or smaller (or leave it out for that default).")
    if s.batch_size >= rows:
        raise KnowtuneError(f"--batch-size {s.batch_size} is not below the {rows:,} training {what}: every step would "
                            "see every record, and sampling would give no privacy amplification.",
                            fix=f"use a batch size well below {rows:,} (e.g. {max(1, rows // 20)}).")
    steps_per_epoch = math.ceil(rows / s.batch_size)
    sample_rate = 1 / steps_per_epoch  # what Opacus's Poisson sampler uses
    try:
        sigma = get_noise_multiplier(target_epsilon=s.dp_epsilon, target_delta=delta, sample_rate=sample_rate,
                                     epochs=epochs, accountant=s.dp_accountant, epsilon_tolerance=0.01)
    except ValueError as e:
        raise KnowtuneError(
            f"epsilon {s.dp_epsilon:g} cannot be reached with {rows:,} training {what}, batch size {s.batch_size} and "
            f"{epochs} epoch(s) at delta {delta:.2g} ({e}).",
            fix="raise --dp-epsilon, train fewer epochs, use a smaller batch, or add data.") from None
    if sigma > 50:
        raise KnowtuneError(
            f"epsilon {s.dp_epsilon:g} with {rows:,} training {what}, batch size {s.batch_size} and {epochs} epoch(s) "
            f"needs noise {sigma:.0f}x the clipping norm on every step: training would learn nothing.",
            fix="raise --dp-epsilon, train fewer epochs, or add data (DP-SGD learns from many records, not few).")
    return Budget(s.dp_epsilon, delta, sigma, sample_rate, s.dp_max_grad_norm, s.dp_accountant, n, epochs,
                  steps_per_epoch * epochs, rows=rows)


def check_wrappable(model) -> None:
    """Opacus must compute a per-sample gradient for every trainable weight: refuse modules it cannot, before
    training (BatchNorm mixes records; weights tied to another module are counted twice)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    errors += [f"{n} trains, and the loss projects single answer tokens through it: Opacus would clip per token, "
               "not per record" for n, p in model.named_parameters() if p.requires_grad and "lm_head" in n]
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in trainable and id(p) in seen:
            errors.append(f"{name} is the same weight as {seen[id(p)]} (tied)")
        seen.setdefault(id(p), name)
    if errors:
        raise KnowtuneError("Opacus cannot wrap this model for DP-SGD: " + "; ".join(map(str, errors[:5])) + ".",
                            fix="train LoRA (teach --method lora) or the dense head (task train --method head) with DP.")


def make_private(model, optimizer, loader, noise_multiplier: float, max_grad_norm: float, accountant: str = "prv",
                 poisson: bool = True):  # poisson=False: only for the test that compares one step with plain SGD
    """(model, optimizer, loader, engine) wrapped by Opacus: per-sample gradients by hooks on the trainable
    modules. The model must already be in its final form (peft applied, on its device): Opacus hooks the
    modules it sees now, and weights created later would train silently wrong (opacus issue 820)."""
    from opacus import PrivacyEngine

    engine = PrivacyEngine(accountant=accountant)
    model, optimizer, loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm, poisson_sampling=poisson, loss_reduction="mean", grad_sample_mode="hooks")
    return model, optimizer, loader, engine


def dp_step(model, optimizer, batch, loss_fn: Callable, params=(), bf16: bool = False) -> float | None:
    """One physical batch: per-record losses, their mean backwards (Opacus turns it into per-record gradients),
    and the optimiser's step (Opacus clips, adds noise and updates only at the end of the logical batch). With
    `bf16` the forward runs under bf16 autocast and the per-record gradients are cast back to their weight's dtype.
    An empty Poisson sample still takes its step: zero per-record gradients, the noise added and the step
    accounted by Opacus as any other (`params`: the trainable weights). Returns the mean loss, None when empty."""
    import torch

    from knowtune.models.precision import autocast

    if not isinstance(batch, dict) or batch["input_ids"].shape[0] == 0:
        for p in params:
            p.grad_sample = torch.zeros(0, *p.shape, dtype=p.dtype, device=p.device)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return None
    with autocast(bf16, batch["input_ids"].device.type):  # the forward only: clipping and noise run outside it
        losses = loss_fn(model, batch)
    loss = losses.mean()
    loss.backward()
    for p in params:  # under bf16 autocast the per-record gradients come in bf16: their norms taken in fp32
        g = getattr(p, "grad_sample", None)
        if isinstance(g, torch.Tensor) and g.dtype != p.dtype:
            p.grad_sample = g.to(p.dtype)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()) if torch.isfinite(loss) else float("nan")


def trainable_weights(model) -> dict:
    """{name: parameter} of what trains (what a DP checkpoint saves)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def train_private(model, rows: list[dict], collate: Callable, loss_fn: Callable, s, run, budget: Budget,
                  make_optimizer: Callable, trainable: Callable = trainable_weights) -> Budget:
    """Train `model` with DP-SGD for budget.epochs over `rows` (one row per record); checkpoints after each epoch
    under run.checkpoints; returns the budget with the epsilon spent. `make_optimizer(model)` builds the plain
    optimiser; `trainable(model)` gives {name: parameter} of what trains (saved in checkpoints)."""
    import torch
    from opacus.utils.batch_memory_manager import BatchMemoryManager
    from torch.utils.data import DataLoader

    from knowtune.models.precision import use_bf16
    from knowtune.progress import phase
    from knowtune.train.optim import make_scheduler

    model.train()
    check_wrappable(model)
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer, s, budget.steps)  # stepped once per logical (noisy) step
    # the loader draws row indices (a dataset of 1-tuples of tensors: Opacus builds an empty Poisson sample's
    # shape from it), the collate turns them into the rows' batch
    indices = [(torch.tensor(i),) for i in range(len(rows))]
    loader = DataLoader(indices, batch_size=s.batch_size, shuffle=False,
                        collate_fn=lambda b: collate([rows[int(i[0])] for i in b]))
    dp_model, dp_opt, dp_loader, engine = make_private(model, optimizer, loader, budget.noise_multiplier,
                                                       budget.max_grad_norm, budget.accountant)
    start_epoch, step, secret = _resume(run, model, dp_opt, scheduler, engine, trainable)
    params = list(trainable(model).values())
    bf16 = use_bf16(s.bf16)
    with phase("Training with DP-SGD", total=budget.steps, unit="step") as advance:
        advance(step)
        for epoch in range(start_epoch, budget.epochs):
            # this epoch's sampling and noise come from a secret seed (drawn from the OS for the run, kept
            # only in the checkpoints, which are removed at the end): the same after --resume, and never
            # reproducible from config.yaml's public seed
            torch.manual_seed(secret + epoch)
            random.seed(secret + epoch)
            losses = []
            with BatchMemoryManager(data_loader=dp_loader, max_physical_batch_size=s.micro_batch or 8,
                                    optimizer=dp_opt) as batches:
                for batch in batches:
                    loss = dp_step(dp_model, dp_opt, batch, loss_fn, params, bf16)
                    if loss is not None:
                        losses.append(loss)
                    if not dp_opt._is_last_step_skipped:
                        scheduler.step()
                        step += 1
                        advance(1)
            if losses and not all(map(math.isfinite, losses)):
                raise KnowtuneError(f"DP-SGD diverged in epoch {epoch + 1}: the loss became NaN/inf.",
                                    fix=f"lower the learning rate (now {s.learning_rate}).")
            append_jsonl(run.metrics, {"step": step, "epoch": epoch + 1, "loss": sum(losses) / max(1, len(losses)),
                                       "epsilon": engine.get_epsilon(budget.delta)})
            _checkpoint(run, epoch + 1, step, model, dp_opt, scheduler, engine, trainable, secret)
    budget.epsilon = engine.get_epsilon(budget.delta)
    budget.steps = step
    _unwrap(dp_model)
    shutil.rmtree(run.checkpoints, ignore_errors=True)  # they hold the noise's seed: a finished run keeps none
    return budget


def _unwrap(dp_model) -> None:
    """Remove Opacus's hooks so the model saves and answers as a plain model."""
    remove = getattr(dp_model, "_close", None) or getattr(dp_model, "remove_hooks", None)
    if remove:
        remove()


def _checkpoint(run, epoch: int, step: int, model, optimizer, scheduler, engine, trainable, secret: int) -> None:
    """checkpoints/checkpoint-<step>/ (`lifecycle.write_checkpoint`): the trainable weights, the optimiser's and
    the schedule's state, and in state.json the epoch, the accountant's history and the secret seed."""
    write_checkpoint(run.checkpoints / f"checkpoint-{step}", trainable(model), optimizer.original_optimizer, scheduler,
                     {"epoch": epoch, "step": step, "secret_seed": secret, "accountant": engine.accountant.history})


TEST_SEED_VARIABLE = "KNOWTUNE_DP_TEST_SEED"  # tests only: a fixed noise seed, so two runs can be compared


def _resume(run, model, optimizer, scheduler, engine, trainable) -> tuple[int, int, int]:
    """(epoch, step, secret seed) to continue from: the last complete checkpoint's, its weights, optimiser,
    schedule and accountant restored; without one, the start and a new secret seed from the operating system."""
    ckpt = run.checkpoint()
    if not ckpt:
        fixed = os.environ.get(TEST_SEED_VARIABLE)
        if fixed:
            run.log(f"{TEST_SEED_VARIABLE} is set: the DP noise is reproducible, so this run's guarantee is void "
                    "(for tests only).")
        return 0, 0, int(fixed) if fixed else int.from_bytes(os.urandom(6), "big")
    import torch

    params = trainable(model)
    saved, state, _ = read_checkpoint(Path(ckpt), optimizer.original_optimizer, scheduler, expected=set(params))

    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])
    engine.accountant.history = [tuple(h) for h in state["accountant"]]
    return state["epoch"], state["step"], state["secret_seed"]
