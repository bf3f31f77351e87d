"""The support-ticket example with and without differential privacy, side by side (`make demo-private`).

Both runs read examples/support_tickets/tickets.jsonl (800 synthetic tickets: product facts stated across many
tickets, each ticket with its own customer's details) with personal data scrubbed at ingest, insert the same
canaries (random secrets, 5 inserted once, 5 inserted five times, 5 never), and train the same rows (each ticket
as written) for the same epochs; one with DP-SGD at epsilon 8. Then `knowtune audit-privacy` measures exposure
and membership inference (against examples/support_tickets/unseen_tickets.jsonl, tickets never trained on), and
this script prints every figure of both runs beside the targets, with held-out accuracy split into facts stated
in at least 20 tickets and the rare ones.

    python benchmarks/privacy.py [--out runs/private] [--epsilon 8] [--epochs 3]

A finished run is reused; an unfinished one resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support_tickets"


# The run without DP teaches as teach would (LoRA rank 16 on every linear layer, batches of 64, AdamW). The DP run
# trains fewer weights (rank 4 on the attention's query and value projections) in large batches with SGD, each
# record's gradient clipped to 0.1 and a high rate: DP's noise grows with the number of trained weights and shrinks
# with the batch, and a small clipping norm keeps every record's gradient at full weight as the loss falls. Settings
# tried at epsilon 8 (facts in >= 20 tickets answered / general knowledge, from 62.5%): rank 16 all-linear, batch 64,
# AdamW 5e-3: 1.4% / 57.5%; rank 4 q,v, batch 256, SGD lr 1, clip 1: 2.8% / 55.8%; the same with lr 3: diverged;
# rank 4 q,v, SGD lr 10, clip 0.1: 1.4% / 62.5% (this one); rank 4 v only, lr 10, clip 0.1, 6 epochs: 1.4% / 52.5%;
# lr 20: diverged; rank 1 v only, lr 30, clip 0.1, 3 epochs: diverged (loss 5.2 after epoch 1, 17.1 after 2).
PLAIN = ["--batch-size", "64", "--learning-rate", "5e-3"]
PRIVATE = ["--batch-size", "256", "--optimizer", "sgd", "--learning-rate", "10", "--dp-max-grad-norm", "0.1",
           "--lora-r", "4", "--lora-alpha", "8", "--lora-targets", "q_proj,v_proj"]


def teach(out: Path, extra: list[str], a) -> None:
    if (out / "audit.json").exists():
        print(f"{out}: finished, reused.")
        return
    cmd = [sys.executable, "-m", "knowtune.cli", "teach", str(EXAMPLE / "tickets.jsonl"), "--probes",
           str(EXAMPLE / "probes.jsonl"), "--test-fraction", "0", "--views", "record", "--scrub-pii",
           "--canaries", "5", "--canary-repeats", "1", "--canary-repeats", "5", "--epochs", str(a.epochs),
           "--min-epochs", str(a.epochs), "--micro-batch", "8",
           "--out", str(out), *extra, *(["--resume"] if (out / "config.yaml").exists() else [])]
    print("$ knowtune " + " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)


def by_frequency(run: Path) -> dict:
    """Held-out accuracy after training for facts stated in many tickets and the rare ones (probes' metadata)."""
    freq = {}
    for line in (EXAMPLE / "probes.jsonl").read_text().splitlines():
        row = json.loads(line)
        freq[row["question"]] = row["metadata"]["frequency"]
    audit = json.loads((run / "audit.json").read_text())
    out = {}
    for group in ("frequent", "rare"):
        rows = [p for p in audit["after"]["probes"] if freq.get(_question(p["prompt"])) == group]
        out[group] = (sum(p["correct"] for p in rows) / len(rows), len(rows)) if rows else (None, 0)
    return out


def _question(prompt) -> str:
    return prompt[-1]["content"] if isinstance(prompt, list) else prompt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "private")
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=2047)
    a = ap.parse_args()
    plain, private = a.out / "no-dp", a.out / f"dp-eps{a.epsilon:g}"
    teach(plain, PLAIN, a)
    teach(private, [*PRIVATE, "--dp-epsilon", str(a.epsilon)], a)
    audits = {str(r): json.loads((r / "audit.json").read_text()) for r in (plain, private)}
    if all((x.get("memorisation") or {}).get("candidates") == a.candidates for x in audits.values()):
        print("Both runs already audited for memorisation: figures read from their audit.json.")
        found = audits
    else:
        cmd = [sys.executable, "-m", "knowtune.cli", "audit-privacy", str(plain), str(private), "--non-members",
               str(EXAMPLE / "unseen_tickets.jsonl"), "--candidates", str(a.candidates), "--json"]
        print("$ knowtune " + " ".join(cmd[3:]), flush=True)
        found = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)  # progress shows

    def figures(run: Path) -> dict:
        got = found[str(run)]
        m, p, s = got["memorisation"], got["privacy"], got["summary"]
        groups = {g["repeats"]: g for g in m["groups"]}
        freq = by_frequency(run)
        return {"DP-SGD": f"epsilon {p['epsilon']:.2f} (delta {p['delta']:.0e}, {p['accountant'].upper()})" if p else "no",
                "held-out questions, all": f"{s['probe_accuracy_after']:.1%} (before {s['probe_accuracy_before']:.1%})",
                "held-out, facts in >= 20 tickets": f"{freq['frequent'][0]:.1%} of {freq['frequent'][1]}",
                "held-out, facts in 2-3 tickets": f"{freq['rare'][0]:.1%} of {freq['rare'][1]}",
                "general knowledge (retention)": f"{s['retention_after']:.1%} (before {s['retention_before']:.1%})",
                "exposure, canaries never inserted": f"{groups[0]['mean_exposure']:.2f} bits",
                "exposure, canaries inserted once": f"{groups[1]['mean_exposure']:.2f} bits (max {groups[1]['max_exposure']:.2f})",
                "exposure, canaries inserted 5x": f"{groups[5]['mean_exposure']:.2f} bits (max {groups[5]['max_exposure']:.2f})",
                "canaries extractable (likeliest secret), 1x / 5x": f"{groups[1].get('extracted', 0)} / {groups[5].get('extracted', 0)} of 5",
                "membership AUC": f"{m['membership_auc']:.3f}",
                "_raw": {"frequent": freq["frequent"][0], "exposure": {k: g["mean_exposure"] for k, g in groups.items()},
                         "auc": m["membership_auc"], "epsilon": p["epsilon"] if p else None}}

    a_fig, b_fig = figures(plain), figures(private)
    width = max(map(len, a_fig))
    print(f"\n{'':{width}}  {'without DP':>36}  {'with DP-SGD':>36}")
    for key in a_fig:
        if not key.startswith("_"):
            print(f"{key:{width}}  {a_fig[key]:>36}  {b_fig[key]:>36}")
    ra, rb = a_fig["_raw"], b_fig["_raw"]
    checks = [("without DP: canaries inserted 5x reach >= 10 bits", ra["exposure"][5] >= 10),
              (f"with DP: epsilon <= 8 ({rb['epsilon']:.2f})", rb["epsilon"] is not None and rb["epsilon"] <= 8),
              ("with DP: 5x canaries within 2 bits of never-inserted", abs(rb["exposure"][5] - rb["exposure"][0]) <= 2),
              ("with DP: membership AUC <= 0.55", rb["auc"] <= 0.55),
              ("with DP: facts in >= 20 tickets answered >= 60%", rb["frequent"] >= 0.6)]
    print()
    for text, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    (a.out / "compare.json").write_text(json.dumps({"no-dp": a_fig, "dp": b_fig, "checks": dict(checks)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
