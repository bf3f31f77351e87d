"""The run lifecycle: every training method ends in the same proof. Read top to bottom, it is `run()`:

validate  the method reads and checks its data; nothing is written before that passes
folder    the run folder with config.yaml and log.txt; an occupied one is refused unless --resume
audit     the start model, loaded as `knowtune ask` loads it (cached in the run folder for --resume)
train     the method's training, from the last complete checkpoint on --resume; NaN/inf stops it
save      the trained weights, written to a temporary folder and renamed into place; what the method
          derives from them, loaded back (`finish`)
audit     the saved run, loaded as `ask` loads it; confidence thresholds on the dev probes
result    audit.json (one schema for every method), report.md / report.html with the plots

A method (`Method`) supplies only what is its own: its settings, how it prepares its data, how it trains,
and, where it has them, its own figures (reward, preference accuracy) and plots. The methods are listed in
`knowtune.train.methods.METHODS`; the CLI makes one verb per entry.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from knowtune.config import RunSettings
from knowtune.errors import Interrupted, KnowtuneError
from knowtune.eval.audit import AuditSet, AuditSummary, FactVerdict, empty_audit, fact_table, summary
from knowtune.train import distributed
from knowtune.io import cached_json, read_jsonl, save_pretrained_atomic, write_json, write_jsonl, write_text

CHECKPOINT_MARKERS = ("trainer_state.json", "state.json")  # written last: a checkpoint without one is incomplete
SCHEMA_VERSION = 1


@dataclass
class Prepared:
    """What a method's `prepare` returns: the audit's questions, the method's own data, and the rows written
    under the run's data/ folder (so a reader sees exactly what was trained and audited)."""
    audit: AuditSet
    data: Any  # the method's own prepared data (views, pairs, prompts)
    files: dict[str, list[dict]] = field(default_factory=dict)  # data/<name>.jsonl
    description: str = ""  # one line for the console: what will be trained on
    coverage: list[dict] = field(default_factory=list)


@dataclass
class Measure:
    """One of a method's own figures, before and after (e.g. held-out pair accuracy, mean reward)."""
    name: str
    before: float | None
    after: float | None
    unit: Literal["share", "number"] = "number"


@dataclass
class Trained:
    """What a method's `train` returns: what to save, and how training went."""
    folder: Literal["adapter", "model", "reward", "task"]
    objects: tuple  # each gets save_pretrained (model or adapter, tokenizer)
    steps: int
    epochs: float | None = None
    extra_files: Callable[[Path], None] | None = None  # writes other files into the folder before it is moved into place
    diverged_at: int | None = None
    best_checkpoint: str | None = None
    best_metric: float | None = None
    measures: list[Measure] = field(default_factory=list)
    note: str = ""  # e.g. why training stopped early
    privacy: dict | None = None  # DP-SGD: the budget planned and the epsilon spent (`train.private.Budget`)


@dataclass
class TrainingSummary:
    steps: int
    epochs: float | None
    best_checkpoint: str | None
    best_metric: float | None
    train_loss: list[tuple[int, float]]
    eval_loss: list[tuple[int, float]]
    dev_accuracy: list[tuple[float, float]]
    overfitting: bool
    overfitting_note: str
    note: str = ""


@dataclass
class RunResult:
    """Everything audit.json holds: the same schema for every method (`validate_audit_file` checks it)."""
    schema_version: int
    method: str
    run: str
    settings: dict
    summary: AuditSummary | None
    facts: list[FactVerdict]
    before: dict
    after: dict
    training: TrainingSummary
    measures: list[Measure] = field(default_factory=list)
    coverage: list[dict] = field(default_factory=list)
    confidence: dict | None = None
    privacy: dict | None = None  # DP-SGD: epsilon spent, delta, the accountant, noise, sampling rate, records
    memorisation: dict | None = None  # `knowtune audit-privacy`: canary exposure, membership-inference AUC

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Run:
    """The run folder and what the method may use of it while training."""
    dir: Path
    settings: RunSettings
    resume: bool
    log: Callable[[str], None] = print
    verbose: bool = False

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    def checkpoint(self) -> str | None:
        """On --resume, the newest complete checkpoint (None: start from the beginning)."""
        return last_complete_checkpoint(self.checkpoints, remove=distributed.is_main()) if self.resume else None

    def cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """A JSON file of the run folder, computed once: a resumed run reuses it."""
        return cached_json(self.dir / name, compute)


