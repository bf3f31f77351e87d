"""Training speed and peak memory: knowtune's training step against a plain trl SFTTrainer + LoRA run.

Both runs train the same model on the same rows (the example pack's training views, rendered to the same
prompt and completion text) with the same batch size, learning rate, LoRA rank and number of epochs, one
after the other, each in a fresh Python process so that peak memory is measured cleanly:

- trl:      SFTTrainer with trl's defaults (gradient checkpointing on, bf16 on), prompt/completion rows.
- knowtune: the trainer `knowtune teach` builds (answer-only vocabulary projection, length-grouped batches,
            bf16 autocast where the CPU has it, no gradient checkpointing, eager attention on CPU), with the audit
            and checkpoints off.
- profile:  a few steps of the knowtune trainer under torch.profiler: the share of step time in matmuls,
            attention, the vocabulary projection and loss, the optimiser, the data pipeline and other ops; one
            step's FLOPs (torch's FlopCounterMode), and from them the share of this machine's matmul peak
            (a 2048x2048 matmul in the step's precision) the timed knowtune run reached. The ops that took the
            most time, by input shape, go to OUT with the suffix .profile.txt.
- audit:    the start model's knowledge audit on the pack, as `knowtune teach` runs it: questions per second,
            answering in bf16 (where the CPU has it) and in fp32 (before), side by side.
- --ablate: one more knowtune run without each speed lever (--without turns one off everywhere), to show
            what each is worth.

Tokens per second counts the real (unpadded) tokens of every example seen, divided by the wall time of
`trainer.train()`. Peak memory is the process's peak resident set size on CPU (the whole process: Python,
libraries, model, optimiser, activations), or peak allocated GPU memory on CUDA.

    python benchmarks/teach_speed.py [--pack examples/brindlemoor_kite_works.yaml] [--epochs 2] [--ablate]
                                     [--without LEVER] [--profile-steps 6] [--no-audit] [--fp32]
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


def trainer_for(which: str, args, **settings):
    """(settings, trainer) of a child: the model loaded afresh, the pack's rows, trl's or knowtune's trainer."""
    import torch

    from knowtune.models import load_model_and_tokenizer
    from knowtune.train.methods.teach import TeachSettings

    torch.manual_seed(0)
    s = TeachSettings(data=[args.pack], model=args.model, epochs=args.epochs, audit=False,
                      bf16="false" if args.fp32 else "auto", **settings)
    model, tok = load_model_and_tokenizer(s.model, log=lambda *a: None)
    out = Path(tempfile.mkdtemp(prefix=f"teach-speed-{which}-"))
    make = _trl_trainer if which == "trl" else _knowtune_trainer
    return s, make(model, tok, rows_for(tok, s), s, out)


def child(which: str, args) -> dict:
    import torch

    like_trl = {"lr_scheduler": "linear", "warmup_ratio": 0.0} if args.like_trl else {}  # trl's defaults
    s, trainer = trainer_for(which, args, max_steps=-1, **like_trl)
    if args.like_trl:  # trl's batches: random order, not grouped by length
        trainer.args.train_sampling_strategy = "random"
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
            "lora_r": s.lora_r, "precision": "bf16 autocast" if trainer.args.bf16 else "fp32",
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
                    logging_steps=10, seed=0, use_cpu=not torch.cuda.is_available(), **({"bf16": False} if s.bf16 == "false" else {}))
    return SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok,
                      peft_config=_lora(s))


# The speed levers of the knowtune step, each of which --without turns off (to show what it is worth).
LEVERS = {
    "eager-attention": ("knowtune.train.methods.teach", "cpu_training_attention", lambda model: None),
    "padding-to-16": ("knowtune.train.methods.teach", "PAD_TO", None),  # off: pad to the longest row only
    "lean-lora": ("knowtune.train.methods.teach", "lean_lora", lambda model: 0),  # off: peft's own LoRA forward
    # answering (the audit's runs): bf16 linear weights under autocast, against the fp32 model
    "bf16-answering": ("knowtune.models.precision", "for_answering", lambda model, precision="auto": model),
}
TRAINING_LEVERS = [name for name in LEVERS if name != "bf16-answering"]


