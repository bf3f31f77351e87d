"""Distillation on the example pack (`make demo`'s run as the teacher): a student with 14 of SmolLM2-135M's 30
blocks, trained once without the teacher (--kd-weight 0) and once with it, and every figure the issue asks for
beside its target: the student's share of the teacher's parameters, its generation speed against the teacher's
(measured in one process), the share of the teacher's held-out accuracy it keeps, retention, and what the teacher
added over the same student trained alone.

    python benchmarks/distill.py [--teacher runs/demo] [--out runs/distill] [--student layers=14] [--set K=V ...]

Finished runs are reused; unfinished ones resume.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def knowtune(*args: str) -> None:
    cmd = [sys.executable, "-m", "knowtune.cli", *args]
    print("$ knowtune " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def run(out: Path, *args: str) -> dict:
    if not (out / "audit.json").exists():
        knowtune(*args, "--out", str(out), *(["--resume"] if (out / "config.yaml").exists() else []))
    return json.loads((out / "audit.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "distill")
    ap.add_argument("--student", default="layers=14")
    ap.add_argument("--set", nargs="*", default=[], help="more distill settings for both students, KEY=VALUE")
    a = ap.parse_args()
    if not (a.teacher / "audit.json").exists():
        run(a.teacher, "teach", str(ROOT / "examples" / "brindlemoor_kite_works.yaml"), "--config",
            str(ROOT / "configs" / "teach.yaml"))
    extra = [x for kv in a.set for x in ("--set", kv)]
    # the student with the teacher first (the figure the targets are about), then alone; the alone run's figures
    # reach the first one's report only when it existed first (delete runs/distill/kd to redo it with them)
    done = (a.out / "alone" / "audit.json").exists()
    kd = run(a.out / "kd", "distill", str(a.teacher), "--student", a.student,
             *(["--without-teacher", str(a.out / "alone")] if done else []), *extra)
    alone = run(a.out / "alone", "distill", str(a.teacher), "--student", a.student, "--kd-weight", "0", *extra)
    speed = json.loads((a.out / "kd" / "distill.json").read_text())
    s, s0 = kd["summary"], alone["summary"]
    teacher_acc, student_acc = s["probe_accuracy_before"], s["probe_accuracy_after"]
    kept = student_acc / teacher_acc if teacher_acc else float("nan")
    rows = [
        ("parameters, student / teacher", f"{speed['parameter_share']:.1%}", "<= 60%", speed["parameter_share"] <= 0.6),
        ("generation tokens/s, student / teacher", f"{speed['speedup']:.2f}x ({speed['student']['tokens_per_second']:.0f} "
         f"vs {speed['teacher']['tokens_per_second']:.0f})", ">= 1.6x", speed["speedup"] >= 1.6),
        ("held-out accuracy, teacher", f"{teacher_acc:.1%}", "", None),
        ("held-out accuracy, student (with the teacher)", f"{student_acc:.1%} = {kept:.0%} of the teacher's", ">= 85%",
         kept >= 0.85),
        ("held-out accuracy, student without the teacher", f"{s0['probe_accuracy_after']:.1%}", "", None),
        ("general knowledge: teacher / student / student alone",
         f"{s['retention_before']:.1%} / {s['retention_after']:.1%} / {s0['retention_after']:.1%}", "reported", None),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("  met" if ok else "  MISSED")
        print(f"{name:<{width}}  {value:<40} {target}{mark}")
    (a.out / "compare.json").write_text(json.dumps({"speed": speed, "kd": s, "alone": s0, "kept": kept}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
