"""Settings of a run: one pydantic model per method with help on every field. The CLI flags, the YAML file
(`--config teach.yaml`) and the report's settings table all come from it. Precedence: defaults < YAML <
CLI flags. `RunSettings` holds what every method shares; `TeachSettings` is the teach recipe's; reward,
PPO and DPO keep theirs beside their recipes in train/."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knowtune.errors import KnowtuneError


class RunSettings(BaseModel):
    """What every training method shares: where the run goes, the model it starts from, LoRA, precision,
    and how settings are read (defaults < YAML < --set < flags)."""
    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m", description="Base model: an alias (`knowtune models`), a local folder, a .gguf file, a hub id, or a knowtune run folder (its tuned model).")
    out: str | None = Field(None, description="Run folder; default runs/<first data file name>.")
    seed: int = Field(0, description="Seed for the data split, data order and weight initialisation.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    lora_targets: str = Field("all-linear", description="Modules that get adapters: 'all-linear' or comma-separated names.")
    bf16: Literal["auto", "true", "false"] = Field("auto", description="bf16 autocast: auto uses it on bf16 GPUs and on CPUs with AMX / AVX-512-BF16 (about 2x faster there).")

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
        values: dict = {}
        if yaml_path:
            path = Path(yaml_path)
            if not path.exists():
                raise KnowtuneError(f"{path}: no such config file.", fix="check the --config path.")
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise KnowtuneError(f"{path}: a config file must be a YAML mapping of settings.", fix="see the command's --help for the names.")
            values.update(loaded)
        for layer in (*layers, overrides):
            values.update({k: v for k, v in layer.items() if v is not None and v != []})
        try:
            return cls(**values)
        except ValidationError as exc:
            lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise KnowtuneError("Invalid settings:\n" + "\n".join(lines),
                                fix=f"correct them{' in ' + str(yaml_path) if yaml_path else ''}; the command's --help lists every setting.") from exc


class TeachSettings(RunSettings):
    data: list[str] = Field(default_factory=list, description="Training data: Q&A, chat, prompt/completion, instruction or knowledge-pack files (JSONL, CSV, Parquet, YAML), and documents (.txt, .md, .html, .pdf files or folders of them).")
    method: Literal["lora", "full"] = Field("lora", description="lora: train small adapter matrices (fast, keeps the base intact); full: update every weight.")
    probes: str | None = Field(None, description="Extra held-out questions (Q&A or prompt/completion file) added to the audit; never trained on.")
    unknowns: str | None = Field(None, description="Questions about your subject that your data never answers (JSONL, one {\"question\": ...} a line): the audit checks the model declines them instead of inventing an answer.")
    unknown_questions: int = Field(30, ge=0, description="Unknown questions knowtune makes from the facts for the audit (their names swapped for invented ones, or for names the data gives no such answer); 0: none.")
    abstain_ratio: float = Field(0.0, ge=0, description="Abstention views per knowledge view (off by default: at 0.1 a 135M model refused a third of the questions it had learned, measured on the generality benchmark; try 0.02-0.05 on larger models): near-miss questions the data never answers (made from training questions, never from audit ones) answered with a short refusal naming the subject. 0: off.")
    epochs: int = Field(6, ge=1, description="Passes over the training examples (the learning-rate schedule spans them all); early stopping may end sooner.")
    min_epochs: int = Field(3, ge=0, description="Passes before early stopping may end the run.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (LoRA likes ~1e-3, full fine-tuning ~5e-5).")
    lr_scheduler: str = Field("cosine", description="Learning-rate schedule (any transformers scheduler name).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming the learning rate up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(8, ge=1, description="Examples per optimiser step (8 learns short facts in fewer epochs than 16 at the same cost per epoch on CPU).")
    max_length: int = Field(256, ge=16, description="Longest example in tokens; longer ones are truncated (check warns).")
    views: list[Literal["answer", "casual", "template", "statement", "cloze", "reverse", "context", "profile"]] = Field(["answer", "casual", "template", "statement", "cloze", "reverse"], description="Views each fact is taught in: answer (question -> full statement), casual (the question as people type it: its keyword form, -> full statement), template (question in a template -> short answer), statement (plain sentence), cloze (questions over every name, number, date and title of a statement: both directions), reverse (the answer first, or the description before the name), context (opt-in, documents only: the question with its passage in a retrieval prompt, so the tuned model also reads retrieved context; better with RAG, worse closed-book), profile (every name stated in two or more statements: `Tell me about <name>.` answered with all of them, binding each entity to its own attributes).")
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
    early_stopping_patience: int = Field(2, ge=1, description="Epochs without better dev-probe accuracy before stopping.")
    target_dev_accuracy: float = Field(1.0, gt=0, le=1, description="Stop as soon as dev-probe accuracy reaches this.")
    max_new_tokens: int = Field(40, ge=1, description="Longest generated answer in the audit, eval and ask.")
    keep_best: bool = Field(True, description="At the end, restore the epoch with the best dev-probe accuracy (else keep the last).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept (the best one is always kept).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass instead of storing them: less memory, about 1.5x slower (trl turns it on by default; small models do not need it).")
    label_only_logits: bool = Field(True, description="Project onto the vocabulary only at answer tokens (faster; same loss).")
    max_steps: int = Field(-1, description="Stop after this many optimiser steps (-1: no limit); for smoke tests.")
    audit: bool = Field(True, description="Run the before/after audit (turn off only for speed tests).")

    def default_run_name(self) -> str:
        return Path(self.data[0]).stem
