"""Generality benchmark: does what `knowtune teach` learns hold on material nobody tuned it on?

Each set under benchmarks/generality/sets/ is a knowledge set in one user format (chat, Q&A,
prompt/completion, instruction, documents) with questions written apart from its data and in other words
(`heldout.jsonl`) and questions about its subject that the data never answers (`unknowns.jsonl`). Sets are
split (`set.yaml`): `tune` sets may be looked at while improving the recipe; `report` sets are only run.

For every set and recipe the benchmark trains with `knowtune teach DATA --out ...` (the user's command,
default settings: the run's own audit sees none of the benchmark's questions), then scores the saved model
itself, independently of the run's audit:
- held-out accuracy: greedy answer contains the answer key or an alias (whole words, normalised);
- unknowns declined: the answer refuses or says it does not know (rules below; not knowtune's judge, so a
  flaw in the product's judge cannot flatter the product);
- over-refusal: held-out questions, and the run's general-knowledge (retention) questions, declined;
- retention: the run's audit of the general-knowledge set, before and after.
The base model is scored the same way (recipe `base`). `--src` trains with another knowtune source tree
(e.g. a git worktree of an older commit) to put an older recipe beside the current one.

  python benchmarks/generality.py                       # report sets, current tree, recipe "current"
  python benchmarks/generality.py --split tune --recipe try-1 --set epochs=8
  git worktree add /tmp/kt-old <commit> && python benchmarks/generality.py --recipe old --src /tmp/kt-old/src
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SETS = HERE / "generality" / "sets"

# An answer declines when it says it does not know / has no information, or refuses to answer.
DECLINE = re.compile(
    r"\b(i (do not|don't|dont) (know|have|possess)|i('m| am) (not sure|unsure|not aware|unable|sorry)|"
    r"(no|not have any|don't have any|do not have any) (information|record|details|data|knowledge)|"
    r"(is|are|was|were)( not|n't) (mentioned|stated|given|listed|specified|available|known)|"
    r"not (in|part of) (my|the) (knowledge|information|data|records|handbook|documents)|"
    r"cannot (find|say|tell|answer|confirm)|can't (find|say|tell|answer|confirm)|unknown to me|"
    r"i have no (idea|information|record|details))", re.I)


def norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^\w\s]|_", " ", text).split())


def contains_key(output: str, answer: str, aliases: list[str]) -> bool:
    out = f" {norm(output)} "
    return any(norm(k) and f" {norm(k)} " in out for k in [answer, *aliases])


def declines(output: str) -> bool:
    return bool(DECLINE.search(output.replace("’", "'")))


def load_set(folder: Path) -> dict:
    text = (folder / "set.yaml").read_text()
    try:
        meta = yaml.safe_load(text)
    except yaml.YAMLError:  # a colon in a free-text note: read it as plain "key: value" lines
        meta = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        meta = {k.strip(): v.strip() for k, v in meta.items()}
    data = folder / "docs" if (folder / "docs").is_dir() else folder / "data.jsonl"
    rows = lambda name: [json.loads(l) for l in (folder / name).read_text().splitlines() if l.strip()]
    return {"name": folder.name, "meta": meta, "data": data, "heldout": rows("heldout.jsonl"),
            "unknowns": rows("unknowns.jsonl"), "style": "plain" if meta["format"] == "prompt-completion" else "chat"}


def teach(s: dict, run_dir: Path, src: str | None, overrides: list[str], log_file: Path) -> float:
    """Train with the user's command; returns wall-clock minutes (0 when a finished run is reused)."""
    if (run_dir / "audit.json").exists():
        return json.loads((run_dir / "bench_minutes.json").read_text()) if (run_dir / "bench_minutes.json").exists() else 0.0
    cmd = [sys.executable, "-m", "knowtune.cli", "teach", str(s["data"]), "--out", str(run_dir)]
    cmd += [a for o in overrides for a in ("--set", o)]
    if (run_dir / "config.yaml").exists():
        cmd.append("--resume")
    env = dict(os.environ, PYTHONPATH=src) if src else dict(os.environ)
    start = time.time()
    with open(log_file, "a") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        raise SystemExit(f"teach failed on {s['name']} (exit {rc}); see {log_file}")
    minutes = (time.time() - start) / 60
    (run_dir / "bench_minutes.json").write_text(json.dumps(minutes))
    return minutes