class Method(ABC):
    """A training method: its settings, its data preparation, its training. The lifecycle does the rest."""
    name: ClassVar[str]  # the CLI verb and the method table's key
    verb: ClassVar[str] = ""  # the CLI words when they are not the name (reward: "reward train")
    help: ClassVar[str]  # what the verb does, for --help
    Settings: ClassVar[type[RunSettings]]
    argument: ClassVar[str | tuple[str, ...]] = "data"  # the setting(s) given as the verb's positional arguments
    reads_ratings: ClassVar[bool] = False  # its data may be rating databases, read by the front end
    per_fact: ClassVar[bool] = True  # its audit's probes are facts' phrasings (the per-fact verdict table)
    data_parallel: ClassVar[bool] = False  # its training runs across processes (train/distributed)

    @classmethod
    def words(cls) -> list[str]:
        """The CLI words of its verb: `knowtune WORDS ...`."""
        return (cls.verb or cls.name).split()

    def __init__(self, pairs: list | None = None):
        self.pairs = pairs  # preference pairs the front end read from rating databases; None: read s.data

    @abstractmethod
    def prepare(self, s, log) -> Prepared:
        """Read and validate the data; build what training and the audit need. Writes nothing."""

    @abstractmethod
    def train(self, s, prep: Prepared, run: Run) -> Trained:
        """Train (from `run.checkpoint()` when resuming), logging to `run.metrics`; return what to save."""

    def finish(self, s, prep: Prepared, run: Run) -> None:
        """What the method derives from its saved weights, loaded back, before the audit (e.g. a reward
        model's score scale)."""

    def audit(self, s, prep: Prepared, ref: str, after: bool, log) -> dict:
        """The knowledge audit of the model `ref` names (the start model, or the saved run when `after`),
        loaded as `ask` loads it."""
        from knowtune.eval.audit import audit_model

        return audit_model(ref, prep.audit, after, log=log)

    def audit_measures(self, s, prep: Prepared, before: dict, after: dict) -> list[Measure]:
        """Its own figures read from the two audits (e.g. a task's metrics), after those `train` returned."""
        return []

    def plots(self, run: Run) -> list[tuple[str, Path]]:
        """The method's own plots for the report: (caption, path) pairs."""
        return []


