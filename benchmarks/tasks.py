"""The classic transfer-learning methods on public task sets (issue 19), not part of the tests.

For each task: every method that can train it, each in its own process (`knowtune task train`, so peak memory
is its own), one table per task with the task's metric, trainable parameters, training time, peak memory and
tokens/s, beside the trivial baseline (majority class, no entities, lead sentence, copy the source, always no
answer), the zero-shot start model and the published reference numbers. The data is read from
../shared/benchmarks/tasks (see its README for splits and licences), never copied into the project.

Subsampling (2 CPU cores): each task's `settings` below says what it trains on; the table says so too.

    python benchmarks/tasks.py sentiment [--methods feature,head,...] [--out runs/bench-tasks] [--resume]
    python benchmarks/tasks.py ner summarise translate qa
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "benchmarks" / "tasks"

BENCHES = {
    "sentiment": {
        "data": ["sentiment/rt-polarity.pos", "sentiment/rt-polarity.neg"], "eval": [],
        "split": "seeded 90/10 split of the 10,662 sentences (seed 0); 10% of the rest is dev, 300 dev sentences scored per epoch",
        "methods": ["feature", "head", "freeze", "ulmfit", "lora", "full"],
        "settings": {"*": ["epochs=2"], "full": ["epochs=1"]},
        "reference": "Kim (2014) CNN-multichannel: 81.1%, CNN-non-static 81.5% accuracy (10-fold cross-validation); "
                     "NBSVM (Wang & Manning 2012): 79.4%",
    },
    "ner": {
        "data": ["ner/wnut17train.conll"], "eval": ["ner/emerging.test.annotated"], "dev": ["ner/emerging.dev.conll"],
        "split": "WNUT-17 train / dev / test as published",
        "methods": ["lora+echo", "lora"],
        "settings": {"*": ["epochs=3", "dev_examples=300"], "lora+echo": ["epochs=3", "dev_examples=300", "echo=true"]},
        "reference": "WNUT-17 shared task systems: entity F1 roughly 26 to 42 (Derczynski et al. 2017)",
    },
    "summarise": {
        "data": ["summarization/scitldr_A_train.jsonl"], "eval": ["summarization/scitldr_A_test.jsonl"],
        "split": "SciTLDR-A train / test; trained on a seeded 500 of 1,992, tested on a seeded 150 of 618",
        "methods": ["lora"],
        "settings": {"*": ["epochs=1", "max_train_examples=500", "max_test_examples=150", "dev_examples=20",
                           "max_new_tokens=48"]},
        "reference": "SciTLDR-A test, ROUGE-1: BART 43.3, CATTS 43.8 (Cachola et al. 2020); lead sentence ~ 27",
    },
    "translate": {
        "data": ["translation/train.en.gz", "translation/train.de.gz"],
        "eval": ["translation/test_2016_flickr.en.gz", "translation/test_2016_flickr.de.gz"],
        "split": "Multi30k train / test 2016 (en->de); trained on a seeded 2,000 of 29,000, tested on 300 of 1,000",
        "methods": ["lora"],
        "settings": {"*": ["epochs=1", "max_train_examples=2000", "max_test_examples=300", "dev_examples=30",
                           "max_new_tokens=48"]},
        "reference": "WMT16 multimodal task 1 en->de (text-only Transformer / NMT): BLEU ~ 35-40",
    },
    "qa": {
        "data": ["qa/squad2_dev_subset_first5articles.json"], "eval": [],
        "split": "the 5-article SQuAD 2.0 subset split by article (seed 0): about a fifth of the questions held out",
        "methods": ["lora"],
        "settings": {"*": ["epochs=2", "test_fraction=0.2", "dev_examples=40", "max_new_tokens=24"]},
        "reference": "SQuAD 2.0 dev: BERT-base ~ 73 F1; always-no-answer ~ 50 F1 on the full dev set",
    },
}


def run_task(name: str, out: Path, methods: list[str] | None, resume: bool) -> str:
    from knowtune.eval import task_compare as tc

    bench = BENCHES[name]
    methods = methods or bench["methods"]
    data = [str(DATA / d) for d in bench["data"]]
    common = [a for f in bench["eval"] for a in ("--eval", str(DATA / f))]
    common += [a for f in bench.get("dev", []) for a in ("--dev", str(DATA / f))]
    folder = out / name
    for i, label in enumerate(methods):  # a label is a method, or method+variant (its own settings)
        settings = bench["settings"].get(label, bench["settings"]["*"])
        extra = common + [a for s in settings for a in ("--set", s)]
        # one method at a time, so each keeps its own settings; the first scores the zero-shot start model
        tc.run_methods(name, data, [label.split("+")[0]], folder, extra + (["--no-zero-shot"] if i else []),
                       resume=resume, name=label)
    result = tc.collect(name, folder, methods)
    settings_line = "; ".join(f"{m}: {' '.join(s)}" for m, s in bench["settings"].items())
    note = (f"Data: {bench['split']}. Settings ({'*' } = every method): {settings_line}. Published reference: "
            f"{bench['reference']}. Machine: {machine()}.")
    tc.write(result, folder, note)
    return f"## {name}\n\n" + tc.markdown(result, note)


def machine() -> str:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((l.split(":", 1)[1].strip() for l in flags.splitlines() if l.startswith("Model name")), platform.processor())
        have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f} " in f" {flags} "]
    except OSError:
        model, have = platform.processor(), []
    import os

    return f"{model}, {os.cpu_count()} cores, flags {' '.join(have) or 'n/a'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tasks", nargs="+", choices=list(BENCHES))
    ap.add_argument("--methods", help="comma-separated methods (default: each task's list)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-tasks")
    ap.add_argument("--resume", action="store_true", help="keep finished runs, resume unfinished ones")
    args = ap.parse_args()
    start = time.time()
    parts = [run_task(t, args.out, args.methods.split(",") if args.methods else None, args.resume) for t in args.tasks]
    text = "\n\n".join(parts) + f"\n\nWall time of this benchmark: {(time.time() - start) / 60:.0f} min.\n"
    (args.out / "tasks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