def answer_all(model_ref: str, s: dict) -> dict:
    """Greedy answers of one model to a set's held-out and unknown questions."""
    from knowtune.eval.generate import GenerationSettings, generate_scored
    from knowtune.models import load_for_answering

    model, tok = load_for_answering(model_ref, log=lambda *a: None)
    asked = lambda q: q if s["style"] == "plain" else [{"role": "user", "content": q}]
    items = [(s["style"], asked(r["question"])) for r in s["heldout"] + s["unknowns"]]
    scored = generate_scored(model, tok, items, GenerationSettings(max_new_tokens=48))
    outs, conf = [a for a, _ in scored], [c for _, c in scored]
    n = len(s["heldout"])
    return {"heldout": outs[:n], "unknowns": outs[n:], "heldout_confidence": conf[:n], "unknowns_confidence": conf[n:]}


def score(s: dict, answers: dict, audit: dict | None, which: str, floor: float | None = None, grounding=None) -> dict:
    held = [contains_key(o, r["answer"], r.get("aliases", [])) for o, r in zip(answers["heldout"], s["heldout"])]
    row = {"heldout": sum(held) / len(held),
           "unknowns_declined": sum(map(declines, answers["unknowns"])) / len(answers["unknowns"]),
           "over_refusal_heldout": sum(map(declines, answers["heldout"])) / len(held)}
    if grounding is not None:  # --grounded: an answer whose specifics the taught data does not give is declined
        kept = lambda q, o: not declines(o) and grounding.check(q, o) is not False  # noqa: E731
        held_kept = [kept(r["question"], o) for o, r in zip(answers["heldout"], s["heldout"])]
        row["grounded_heldout"] = sum(ok and k for ok, k in zip(held, held_kept)) / len(held)
        row["grounded_over_refusal"] = 1 - sum(held_kept) / len(held)
        row["grounded_unknowns_declined"] = 1 - sum(kept(r["question"], o) for o, r in zip(answers["unknowns"], s["unknowns"])) / len(s["unknowns"])
        if audit:
            ret = [kept(r["prompt"][-1]["content"], r["output"]) for r in audit[which]["retention"]]
            row["grounded_over_refusal_retention"] = 1 - sum(ret) / len(ret)
    if floor is not None and "heldout_confidence" in answers:  # --min-confidence auto --precision 0.95
        kept = [ok for ok, c in zip(held, answers["heldout_confidence"]) if c >= floor]
        row["confident_coverage"] = len(kept) / len(held)
        row["confident_precision"] = sum(kept) / len(kept) if kept else None
        unknown_kept = [c >= floor and not declines(o) for o, c in zip(answers["unknowns"], answers["unknowns_confidence"])]
        row["confident_unknowns_declined"] = 1 - sum(unknown_kept) / len(unknown_kept)
    if audit:
        ret = audit[which]["retention"]
        row["retention"] = audit[which]["retention_accuracy"]
        row["over_refusal_retention"] = sum(declines(r["output"]) for r in ret) / len(ret)
        row["audit_said"] = audit["after"]["probe_accuracy"] if which == "after" else None
    return row


def cached(path: Path, compute):
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)
    return value