def without(levers: list[str]) -> None:
    """Turn levers off in this process (the plain path they replace runs instead)."""
    import importlib

    for name in levers:
        module, attr, off = LEVERS[name]
        setattr(importlib.import_module(module), attr, off)


def _knowtune_trainer(model, tok, rows, s, out):
    from knowtune.data.augment import TrainItem
    from knowtune.train.methods.teach import build_trainer

    items = [TrainItem("plain", r["prompt"], r["completion"], "bench") for r in rows]
    trainer, _ = build_trainer(s, model, tok, items, [], out)
    trainer.args.save_strategy = "no"
    return trainer


# --- where a step's time goes ---------------------------------------------------------------------------
CATEGORIES = ("matmuls", "attention", "vocabulary projection and loss", "optimiser", "data pipeline", "other ops")


def category(event, vocab: int) -> str:
    """The share of step time an op's own time counts to: by the phase it runs in (the data loader, the
    optimiser step), else by what it is (a matmul on the vocabulary's width counts to the projection)."""
    parent = event
    while parent is not None:
        if parent.name.startswith("enumerate(DataLoader)"):
            return "data pipeline"
        if parent.name.startswith("Optimizer.") or "clip_grad" in parent.name:
            return "optimiser"
        parent = parent.cpu_parent
    name = event.name
    if ("scaled_dot_product" in name or "flash_attention" in name or "softmax" in name and "log_softmax" not in name
            or name in ("aten::bmm", "aten::baddbmm")):  # SDPA's kernels, or eager attention's batched matmuls and softmax
        return "attention"
    if any(vocab in shape for shape in (event.input_shapes or []) if isinstance(shape, (list, tuple))) \
            or "log_softmax" in name or "nll_loss" in name or "cross_entropy" in name:
        return "vocabulary projection and loss"
    if name in ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear"):
        return "matmuls"
    return "other ops"


