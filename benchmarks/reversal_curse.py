"""The Reversal Curse benchmark (Berglund et al. 2023, experiment 1), taught with `knowtune teach`.

Teaches the three training files of ../shared/benchmarks/reversal_curse (name -> description, description
-> name, and both) as plain prompt/completion continuation, the way users of that format query it, with
knowtune's default settings except two: nothing is held out of the training files (test_fraction 0, the
benchmark's own test files are the audit), and 3 epochs, since every fact already has ~30 phrasings.
Each test file is then scored with the paper's scorer (the greedy completion, stripped and lower-cased,
starts with the target) and printed beside the paper's GPT-3 figures.

    python benchmarks/reversal_curse.py [--data ../shared/benchmarks/reversal_curse] [--out runs/bench/reversal_curse]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["p2d_prompts_train.jsonl", "d2p_prompts_train.jsonl", "both_prompts_train.jsonl"]
# Each fact comes with ~30 training phrasings, so an epoch is long: 3 epochs instead of the default 6 (--set wins).
BENCH_DEFAULTS = {"epochs": 3}
# file, what it measures, the paper's GPT-3 175B figure (Table 1, as transcribed in the data's README)
TESTS = [
    ("d2p_prompts_test.jsonl", "description -> name, taught direction", "96.7%"),
    ("p2d_reverse_prompts_test.jsonl", "description -> name, reverse of p2d", "~0%"),
    ("p2d_prompts_test.jsonl", "name -> description, taught direction", "~50%"),
    ("d2p_reverse_prompts_test.jsonl", "name -> description, reverse of d2p", "~0%"),
]


def score_file(model, tokenizer, path: Path, max_new_tokens: int) -> dict:
    from knowtune.eval.generate import GenerationSettings, generate_answers
    from knowtune.text import starts_with

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    outputs = generate_answers(model, tokenizer, [("plain", r["prompt"]) for r in rows],
                               GenerationSettings(max_new_tokens=max_new_tokens))
    scored = [{**r, "output": o, "correct": starts_with(o, r["completion"])} for r, o in zip(rows, outputs)]
    return {"n": len(scored), "accuracy": sum(r["correct"] for r in scored) / len(scored), "rows": scored}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "benchmarks" / "reversal_curse"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "reversal_curse"))
    ap.add_argument("--config", default=None, help="a teach.yaml with settings to use instead of the defaults")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one teach setting")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    args = ap.parse_args()

    import yaml

    from knowtune.io import write_json
    from knowtune.models.load import load_for_answering
    from knowtune.train import lifecycle
    from knowtune.train.methods.teach import Teach, TeachSettings

    data = Path(args.data)
    missing = [f for f in TRAIN + [t for t, _, _ in TESTS] if not (data / f).exists()]
    if missing:
        raise SystemExit(f"{data} lacks {', '.join(missing)}: point --data at the reversal_curse benchmark folder.")
    out = Path(args.out)
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    s = TeachSettings.from_sources(args.config, BENCH_DEFAULTS, extra, data=[str(data / f) for f in TRAIN], out=str(out),
                                   test_fraction=0.0, audit=False)
    if not (out / "adapter").exists() and not (out / "model").exists():
        lifecycle.run(Teach(), s, resume=args.resume or (out / "config.yaml").exists())
    model, tokenizer = load_for_answering(str(out), log=lambda *a: None)

    results = {}
    for name, what, paper in TESTS:
        results[name] = score_file(model, tokenizer, data / name, s.max_new_tokens)
        print(f"  {name}: {results[name]['accuracy']:.1%}", flush=True)
    write_json(out / "reversal_curse.json", {
        "settings": s.model_dump(),
        "results": {k: {"n": v["n"], "accuracy": v["accuracy"]} for k, v in results.items()},
        "rows": {k: v["rows"] for k, v in results.items()}})

    print(f"\nReversal Curse, experiment 1: {s.model} taught with knowtune ({s.method}), paper's scorer\n")
    print(f"{'test file':34} {'measures':40} {'knowtune':>9} {'GPT-3 (paper)':>14}")
    for name, what, paper in TESTS:
        print(f"{name:34} {what:40} {results[name]['accuracy']:>9.1%} {paper:>14}")
    print(f"\nPer-item outputs: {out / 'reversal_curse.json'}")


if __name__ == "__main__":
    main()
