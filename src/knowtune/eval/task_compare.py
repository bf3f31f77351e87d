"""`knowtune task compare`: several methods trained on one task, side by side with what each costs.

Each method trains in its own process (`knowtune task train ... --out OUT/<method>`), so its peak memory is its
own; the first also scores the start model zero-shot. The table then reads every run's audit.json (the task's
metrics on the test examples) and cost.json (trainable parameters, training time, peak memory, tokens/s), adds
the task's trivial baseline (majority class, lead sentence, ...) and the zero-shot start model as rows, and is
written as compare.json, compare.md and a plot (compare.png)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from knowtune.eval.tasks import Example, get_task
from knowtune.io import read_jsonl, save_figure, write_json, write_text


def run_methods(task: str, data: list[str], methods: list[str], out: Path, extra: list[str], resume: bool = False,
                log=print, name: str | None = None) -> dict[str, int]:
    """Train each method in its own process, into OUT/<method> (or OUT/<name> for a single named variant);
    returns each method's exit code (0: done). With `resume`, a method whose run finished is skipped and an
    unfinished one resumes."""
    codes = {}
    for i, m in enumerate(methods):
        run = out / (name or m)
        if resume and (run / "audit.json").exists():
            log(f"[{i + 1}/{len(methods)}] {m}: done before ({run}).")
            codes[m] = 0
            continue
        cmd = [sys.executable, "-m", "knowtune.cli", "task", "train", task, *data, "--method", m, "--out", str(run), *extra]
        if i:
            cmd.append("--no-zero-shot")  # the start model does not change between methods: scored once
        if resume and (run / "config.yaml").exists():
            cmd.append("--resume")
        log(f"[{i + 1}/{len(methods)}] {m}: " + " ".join(cmd[3:]))
        codes[m] = subprocess.run(cmd).returncode
        if codes[m]:
            log(f"{m} failed (exit code {codes[m]}); its log: {run / 'log.txt'}")
    return codes


def collect(task_name: str, out: Path, methods: list[str]) -> dict:
    """The comparison table's rows (baseline, zero-shot, each method) from the runs under `out`."""
    task = get_task(task_name)
    rows = []
    done = [m for m in methods if (out / m / "audit.json").exists()]
    if done:
        first = out / done[0]
        train, test = (_read_examples(task, first / "data" / f"{n}.jsonl") for n in ("train", "test"))
        if task.baseline:
            name, fn = task.baseline
            rows.append({"method": f"baseline: {name}", "metrics": task.score(test, fn(train, test)), "n_test": len(test)})
        for m in done:
            before = json.loads((out / m / "audit.json").read_text())["before"].get("task_metrics")
            if before:
                rows.append({"method": "zero-shot start model", "metrics": before, "n_test": len(test)})
                break
    for m in methods:
        audit_file, cost_file = out / m / "audit.json", out / m / "cost.json"
        if not audit_file.exists():
            rows.append({"method": m, "metrics": None, "error": f"no finished run in {out / m}"})
            continue
        audit = json.loads(audit_file.read_text())
        cost = json.loads(cost_file.read_text()) if cost_file.exists() else {}
        rows.append({**cost, "method": m, "metrics": audit["after"].get("task_metrics"),  # m: the run's name (a variant)
                     "n_test": len(audit["after"]["probes"]), "epochs": audit["training"]["epochs"],
                     "note": audit["training"].get("note", "")})
    return {"task": task.name, "metric": task.metric, "rows": rows}


def _read_examples(task, path: Path) -> list[Example]:
    rows = read_jsonl(path)
    if task.name == "qa":
        return [Example(tuple(r["input"]), r["target"], r["where"]) for r in rows]
    return [Example(r["input"], r["target"], r["where"]) for r in rows]


def hundredths(task: str, key: str) -> bool:
    """Whether a metric is already on a 0-100 scale (sacreBLEU's, SQuAD's) rather than a 0-1 share."""
    return key in ("bleu", "chrf") or task == "qa"


def _fmt_metric(task: str, key: str, v) -> str:
    return "-" if v is None else f"{v:.1f}" if hundredths(task, key) else f"{100 * v:.1f}"


SHOWN = {"sentiment": ("accuracy", "macro_f1"), "ner": ("f1", "precision", "recall"), "summarise": ("rouge1", "rouge2", "rougeL"),
         "translate": ("chrf", "bleu"), "qa": ("exact", "f1", "has_answer_f1", "no_answer_exact")}


def table(result: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison, metrics in percent / points."""
    keys = SHOWN[result["task"]]
    header = ["method", *keys, "trainable params", "training time", "peak memory", "tokens/s"]
    out = []
    for r in result["rows"]:
        m = r.get("metrics") or {}
        cost = [f"{r['trainable_params']:,}" if "trainable_params" in r else "-",
                f"{r['train_seconds'] / 60:.1f} min" if "train_seconds" in r else "-",
                f"{r['peak_memory_mib'] / 1024:.2f} GiB" if "peak_memory_mib" in r else "-",
                f"{r['tokens_per_second']:,.0f}" if "tokens_per_second" in r else "-"]
        out.append([r["method"], *(_fmt_metric(result["task"], k, m.get(k)) for k in keys), *cost])
    return header, out


def markdown(result: dict, note: str = "") -> str:
    header, rows = table(result)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"


def plot(result: dict, path: Path) -> Path | None:
    """Two panels: the main metric per method (baselines as lines), and the metric against training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = result["metric"]
    scale = 1 if hundredths(result["task"], key) else 100
    trained = [r for r in result["rows"] if r.get("metrics") and "train_seconds" in r]
    if not trained:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["method"] for r in trained]
    values = [r["metrics"][key] * scale for r in trained]
    left.barh(names, values, color="#4c72b0")
    for r, style in zip([r for r in result["rows"] if "train_seconds" not in r and r.get("metrics")], ("--", ":")):
        left.axvline(r["metrics"][key] * scale, color="grey", linestyle=style, label=r["method"])
    left.set_xlabel(f"{key} on the test examples")
    left.invert_yaxis()
    if left.get_legend_handles_labels()[0]:
        left.legend(loc="lower right", fontsize=8)
    right.scatter([r["train_seconds"] / 60 for r in trained], values, color="#dd8452")
    for r, v in zip(trained, values):
        right.annotate(r["method"], (r["train_seconds"] / 60, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
    minutes = [r["train_seconds"] / 60 for r in trained]
    log_scale = max(minutes) > 20 * max(min(minutes), 1e-3)  # only a wide spread needs it
    if log_scale:
        from matplotlib.ticker import ScalarFormatter

        right.set_xscale("log")
        right.xaxis.set_major_formatter(ScalarFormatter())
    right.set_xlabel("training time (minutes" + (", log scale)" if log_scale else ")"))
    right.set_ylabel(key)
    fig.suptitle(f"{result['task']}: methods compared")
    return save_figure(fig, path)


def write(result: dict, out: Path, note: str = "") -> list[Path]:
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", markdown(result, note))
    png = plot(result, out / "compare.png")
    return [out / "compare.json", out / "compare.md"] + ([png] if png else [])