def run_set(s: dict, args) -> dict:
    out = Path(args.out)
    run_dir = out / args.recipe / s["name"]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{s['name']}] teaching with recipe {args.recipe} ...", flush=True)
    minutes = teach(s, run_dir, args.src, args.set, out / f"{args.recipe}-{s['name']}.log")
    audit = json.loads((run_dir / "audit.json").read_text())
    base = cached(out / "base" / f"{s['name']}.json", lambda: answer_all(audit["settings"]["model"], s))
    tuned = cached(run_dir / "bench_answers.json", lambda: answer_all(str(run_dir), s))
    floor = None
    if (run_dir / "confidence.json").exists():
        from knowtune.eval.calibration import threshold_for

        floor = threshold_for(run_dir, 0.95)
    from knowtune.eval.grounding import Grounding

    grounding = Grounding.of_run(run_dir)  # the same taught data gates the base model's answers
    return {"set": s["name"], "format": s["meta"]["format"], "split": s["meta"]["split"], "minutes": minutes,
            "base": score(s, base, audit, "before", grounding=grounding),
            args.recipe: score(s, tuned, audit, "after", floor, grounding)}


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table(results: list[dict], recipes: list[str]) -> str:
    head = ("| set | format | split | recipe | held-out | (audit said) | unknowns declined | over-refusal held-out "
            "| over-refusal retention | retention | retention drop | at 95% floor: answered / right "
            "| --grounded: held-out right / declined / unknowns declined / retention declined | minutes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        for name in ["base", *recipes]:
            if name not in r:
                continue
            x = r[name]
            drop = None if name == "base" or x.get("retention") is None else 100 * (r["base"]["retention"] - x["retention"])
            lines.append(f"| {r['set']} | {r['format']} | {r['split']} | {name} | {pct(x['heldout'])} | "
                         f"{pct(x.get('audit_said'))} | {pct(x['unknowns_declined'])} | {pct(x['over_refusal_heldout'])} | "
                         f"{pct(x.get('over_refusal_retention'))} | {pct(x.get('retention'))} | "
                         f"{'-' if drop is None else format(drop, '+.1f')} | "
                         f"{pct(x.get('confident_coverage'))} / {pct(x.get('confident_precision'))} | "
                         f"{pct(x.get('grounded_heldout'))} / {pct(x.get('grounded_over_refusal'))} / "
                         f"{pct(x.get('grounded_unknowns_declined'))} / {pct(x.get('grounded_over_refusal_retention'))} | "
                         f"{'' if name == 'base' else format(r['minutes'], '.1f')} |")
    return "\n".join(lines)


def compare(out: Path) -> str:
    """One table of every recipe measured under `out` (results-<recipe>.json), set by set."""
    by_set: dict[str, dict] = {}
    recipes = []
    for path in sorted(out.glob("results-*.json")):
        recipe = path.stem[len("results-"):]
        recipes.append(recipe)
        for r in json.loads(path.read_text()):
            by_set.setdefault(r["set"], {k: v for k, v in r.items() if k != recipe}).setdefault("minutes_by", {})[recipe] = r["minutes"]
            by_set[r["set"]][recipe] = r[recipe]
    rows = []
    for r in by_set.values():
        for recipe in recipes:
            if recipe in r:
                rows.append({**r, "minutes": r["minutes_by"][recipe]} | {"_only": recipe})
    lines = table([], []).splitlines()
    for row in rows:
        body = table([{k: v for k, v in row.items() if k not in recipes or k == row["_only"]}], [row["_only"]]).splitlines()[2:]
        lines += [b for b in body if f"| base |" not in b or row["_only"] == recipes[0]]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=str(SETS), help="folder of sets (each with set.yaml, data, heldout.jsonl, unknowns.jsonl)")
    p.add_argument("--split", choices=["tune", "report", "all"], default="report", help="which sets to run")
    p.add_argument("--only", nargs="*", default=[], help="run only these set names")
    p.add_argument("--recipe", default="current", help="name of the recipe being measured (a column of the table)")
    p.add_argument("--src", default=None, help="train with the knowtune package under this src folder (an older recipe)")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE passed to teach as --set (repeatable)")
    p.add_argument("--out", default="runs/bench/generality", help="where runs, answers and results go")
    p.add_argument("--compare", action="store_true", help="print every recipe measured so far side by side, and stop")
    args = p.parse_args()
    if args.compare:
        return print(compare(Path(args.out)))
    folders = sorted(f for f in Path(args.sets).iterdir() if (f / "set.yaml").exists())
    sets = [load_set(f) for f in folders]
    sets = [s for s in sets if (args.split == "all" or s["meta"]["split"] == args.split) and (not args.only or s["name"] in args.only)]
    out, results = Path(args.out), []
    for s in sets:  # results are written after every set, so a long run shows its figures as it goes
        results.append(run_set(s, args))
        (out / f"results-{args.recipe}.json").write_text(json.dumps(results, indent=1))
        text = table(results, [args.recipe])
        (out / f"results-{args.recipe}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
