"""`knowtune distill`: a taught run's knowledge moved into a smaller student, as a recipe read top to bottom.

prepare  the teacher run's own training views (its data/train.jsonl: knowledge views and replay), dev and
         held-out probes, unknown questions and facts; the student: a model with the teacher's vocabulary (alias,
         folder, run) or `layers=K` / `layers=P%`, K evenly spaced blocks of the teacher's base model (how
         DistilBERT and Minitron start their students). Checked before anything is written.
train    every weight of the student, on those views: at each answer token the KL divergence to the teacher's
         token distribution (softened by --temperature; weight --kd-weight) plus the usual loss on the answer
         (weight 1 - kd-weight); early stopping on dev-probe accuracy and the best epoch kept, as teach does.
         --kd-weight 0 trains the same student on the same views without the teacher.
finish   parameters and generation speed of teacher and student, measured in one process (distill.json)

The lifecycle audits the teacher as the start model, so the report's before / after columns are teacher and
student, and a fact the student lost is "forgotten". `--without-teacher RUN` adds the figures of a student trained
with --kd-weight 0 beside them: what the teacher itself contributed.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, model_validator

from knowtune.config import AuditSettings, EpochSettings, GenerationGroup, OptimSettings, RunSettings, SupervisedSettings
from knowtune.errors import KnowtuneError
from knowtune.train.lifecycle import Measure, Method, Prepared, Run, Trained
from knowtune.train.methods.teach_trainer import ProbeSFTTrainer

SPEED_FILE = "distill.json"


class DistillSettings(RunSettings, EpochSettings, OptimSettings, AuditSettings, GenerationGroup, SupervisedSettings):
    DEFAULTS = {"epochs": 8, "learning_rate": 3e-4, "batch_size": 8, "min_epochs": 3, "early_stopping_patience": 3}
    teacher: str = Field("", description="The taught run to distil: a knowtune run folder (from teach, or any run with adapter/ or model/ and data/train.jsonl). It is also the start model the audit compares the student with.")
    student: str = Field("layers=50%", description="The student: layers=K (K evenly spaced transformer blocks of the teacher's base model, with its embeddings and head) or layers=P% (that share of its blocks), or any model with the teacher's tokenizer (an alias, a folder, a run). Every weight of it trains.")
    temperature: float = Field(2.0, gt=0, description="Softens both token distributions before they are compared (higher: the student also learns how the teacher ranks the unlikely tokens).")
    kd_weight: float = Field(0.5, ge=0, le=1, description="Weight of the teacher's distributions in the loss; the rest is the usual loss on the answer tokens. 0: train the student without the teacher (the baseline that shows what the teacher adds).")
    without_teacher: str | None = Field(None, description="A finished distill run of the same student trained with --kd-weight 0: its held-out accuracy and general knowledge are shown beside this student's.")
    speed_prompts: int = Field(8, ge=1, description="Held-out questions answered by teacher and student for the generation-speed measurement (batch 1, a fixed number of new tokens each).")
    speed_tokens: int = Field(64, ge=1, description="New tokens written per question in the speed measurement.")

    @model_validator(mode="before")
    @classmethod
    def _start_is_the_teacher(cls, values):
        """The start model is the teacher run (the audit's before column); --model names nothing else here."""
        if isinstance(values, dict) and values.get("teacher"):
            given = values.get("model")
            if given is not None and Path(given).resolve() != Path(values["teacher"]).resolve():
                raise ValueError(f"distill starts from the teacher run; model {given} (from --model or config.yaml) "
                                 "is not it: give the student with --student")
            values = {**values, "model": values["teacher"]}
        return values

    def default_run_name(self) -> str:
        return f"{Path(self.teacher).name}-student"


def check_teacher(teacher: str) -> Path:
    run = Path(teacher)
    if not teacher or not (run / "config.yaml").exists():
        raise KnowtuneError(f"{teacher or '(none)'} is not a knowtune run folder (no config.yaml).",
                            fix="give the folder of a finished teach run: `knowtune distill runs/NAME --student layers=50%`.")
    if not ((run / "adapter").exists() or (run / "model").exists()) or not (run / "data" / "train.jsonl").exists():
        raise KnowtuneError(f"{run} has no trained weights or no training views (adapter/ or model/, data/train.jsonl).",
                            fix=f"finish the run first (`knowtune teach ... --out {run} --resume`).")
    return run


def check_student(s: DistillSettings, log) -> int | None:
    """The number of blocks a `layers=` student keeps (None for a model given by name), after checking the
    student can learn from this teacher: the same tokens, so the two distributions compare position by
    position. Loads configs and tokenizers only."""
    from transformers import AutoConfig

    from knowtune.models.load import base_of, load_tokenizer, resolve_model_dir
    from knowtune.models.slim import is_slim_spec, layers_wanted

    base_dir = resolve_model_dir(base_of(Path(s.teacher)), log=log)
    if is_slim_spec(s.student):
        return layers_wanted(s.student, AutoConfig.from_pretrained(base_dir).num_hidden_layers)
    if (Path(s.student) / "config.yaml").exists():
        check_teacher(s.student)  # a run as the student: it must hold weights
    student_dir = resolve_model_dir(base_of(Path(s.student)), log=log)
    try:
        ours, theirs = load_tokenizer(base_dir).get_vocab(), load_tokenizer(student_dir).get_vocab()
        sizes = [AutoConfig.from_pretrained(d).get_text_config().vocab_size for d in (base_dir, student_dir)]
    except Exception as exc:
        raise KnowtuneError(f"--student {s.student}: its tokenizer or config could not be read ({type(exc).__name__}).",
                            fix="give a local model folder, a run, or an alias (`knowtune models`).") from exc
    if ours != theirs or sizes[0] != sizes[1]:
        differ = len(set(ours.items()) ^ set(theirs.items()))
        raise KnowtuneError(f"The student {s.student} has another tokenizer than the teacher ({len(theirs)} tokens "
                            f"against {len(ours)}, {differ} entries differ; output sizes {sizes[1]} and {sizes[0]}): "
                            "the teacher's token distributions "
                            "cannot be compared with the student's position by position.",
                            fix="choose a student of the teacher's family (the same tokenizer), or layers=K for a "
                                "slimmed copy of the teacher's base.")
    return None


def load_student(s: DistillSettings, blocks: int | None, log):
    from knowtune.models.load import base_of, load_for_inference
    from knowtune.models.slim import slimmed

    if blocks is None:
        return load_for_inference(s.student, log=log)
    base, tokenizer = load_for_inference(base_of(Path(s.teacher)), log=log)
    return slimmed(base, blocks), tokenizer


class DistillTrainer(ProbeSFTTrainer):
    """Teach's trainer (dev probes, early stopping, answer-only logits) whose loss also follows the teacher."""

    def __init__(self, *args, teacher=None, temperature: float = 2.0, kd_weight: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.temperature, self.kd_weight = teacher, temperature, kd_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training or return_outputs:  # evaluation: the plain loss on the dev rows
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from knowtune.eval.loss import distillation_loss

        with self.accelerator.autocast():
            return distillation_loss(self.accelerator.unwrap_model(model), self.teacher, inputs, self.temperature,
                                     self.kd_weight, num_items_in_batch)


class Distill(Method):
    name = "distill"
    argument = "teacher"
    help = ("Distil the taught run TEACHER into a smaller student (--student layers=K keeps K of the base model's "
            "blocks; or a smaller model with the same tokenizer): the student learns the teacher's token "
            "distributions on the run's own training views. The report sets teacher and student side by side: "
            "parameters, generation speed, held-out accuracy, general knowledge.")
    Settings = DistillSettings

    def prepare(self, s: DistillSettings, log) -> Prepared:
        from knowtune.data.augment import TrainItem
        from knowtune.data.knowledge import Probe
        from knowtune.eval.audit import AuditSet
        from knowtune.eval.grounding import Grounding
        from knowtune.io import read_jsonl
        from knowtune.models.load import base_of

        run = check_teacher(s.teacher)
        blocks = check_student(s, log)
        if s.without_teacher and not (Path(s.without_teacher) / "audit.json").exists():
            raise KnowtuneError(f"--without-teacher {s.without_teacher}: no audit.json there (not a finished run).",
                                fix="give the folder of a finished `knowtune distill ... --kd-weight 0` run, or leave it out.")
        data = run / "data"
        probes = {name: [Probe.from_row(r) for r in read_jsonl(data / f"{name}.jsonl")] if (data / f"{name}.jsonl").exists() else []
                  for name in ("probes_test", "probes_dev", "unknowns")}
        items = [TrainItem(**r) for r in read_jsonl(data / "train.jsonl")]
        facts = read_jsonl(data / "facts.jsonl") if (data / "facts.jsonl").exists() else []
        aset = AuditSet(probes["probes_test"], probes["unknowns"], probes["probes_dev"],
                        Grounding.from_fact_rows(facts) if facts else None, s.max_new_tokens)
        files = {"facts": facts, "probes_dev": [p.to_row() for p in aset.dev],
                 "probes_test": [p.to_row() for p in aset.probes], "unknowns": [p.to_row() for p in aset.unknowns]}
        student = f"{blocks} blocks of {base_of(run)}" if blocks else s.student
        return Prepared(aset, {"items": items, "blocks": blocks}, files,
                        f"Distilling {run} into {student}: {len(items)} training views of the teacher, "
                        f"{len(aset.dev)} dev and {len(aset.probes)} held-out probes.")

    def train(self, s: DistillSettings, prep: Prepared, run: Run) -> Trained:
        from knowtune.io import write_jsonl
        from knowtune.models.load import load_for_inference
        from knowtune.models.precision import bf16_linears, parameter_count, use_bf16
        from knowtune.train.hf import train_resumable
        from knowtune.train.methods.teach import build_trainer

        items = prep.data["items"]
        write_jsonl(run.dir / "data" / "train.jsonl", [it.to_row() for it in items])
        student, tokenizer = load_student(s, prep.data["blocks"], run.log)
        teacher = None
        if s.kd_weight > 0:
            teacher = load_for_inference(s.teacher, log=run.log)[0]
            teacher.requires_grad_(False)
            if use_bf16(s.bf16):
                bf16_linears(teacher)  # frozen: stored in bf16, as a frozen base is for LoRA
        trainer, guard = build_trainer(s, student, tokenizer, items, prep.audit.dev, run.dir, DistillTrainer,
                                       teacher=teacher, temperature=s.temperature, kd_weight=s.kd_weight)
        if teacher is not None:
            teacher.to(trainer.args.device)
        run.log(f"Training the student ({parameter_count(student) / 1e6:.1f}M parameters, every "
                f"weight) on {len(items)} views, " + (f"{s.kd_weight:g} x the teacher's distributions at temperature "
                                                      f"{s.temperature:g}." if teacher is not None else "without the teacher."))
        train_resumable(trainer, run, run.verbose)
        st = trainer.state
        return Trained("model", (trainer.model, tokenizer), st.global_step, st.epoch, diverged_at=guard.diverged_at,
                       best_checkpoint=st.best_model_checkpoint, best_metric=st.best_metric)

    def finish(self, s: DistillSettings, prep: Prepared, run: Run) -> None:
        """Parameters and generation speed of teacher and student, measured in this one process."""
        from knowtune.models.load import load_for_answering
        from knowtune.models.precision import parameter_count
        from knowtune.progress import phase

        questions = [(p.style, p.prompt) for p in (prep.audit.probes or prep.audit.dev)][:s.speed_prompts]
        if not questions:
            run.log("No held-out or dev questions to time generation on: speed not measured.")
            return
        models = {"teacher": load_for_answering(s.teacher, log=run.log), "student": load_for_answering(str(run.dir), log=run.log)}
        figures = {k: {"parameters": parameter_count(m)} for k, (m, _) in models.items()}
        seconds = {k: 0.0 for k in models}
        with phase("Measuring generation speed", total=2 * len(models) * len(questions), unit="answer") as advance:
            for _ in range(2):  # teacher, student, teacher, student: drift in the machine's speed falls on both
                for k, (model, tokenizer) in models.items():
                    seconds[k] += generation_seconds(model, tokenizer, questions, s.speed_tokens, advance)
        tokens = 2 * len(questions) * s.speed_tokens
        for k in models:
            figures[k]["tokens_per_second"] = round(tokens / seconds[k], 1)
        figures["student"]["weights_bytes"] = sum(f.stat().st_size for f in (run.dir / "model").glob("*.safetensors"))
        figures["speedup"] = round(figures["student"]["tokens_per_second"] / figures["teacher"]["tokens_per_second"], 2)
        figures["parameter_share"] = round(figures["student"]["parameters"] / figures["teacher"]["parameters"], 3)
        from knowtune.io import write_json

        write_json(run.dir / SPEED_FILE, figures)
        run.log(f"Student: {figures['parameter_share']:.0%} of the teacher's parameters, {figures['speedup']:.2f}x its "
                "generation speed (batch 1, measured in one process).")

    def audit_measures(self, s: DistillSettings, prep: Prepared, before: dict, after: dict) -> list[Measure]:
        """Teacher (before) and student (after): parameters and speed; and the student trained without the
        teacher, when given, beside this one."""
        out = []
        speed = s.run_dir() / SPEED_FILE
        if speed.exists():
            f = json.loads(speed.read_text())
            out += [Measure("Parameters (millions)", round(f["teacher"]["parameters"] / 1e6, 1),
                            round(f["student"]["parameters"] / 1e6, 1)),
                    Measure("Generation tokens/s (batch 1, one process)", f["teacher"]["tokens_per_second"],
                            f["student"]["tokens_per_second"])]
        if s.without_teacher:
            alone = json.loads((Path(s.without_teacher) / "audit.json").read_text())["summary"]
            out += [Measure("Held-out questions: the same student without the teacher", None, alone["probe_accuracy_after"], "share"),
                    Measure("General knowledge: the same student without the teacher", None, alone["retention_after"], "share")]
        return out


def generation_seconds(model, tokenizer, questions, new_tokens: int, advance=None) -> float:
    """Seconds to write exactly `new_tokens` tokens for each question, one at a time, greedy."""
    import time

    import torch

    from knowtune.eval.generate import render_prompt
    from knowtune.models.precision import answering_precision

    total = 0.0
    for style, prompt in questions:
        ids = tokenizer(render_prompt(tokenizer, style, prompt), return_tensors="pt", add_special_tokens=False)
        ids = {k: v.to(model.device) for k, v in ids.items()}
        with torch.no_grad(), answering_precision(model):
            start = time.perf_counter()
            model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
            total += time.perf_counter() - start
        if advance:
            advance(1)
    return total
