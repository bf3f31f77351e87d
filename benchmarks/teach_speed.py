"""Training speed and peak memory: knowtune's training step against a plain trl SFTTrainer + LoRA run.

Both runs train the same model on the same rows (the example pack's training views, rendered to the same
prompt and completion text) with the same batch size, learning rate, LoRA rank and number of epochs, one
after the other, each in a fresh Python process so that peak memory is measured cleanly:

- trl:      SFTTrainer with trl's defaults (gradient checkpointing on, bf16 on), prompt/completion rows.
- knowtune: the trainer `knowtune teach` builds (answer-only vocabulary projection, length-grouped batches,
            bf16 autocast where the CPU has it, no gradient checkpointing), with the audit and checkpoints off.

Tokens per second counts the real (unpadded) tokens of every example seen, divided by the wall time of
`trainer.train()`. Peak memory is the process's peak resident set size on CPU (the whole process: Python,
libraries, model, optimiser, activations), or peak allocated GPU memory on CUDA.

    python benchmarks/teach_speed.py [--pack examples/brindlemoor_kite_works.yaml] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rows_for(tokenizer, settings) -> list[dict]:
    """The pack's training views as rendered prompt/completion text (the completion without its end token,
    which both trainers append)."""
    from knowtune.train.methods.teach import prepare_knowledge
    from knowtune.train.tokenize import render

    prep = prepare_knowledge(settings)
    eos = tokenizer.eos_token or ""
    rows = []
    for item in prep.items:
        prompt, completion = render(tokenizer, item)
        if eos and completion.endswith(eos):
            completion = completion[: -len(eos)]
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def child(which: str, args) -> dict:
    import torch

    from knowtune.train.methods.teach import TeachSettings
    from knowtune.models import load_model_and_tokenizer

    torch.manual_seed(0)
    s = TeachSettings(data=[args.pack], model=args.model, epochs=args.epochs, audit=False, max_steps=-1)
    model, tok = load_model_and_tokenizer(s.model, log=lambda *a: None)
    rows = rows_for(tok, s)
    out = Path(tempfile.mkdtemp(prefix=f"teach-speed-{which}-"))
    if which == "trl":
        trainer = _trl_trainer(model, tok, rows, s, out)
    else:
        trainer = _knowtune_trainer(model, tok, rows, s, out)
    tokens = sum(len(r) for r in trainer.train_dataset["input_ids"]) * s.epochs
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"which": which, "examples": len(trainer.train_dataset), "tokens": tokens, "seconds": seconds,
            "tokens_per_second": tokens / seconds, "peak_memory_bytes": peak,
            "memory_kind": "peak GPU memory allocated" if torch.cuda.is_available() else "peak RSS",
            "steps": trainer.state.global_step, "batch_size": s.batch_size, "learning_rate": s.learning_rate,
            "lora_r": s.lora_r,
            "final_loss": next((h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h), None)}


def _lora(s):
    from peft import LoraConfig

    return LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def _trl_trainer(model, tok, rows, s, out):
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg = SFTConfig(output_dir=str(out), num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
                    learning_rate=s.learning_rate, max_length=s.max_length, report_to="none", save_strategy="no",
                    logging_steps=10, seed=0, use_cpu=not torch.cuda.is_available())
    return SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok,
                      peft_config=_lora(s))


def _knowtune_trainer(model, tok, rows, s, out):
    from knowtune.data.augment import TrainItem
    from knowtune.train.methods.teach import build_trainer

    items = [TrainItem("plain", r["prompt"], r["completion"], "bench") for r in rows]
    trainer, _ = build_trainer(s, model, tok, items, [], out)
    trainer.args.save_strategy = "no"
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", default=str(ROOT / "examples" / "brindlemoor_kite_works.yaml"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "teach_speed.json"))
    ap.add_argument("--child", choices=["trl", "knowtune"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return

    results = {}
    for which in ("trl", "knowtune"):
        print(f"Running {which} ...", flush=True)
        cmd = [sys.executable, __file__, "--child", which, "--pack", args.pack, "--model", args.model,
               "--epochs", str(args.epochs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"The {which} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[which] = json.loads(line[len("RESULT "):])

    t, k = results["trl"], results["knowtune"]
    speed, memory = k["tokens_per_second"] / t["tokens_per_second"], k["peak_memory_bytes"] / t["peak_memory_bytes"]
    print(f"\nteach_speed: {args.model}, LoRA r{k['lora_r']}, batch {k['batch_size']}, lr {k['learning_rate']:g}, "
          f"{args.epochs} epochs of {Path(args.pack).name} ({k['examples']} examples), {k['memory_kind']}\n")
    print(f"{'':10} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'peak MiB':>9} {'loss':>6}")
    for name, r in (("trl", t), ("knowtune", k)):
        print(f"{name:10} {r['tokens']:>8} {r['seconds']:>8.1f} {r['tokens_per_second']:>9.0f} "
              f"{r['peak_memory_bytes'] / 2**20:>9.0f} {r['final_loss'] or float('nan'):>6.3f}")
    print(f"\nspeed ratio (knowtune / trl): {speed:.2f}x   (target >= 1.2x)")
    print(f"memory ratio (knowtune / trl): {memory:.2f}x   (target <= 1.1x)")
    from knowtune.io import write_json

    write_json(Path(args.out), {"trl": t, "knowtune": k, "speed_ratio": speed, "memory_ratio": memory})
    print(f"Written to {args.out}")


if __name__ == "__main__":
    main()