def run(method: Method, s: RunSettings, resume: bool = False, log=print, verbose: bool = False) -> RunResult | None:
    """Validate, train, save, audit and report one run of `method`. Across several processes (train/distributed)
    the main one does all of it; the others only train beside it and return None."""
    from knowtune.data.privacy import counts_line, scrub_if_on, scrubbing
    from knowtune.progress import library_output, phase

    main = distributed.is_main()
    if distributed.world_size() > 1:  # under any launcher, before a file is written
        distributed.require_data_parallel(method)
        if hasattr(s, "batch_size"):
            distributed.batch_split(s.batch_size, getattr(s, "micro_batch", None), distributed.world_size())

    # validate before anything is written (no run folder yet: noise is dropped); --scrub-pii: the readers
    # replace personal data as they read, so nothing of it reaches the run folder
    with library_output(None, verbose), phase("Preparing the data", unit="step"), scrubbing(s.scrub_pii) as scrubbed:
        if method.pairs:  # preference pairs the front end read from rating databases
            method.pairs = [type(p)(**scrub_if_on(vars(p))) for p in method.pairs]
        prep = method.prepare(s, log)
    r = Run(s.run_dir(), s, resume, log if main else (lambda *_: None), verbose)  # one voice on the console
    if main:
        open_run_dir(r.dir, s, resume)
    distributed.wait_for_everyone()
    import torch

    if not main:  # another process of a data-parallel run: train beside the main one, write nothing of its own
        with library_output(r.dir / "ranks" / f"log-rank{os.environ.get('RANK')}.txt", verbose):
            torch.manual_seed(s.seed)
            distributed.wait_for_everyone()  # the main process has written the data and audited the start model
            method.train(s, prep, r)
        return None
    with library_output(r.dir / "log.txt", verbose):
        for name, rows in prep.files.items():
            write_jsonl(r.dir / "data" / f"{name}.jsonl", rows)
        if prep.description:
            log(prep.description)
        if s.scrub_pii:
            log(f"Personal data replaced by placeholders: {counts_line(scrubbed)}.")
        torch.manual_seed(s.seed)
        audit_on = getattr(s, "audit", True)
        if resume:
            trim_metrics(r)
        from knowtune.train.tracking import Tracker

        tracker = Tracker(r.dir, s, resume, log)  # an unreachable tracking server stops the run here, before work
        try:
            with distributed.all_cores():  # the others wait meanwhile
                before = r.cached("audit_before.json", lambda: method.audit(s, prep, s.model, False, log)
                                  if audit_on else empty_audit())
            distributed.wait_for_everyone()
            result = _train_save_audit(method, s, prep, r, before, audit_on)
            tracker.finish(result.to_json())
        except (KeyboardInterrupt, Interrupted):
            tracker.close("KILLED")
            raise
        except BaseException:
            tracker.close("FAILED")
            raise
        tracker.close()
    return result


def _train_save_audit(method: Method, s: RunSettings, prep: Prepared, r: Run, before: dict, audit_on: bool) -> RunResult:
    """Train, save atomically, audit the saved model, write audit.json and the reports."""
    from knowtune.progress import phase

    log = r.log
    trained = method.train(s, prep, r)
    distributed.use_all_cores()  # the other processes have left: saving and the audit are the main one's
    if trained.diverged_at is not None:
        raise KnowtuneError(
            f"Training diverged: the loss or weights became NaN/inf at step {trained.diverged_at}. Nothing "
            "non-finite was saved.", fix=f"lower the learning rate (now {s.learning_rate}) and run again.")
    with phase(f"Saving {trained.folder}/", unit="step"):
        save_pretrained_atomic(r.dir / trained.folder, *trained.objects, extra=trained.extra_files)
    training = training_summary(r, trained)
    privacy = trained.privacy
    del trained.objects
    method.finish(s, prep, r)
    after = method.audit(s, prep, str(r.dir), True, log) if audit_on else empty_audit()
    confidence = after.pop("confidence", None)
    result = RunResult(SCHEMA_VERSION, method.name, r.dir.name, s.model_dump(),
                       summary(before, after) if audit_on else None,
                       fact_table(before, after) if audit_on and method.per_fact else [], before, after,
                       training, trained.measures + method.audit_measures(s, prep, before, after), prep.coverage,
                       confidence, privacy)
    from knowtune.eval.report import write_reports

    data = result.to_json()
    write_json(r.dir / "audit.json", data)
    write_reports(r.dir, data, method.plots(r))
    return result