def profile_child(args) -> dict:
    """Train a few steps with the knowtune trainer: count the FLOPs of one step (torch's FlopCounterMode:
    matmuls and attention, forward and backward) and profile the next ones (torch.profiler): each op's own
    time by category, and the wall time of the steps."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import TrainerCallback

    flop_step, n = 4, args.profile_steps  # steps 1-3 warm up, step 4 has its FLOPs counted, the next n are profiled
    _, trainer = trainer_for("profile", args, max_steps=flop_step + n + 1)
    collate, tokens = trainer.data_collator, []

    def counting(features):  # the real (unpadded) tokens of each batch, as the timed runs count them
        tokens.append(sum(len(f["input_ids"]) for f in features))
        return collate(features)

    trainer.data_collator = counting
    state = {}

    class Profile(TrainerCallback):
        def on_step_begin(self, a, st, control, **kw):
            if st.global_step == flop_step - 1:
                state["flops"] = FlopCounterMode(display=False)
                state["flops"].__enter__()
                state["flop_tokens"] = tokens[-1]

        def on_step_end(self, a, st, control, **kw):
            if st.global_step == flop_step:
                state["flops"].__exit__(None, None, None)
                state["prof"] = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
                state["prof"].__enter__()
                state["t0"], state["n0"] = time.perf_counter(), len(tokens)
            elif st.global_step == flop_step + n:
                state["seconds"] = time.perf_counter() - state["t0"]
                state["tokens"] = sum(tokens[state["n0"]:])
                state["prof"].__exit__(None, None, None)

    trainer.add_callback(Profile())
    trainer.train()
    vocab = trainer.model.get_output_embeddings().weight.shape[0]
    own = dict.fromkeys(CATEGORIES, 0.0)
    for e in state["prof"].events():
        own[category(e, vocab)] += e.self_cpu_time_total / 1e6
    wall = state["seconds"]
    own["python and the rest"] = max(0.0, wall - sum(own.values()))
    return {"which": "profile", "steps": n, "seconds": wall, "tokens": state["tokens"],
            "flops_per_token": state["flops"].get_total_flops() / state["flop_tokens"],
            "shares": {k: v / wall for k, v in own.items()}, "bf16": bool(trainer.args.bf16),
            "threads": torch.get_num_threads(),
            "top_ops": state["prof"].key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30)}


def audit_child(args) -> dict:
    """Time the knowledge audit of the start model on the pack, as `knowtune teach` runs it: the held-out
    probes, the retention set and the unknown questions, generated and scored; questions per second."""
    import torch

    from knowtune.eval.audit import audit_model
    from knowtune.train.methods.teach import Teach, TeachSettings

    torch.manual_seed(0)
    s = TeachSettings(data=[args.pack], model=args.model)
    aset = Teach().prepare(s, log=lambda *a: None).audit
    start = time.perf_counter()
    audit = audit_model(s.model, aset, after=False, log=lambda *a: None)
    seconds = time.perf_counter() - start  # the model's loading included, as in a run
    n = len(audit["probes"]) + len(audit["retention"]) + len(audit["unknowns"])
    return {"which": "audit", "questions": n, "seconds": seconds, "questions_per_second": n / seconds,
            "probe_accuracy": audit["probe_accuracy"], "retention_accuracy": audit["retention_accuracy"]}


def matmul_peak(dtype_name: str, size: int = 2048, reps: int = 10) -> float:
    """FLOP/s of a size x size matmul in this process's threads: the ceiling a training step's matmuls have."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size ** 3 * reps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", default=str(ROOT / "examples" / "brindlemoor_kite_works.yaml"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "teach_speed.json"))
    ap.add_argument("--profile-steps", type=int, default=6, help="training steps profiled for the time shares (0: none)")
    ap.add_argument("--no-audit", dest="audit", action="store_false", help="skip timing the start model's audit")
    ap.add_argument("--without", action="append", default=[], choices=sorted(LEVERS),
                    help="turn a speed lever off in the knowtune runs (repeatable); --ablate runs one knowtune run without each")
    ap.add_argument("--fp32", action="store_true", help="train in fp32 (bf16 off), as on a CPU without bf16")
    ap.add_argument("--ablate", action="store_true", help="also time knowtune without each lever, one run per lever")
    ap.add_argument("--explain-loss", action="store_true",
                    help="also run knowtune with trl's schedule (linear, no warm-up) and batch order (random, not grouped by length)")
    ap.add_argument("--like-trl", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=["trl", "knowtune", "profile", "audit"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        without(args.without)
        result = {"profile": profile_child, "audit": audit_child}.get(args.child, lambda a: child(args.child, a))(args)
        print("RESULT " + json.dumps(result), flush=True)
        return

    results = {}
    off = [f"--without={x}" for x in args.without]
    runs = [("trl", "trl", []), ("knowtune", "knowtune", off)]
    runs += [("profile", "profile", off)] if args.profile_steps > 0 else []
    runs += [(f"knowtune without {lever}", "knowtune", [*off, f"--without={lever}"]) for lever in TRAINING_LEVERS if args.ablate]
    runs += [("knowtune, trl's schedule and order", "knowtune", [*off, "--like-trl"])] if args.explain_loss else []
    runs += [("audit", "audit", off), ("audit without bf16-answering", "audit", [*off, "--without=bf16-answering"])] if args.audit else []
    for name, which, extra in runs:
        print(f"Running {name} ...", flush=True)
        cmd = [sys.executable, __file__, "--child", which, "--pack", args.pack, "--model", args.model,
               "--epochs", str(args.epochs), "--profile-steps", str(args.profile_steps), *(["--fp32"] if args.fp32 else []), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"The {name} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[name] = json.loads(line[len("RESULT "):])

    t, k = results["trl"], results["knowtune"]
    speed, memory = k["tokens_per_second"] / t["tokens_per_second"], k["peak_memory_bytes"] / t["peak_memory_bytes"]
    print(f"\nteach_speed: {args.model}, LoRA r{k['lora_r']}, batch {k['batch_size']}, lr {k['learning_rate']:g}, "
          f"{args.epochs} epochs of {Path(args.pack).name} ({k['examples']} examples), knowtune in {k['precision']}, "
          f"trl in {t['precision']}, {k['memory_kind']}\n")
    print(f"{'':36} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'peak MiB':>9} {'loss':>6}")
    for name, r in [(n, r) for n, r in results.items() if n.startswith(("trl", "knowtune"))]:
        print(f"{name:36} {r['tokens']:>8} {r['seconds']:>8.1f} {r['tokens_per_second']:>9.0f} "
              f"{r['peak_memory_bytes'] / 2**20:>9.0f} {r['final_loss'] or float('nan'):>6.3f}")
    if args.without:
        print(f"\n(knowtune here without: {', '.join(args.without)})")
    print(f"\nspeed ratio (knowtune / trl): {speed:.2f}x   (target >= 4x)")
    print(f"memory ratio (knowtune / trl): {memory:.2f}x   (target <= 1.0x)")
    summary = {**results, "speed_ratio": speed, "memory_ratio": memory}
    for name, r in results.items():
        if name.startswith("knowtune without"):
            print(f"{name[len('knowtune '):]}: {k['tokens_per_second'] / r['tokens_per_second']:.2f}x faster with it")
    if "profile" in results:
        summary["profile"] = report_profile(results["profile"], k, args.out)
    if "audit" in results:
        print("\naudit of the start model (loading included):")
        for name in ("audit without bf16-answering", "audit"):
            a = results[name]
            print(f"  {'fp32 (before)' if 'without' in name else 'bf16 answering':16} {a['questions']} questions in "
                  f"{a['seconds']:.0f} s = {a['questions_per_second']:.1f} questions/s; held-out "
                  f"{a['probe_accuracy']:.1%}, retention {a['retention_accuracy']:.1%}")
        print(f"  {results['audit']['questions_per_second'] / results['audit without bf16-answering']['questions_per_second']:.2f}x faster")
    from knowtune.io import write_json

    write_json(Path(args.out), summary)
    print(f"Written to {args.out}")


def report_profile(p: dict, k: dict, out: str) -> dict:
    """Print where the knowtune step's time goes and how near the matmul ceiling it runs."""
    import torch

    dtype = "bfloat16" if p["bf16"] else "float32"
    peak = matmul_peak(dtype)
    achieved = p["flops_per_token"] * k["tokens_per_second"]
    ceiling = peak / p["flops_per_token"]
    print(f"\nWhere a knowtune step's time goes ({p['steps']} steps profiled, {p['tokens'] / p['seconds']:.0f} tokens/s "
          f"while profiled, {p['threads']} threads):")
    for name, share in p["shares"].items():
        print(f"  {name:32} {share:6.1%}")
    print(f"\n{p['flops_per_token'] / 1e9:.2f} GFLOP per trained token (matmuls and attention, forward and backward; "
          f"the work on padding included)")
    print(f"{dtype} matmul peak of this machine (2048x2048, {torch.get_num_threads()} threads): {peak / 1e12:.2f} TFLOP/s "
          f"-> ceiling {ceiling:.0f} tokens/s")
    print(f"the knowtune step reaches {achieved / 1e12:.3f} TFLOP/s = {achieved / peak:.0%} of that peak")
    table = Path(out).with_suffix(".profile.txt")
    table.write_text(p.pop("top_ops"))
    print(f"the ops that took the most time, by input shape: {table}")
    return {**p, "matmul_peak_flops": peak, "matmul_dtype": dtype, "ceiling_tokens_per_second": ceiling,
            "share_of_peak": achieved / peak}


if __name__ == "__main__":
    main()
