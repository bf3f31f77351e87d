"""Settings of a run, declared once. Each group holds what several methods share, with help on every field;
a method's settings class composes the groups it needs and adds only its own fields. The CLI flags, the YAML
file (`--config`) and the report's settings table all come from them. Precedence: defaults < YAML < --set <
flags. A method that wants another default for a shared field says so in its `DEFAULTS`, never by
declaring the field again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from knowtune.errors import KnowtuneError

Optimizer = Literal["adamw", "adam", "sgd"]


class RunSettings(BaseModel):
    """What every run has: where it goes, the model it starts from, the seed, precision; and how settings are
    read (defaults < YAML < --set < flags)."""
    model_config = ConfigDict(extra="forbid")
    DEFAULTS: ClassVar[dict[str, Any]] = {}  # a method's own defaults for fields of the shared groups

    model: str = Field("smollm2-135m", description="Base model: an alias (`knowtune models`), a local folder, a .gguf file, a hub id, or a knowtune run folder (its tuned model).")
    out: str | None = Field(None, description="Run folder; default runs/<first data file name>.")
    seed: int = Field(0, description="Seed for the data split, data order and weight initialisation.")
    bf16: Literal["auto", "true", "false"] = Field("auto", description="bf16 autocast: auto uses it on bf16 GPUs and on CPUs with AMX / AVX-512-BF16 (about 2x faster there).")
    processes: int = Field(1, ge=1, description="Train data-parallel in this many processes on this machine (torch's launcher; gloo on CPU, NCCL on GPUs): each takes 1/N of every batch, so --batch-size stays the global batch; one process writes the run folder, audits and reports. For several GPUs or machines, and FSDP or DeepSpeed, use `accelerate launch` with a config from configs/accelerate/ (see the README). Methods that train as teach does.")
    tensorboard: bool = Field(True, description="Write the training metrics as TensorBoard event files in RUN/tensorboard while the run trains, with the audit's figures and the report at the end (view: `tensorboard --logdir runs`).")
    mlflow: str | None = Field(None, description="Also log the run to MLflow: 'local' (a SQLite store beside the run folders, RUNS/mlflow.db, artifacts in RUNS/mlartifacts), a folder or file: URI (a file store), or a tracking server or database URI (http://host:5000, sqlite:///path.db). Logged: the settings, the training metrics by step, the audit's figures, audit.json, the report and its plots. Needs MLflow (pip install -e '.[tracking]').")
    mlflow_experiment: str = Field("knowtune", description="The MLflow experiment the run is logged under.")
    scrub_pii: bool = Field(False, description="Replace personal data (emails, phone numbers, payment cards, IBANs, IP addresses, URLs with passwords, API keys, US SSNs, UK NI numbers, postal addresses, person names) with typed placeholders such as <EMAIL> and <PERSON> as the data is read, before anything is written to the run folder; the same value gets the same placeholder within a record. Input files are never modified. `knowtune check --pii FILE...` shows what would be replaced.")

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, values):
        return {**cls.DEFAULTS, **values} if isinstance(values, dict) else values

    @classmethod
    def default_of(cls, name: str):
        """The default this method uses for a field (its DEFAULTS first)."""
        if name in cls.DEFAULTS:
            return cls.DEFAULTS[name]
        f = cls.model_fields[name]
        return f.default_factory() if f.default_factory else f.default

    def default_run_name(self) -> str:
        return "run"

    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.default_run_name()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)

    @classmethod
    def from_sources(cls, yaml_path: str | Path | None = None, *layers: dict, **overrides):
        """Defaults < YAML file < each layer in turn (e.g. --set values, then flags) < keyword overrides.
        A None or empty-list value means 'not given' and never hides a lower layer."""
        values: dict = read_settings_file(yaml_path) if yaml_path else {}
        for layer in (*layers, overrides):
            values.update({k: v for k, v in layer.items() if v is not None and v != []})
        try:
            return cls(**values)
        except ValidationError as exc:
            lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise KnowtuneError("Invalid settings:\n" + "\n".join(lines),
                                fix=f"correct them{' in ' + str(yaml_path) if yaml_path else ''}; the command's --help lists every setting.") from exc


def read_settings_file(path: str | Path) -> dict:
    """A YAML file of settings (`--config`), as a mapping; a clear error when it is missing or not a mapping."""
    path = Path(path)
    if not path.exists():
        raise KnowtuneError(f"{path}: no such config file.", fix="check the --config path.")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise KnowtuneError(f"{path}: a config file must be a YAML mapping of settings.", fix="see the command's --help for the names.")
    return loaded


class OptimSettings(BaseModel):
    """How the weights are updated: the optimiser, its schedule, and when checkpoints are written."""
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per optimiser step.")
    micro_batch: int | None = Field(None, ge=1, description="Examples per forward/backward pass when fewer than --batch-size fit in memory: the gradients of ceil(batch / micro-batch) passes are added up before each step (gradient accumulation; DP-SGD: the physical batch). None: the whole batch at once (DP-SGD: 8).")
    optimizer: Optimizer = Field("adamw", description="adamw (Adam with decoupled weight decay), adam (weight decay as L2 on the gradient) or sgd (stochastic gradient descent with momentum: wants a learning rate 10-100x higher).")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum (0: plain SGD).")
    nesterov: bool = Field(False, description="sgd: Nesterov's momentum.")
    lr_scheduler: str = Field("cosine", description="Learning-rate schedule (any transformers scheduler name: cosine, linear, constant, constant_with_warmup, ...).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming the learning rate up.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay (decoupled with adamw, L2 with adam and sgd).")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are clipped to this norm.")
    checkpoint_every: int = Field(0, ge=0, description="Optimiser steps between checkpoints (0: one at the end of every epoch); a killed run resumes from the last complete one. Where a method evaluates on dev data (teach), it then evaluates at every checkpoint too, and early stopping counts evaluations.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept (the best one is always kept).")


class EpochSettings(BaseModel):
    """How long a method that passes over a data set trains."""
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1, description="Passes over the training examples (the learning-rate schedule spans them all).")
    max_steps: int = Field(-1, description="Stop after this many optimiser steps (-1: no limit); for smoke tests.")


class LoraSettings(BaseModel):
    """The LoRA adapter (Hu et al. 2021) trained on a frozen model."""
    model_config = ConfigDict(extra="forbid")

    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    lora_targets: str = Field("all-linear", description="Modules that get adapters: 'all-linear' or comma-separated names.")


class AuditSettings(BaseModel):
    """The knowledge audit run on the start model and on the saved run."""
    model_config = ConfigDict(extra="forbid")

    audit: bool = Field(True, description="Run the before/after audit (turn off only for speed tests).")
    probes: str | None = Field(None, description="Held-out questions with answer keys (Q&A or prompt/completion file) added to the audit; never trained on.")


class GenerationGroup(BaseModel):
    """How answers are written for the audit and the before / after comparisons."""
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(40, ge=1, description="Longest generated answer in the audit (and in eval and ask).")


class SupervisedSettings(BaseModel):
    """How a supervised run on question-and-answer rows trains and when it stops (teach, distill): early stopping
    on dev-probe accuracy, the best epoch kept, the row length, what the loss computes."""
    model_config = ConfigDict(extra="forbid")

    min_epochs: int = Field(3, ge=0, description="Passes before early stopping may end the run.")
    max_length: int = Field(256, ge=16, description="Longest example in tokens; longer ones are truncated (check warns).")
    early_stopping_patience: int = Field(2, ge=1, description="Epochs without better dev-probe accuracy before stopping.")
    target_dev_accuracy: float = Field(1.0, gt=0, le=1, description="Stop as soon as dev-probe accuracy reaches this.")
    keep_best: bool = Field(True, description="At the end, restore the epoch with the best dev-probe accuracy (else keep the last).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass instead of storing them: less memory, about 1.5x slower (trl turns it on by default; small models do not need it).")
    label_only_logits: bool = Field(True, description="Project onto the vocabulary only at answer tokens (faster; same loss).")


GROUPS = (RunSettings, EpochSettings, OptimSettings, LoraSettings, AuditSettings, GenerationGroup,
          SupervisedSettings)  # shared, in help order