def open_run_dir(run_dir: Path, s: RunSettings, resume: bool) -> None:
    """Create the run folder and write config.yaml; refuse to overwrite another run unless resuming."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume and (run_dir / "config.yaml").exists():
        raise KnowtuneError(f"{run_dir} already holds a run.",
                            fix="add --resume to continue it, or choose another folder with --out.")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", s.to_yaml())


def last_complete_checkpoint(folder: Path, remove: bool = True) -> str | None:
    """The newest checkpoint that was written to the end; incomplete ones (a run killed mid-save) are removed
    (`remove`: by the main process only, when several train)."""
    if not folder.exists():
        return None
    found = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]))
    for ckpt in reversed(found):
        if any((ckpt / m).exists() for m in CHECKPOINT_MARKERS):
            return str(ckpt)
        if remove:
            shutil.rmtree(ckpt, ignore_errors=True)
    return None


def write_checkpoint(folder: Path, weights: dict, optimizer, scheduler, state: dict, tensors: dict | None = None,
                     keep: int = 1) -> None:
    """A checkpoint of a loop of our own (PPO, DP-SGD): the trainable `weights` (safetensors), the optimiser's
    and the learning-rate schedule's state, other `tensors` (safetensors) and `state` (state.json, a marker of
    completeness), written to a temporary folder and renamed into place; then all but the newest `keep`
    checkpoints beside it are removed."""
    import json

    import torch
    from safetensors.torch import save_file

    from knowtune.io import replace_dir

    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if tensors:
        save_file(tensors, str(tmp / "tensors.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state))
    replace_dir(tmp, folder)
    older = sorted((p for p in folder.parent.glob("checkpoint-*") if p != folder and p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]))
    for stale in older[:max(0, len(older) - keep + 1)]:
        shutil.rmtree(stale, ignore_errors=True)


def read_checkpoint(folder: Path, optimizer, scheduler, expected: set | None = None) -> tuple[dict, dict, dict]:
    """(weights, state, tensors) of a `write_checkpoint` folder; the optimiser's and schedule's state restored.
    `expected`: the names the weights must have (else a clear error: the run's settings changed)."""
    import json

    import torch
    from safetensors.torch import load_file

    weights = load_file(str(folder / "trainable.safetensors"))
    if expected is not None and set(weights) != set(expected):
        odd = sorted(set(weights) ^ set(expected))
        raise KnowtuneError(f"{folder} does not match this run's trainable weights ({odd[:3]}...).",
                            fix="resume with the settings the run started with (config.yaml).")
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    tensors = load_file(str(folder / "tensors.safetensors")) if (folder / "tensors.safetensors").exists() else {}
    return weights, json.loads((folder / "state.json").read_text()), tensors


def trim_metrics(r: Run) -> None:
    """On --resume, keep only the metrics of the steps the checkpoint holds (the rest will be logged again)."""
    ckpt = r.checkpoint()
    step = int(Path(ckpt).name.split("-")[-1]) if ckpt else 0
    r.log(f"Resuming from step {step} ({ckpt})." if ckpt else "No complete checkpoint yet: training from the start.")
    if r.metrics.exists():
        write_jsonl(r.metrics, [m for m in read_jsonl(r.metrics) if m.get("step", 0) <= step])


def training_summary(r: Run, trained: Trained) -> TrainingSummary:
    rows = read_jsonl(r.metrics) if r.metrics.exists() else []
    train = [(m["step"], m["loss"]) for m in rows if "loss" in m]
    evals = [(m["step"], m["eval_loss"]) for m in rows if "eval_loss" in m]
    dev = [(m["epoch"], m["eval_dev_accuracy"]) for m in rows if "eval_dev_accuracy" in m]
    overfit, note = overfitting_verdict(train, evals, dev)
    return TrainingSummary(trained.steps, trained.epochs, trained.best_checkpoint, trained.best_metric, train, evals,
                           dev, overfit, note, trained.note)


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


def audit_schema() -> dict:
    """audit.json's JSON Schema (docs/audit.schema.json holds a copy, kept equal by a test)."""
    from pydantic import TypeAdapter

    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **TypeAdapter(RunResult).json_schema(), "title": "knowtune audit.json"}


def validate_audit_file(data: dict) -> RunResult:
    """Check an audit.json against the one schema (raises pydantic's ValidationError naming the field)."""
    from pydantic import TypeAdapter

    return TypeAdapter(RunResult).validate_python(data, strict=False)
