"""Memory estimate against measured peak: LoRA and full fine-tuning of the default model on this machine's CPU at
two batch sizes, each measured in its own process (peak resident memory, `ru_maxrss`), beside
`knowtune.models.memory.training_memory`'s estimate and their ratio.

    python benchmarks/memory.py [--batches 4 16] [--length 256] [--steps 3] [--json out.json]
    python benchmarks/memory.py --runtime     # the resident memory of the libraries alone (RUNTIME_BYTES)

Each measurement trains the way `knowtune teach` does (its trainer, bf16 where the CPU has it, answer-only
logits) on rows of exactly --length tokens for a few steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def runtime() -> int:
    """Resident memory after importing what training imports and building the tokenizer, before any model."""
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from knowtune.models.load import load_tokenizer, resolve_model_dir

    load_tokenizer(resolve_model_dir("smollm2-135m"))
    return peak_bytes()


def one(method: str, batch: int, length: int, steps: int) -> dict:
    """Train `steps` steps of `method` at `batch` rows of `length` tokens; the peak and what the estimate says."""
    import tempfile
    from pathlib import Path

    from knowtune.data.augment import TrainItem
    from knowtune.models.load import load_for_inference
    from knowtune.models.memory import Architecture, training_memory
    from knowtune.models.precision import use_bf16
    from knowtune.train.methods.teach import TeachSettings, build_trainer
    from knowtune.train.tokenize import encode_all

    model, tokenizer = load_for_inference("smollm2-135m", log=lambda *a: None)
    words = "the river keeps a quiet record of every boat that passes under the old stone bridge".split()
    half = " ".join(words[i % len(words)] for i in range(length // 2))  # question and answer about half each
    items = [TrainItem("chat", [{"role": "user", "content": half}], half + " " + half, "bench", "answer")
             for _ in range(batch * steps)]
    rows = encode_all(tokenizer, items, length)
    assert all(len(r["input_ids"]) == length for r in rows), "rows must be exactly --length tokens"
    share = sum(sum(r["completion_mask"]) for r in rows) / (length * len(rows))
    with tempfile.TemporaryDirectory() as tmp:
        s = TeachSettings(data=["-"], method=method, batch_size=batch, max_length=length, epochs=1, max_steps=steps,
                          learning_rate=1e-4, out=tmp, audit=False)
        trainer, _ = build_trainer(s, model, tokenizer, items, [], Path(tmp))
        trainer.train()
    bf16 = use_bf16("auto")
    est = training_memory(Architecture.from_config(model.config), method, batch, length, "cpu", bf16,
                          answer_share=share)
    return {"method": method, "batch": batch, "length": length, "bf16": bf16, "answer_share": round(share, 3),
            "measured": peak_bytes(), "estimate": est.total, "terms": est.terms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--methods", nargs="+", default=["lora", "full"])
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--runtime", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.runtime:
        print(json.dumps({"runtime": runtime()}))
        return 0
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.length, a.steps)))
        return 0
    base = json.loads(subprocess.run([sys.executable, __file__, "--runtime"], check=True, capture_output=True,
                                     text=True).stdout.strip().splitlines()[-1])["runtime"]
    print(f"libraries alone (runtime): {base / 2**30:.2f} GiB")
    print(f"{'method':<6} {'batch':>5} {'length':>6} {'estimate':>9} {'measured':>9} {'ratio':>6}")
    rows = []
    for method in a.methods:
        for batch in a.batches:
            out = subprocess.run([sys.executable, __file__, "--one", method, str(batch), "--length", str(a.length),
                                  "--steps", str(a.steps)], check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["ratio"] = round(r["estimate"] / r["measured"], 3)
            rows.append(r)
            print(f"{method:<6} {batch:>5} {a.length:>6} {r['estimate'] / 2**30:>8.2f}G {r['measured'] / 2**30:>8.2f}G "
                  f"{r['ratio']:>6.2f}", flush=True)
    worst = max(abs(r["ratio"] - 1) for r in rows)
    print(f"largest error: {worst:.0%} (target: within 25%)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runtime": base, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
