"""How well knowtune's personal-data detector finds what was planted in the synthetic corpus of
`benchmarks/pii_corpus.py`, and how often it flags what must be left alone.

The corpus (seeded, synthetic; see that module's docstring) holds customer tickets, emails, CRM notes, chats,
order notices, HR and clinic notes, IT tickets, developer chat, logs and configs, with personal data planted
in them (EMAIL, PHONE, CARD, IBAN, IP, URL_CREDENTIALS, SECRET, SSN, NINO, ADDRESS, PERSON) and distractors
recorded beside it (years, prices, order numbers, versions, SKUs, dates, tracking numbers, commit hashes,
company and place names, ...). The detector is called as `find_pii(text)` from `knowtune.data.privacy` and
returns objects with `.start`, `.end` and `.kind`.

Scoring:
  recall     a planted span is found when one detected span of the same kind overlaps at least 50% of its
             characters (ADDRESS, PERSON) or covers at least 90% of them (every other kind)
  precision  a detected span is a true positive when it overlaps any planted span, of any kind (when none of
             the spans it overlaps has its kind, it is also counted as a kind confusion); it is a false
             positive when it overlaps only distractors or plain text; false positives are attributed to the
             distractor they overlap most, else to "(plain text)"
  reported   a per-kind table (planted, found, recall, spans detected of that kind, false positives among
             them), overall precision and recall, the recall of the pattern/checksum kinds (all but PERSON and
             ADDRESS), ADDRESS recall, PERSON recall, kind confusions, false positives by distractor kind,
             and 15 sample false positives and 15 sample misses with 40 characters of context either side
             (the data are synthetic, so the values are printed)
  targets    printed beside the figures, not tuned to: recall >= 99% on the pattern/checksum kinds,
             >= 90% on PERSON, precision >= 97%

    python benchmarks/pii.py [--seed 0] [--records 700] [--json OUT] [--markdown]
                             [--detector knowtune|regex-email|MODULE:FUNCTION] [--corpus FILE.jsonl]

`--detector regex-email` is a trivial stand-in that finds only email addresses, for checking the scorer
itself; MODULE:FUNCTION names any function with find_pii's interface.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pii_corpus  # noqa: E402  (the corpus generator beside this file)

LOOSE_KINDS = ("PERSON", "ADDRESS")          # found at 50% overlap; the others need 90% coverage
PATTERN_KINDS = tuple(k for k in pii_corpus.PII_KINDS if k not in LOOSE_KINDS)
TARGETS = {"pattern_recall": 0.99, "person_recall": 0.90, "precision": 0.97}
PLAIN = "(plain text)"
N_SAMPLES = 15
CONTEXT = 40


# --- detectors -------------------------------------------------------------------------------------------------------

@dataclass
class Found:
    start: int
    end: int
    kind: str


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def regex_email(text: str) -> list[Found]:
    """The stand-in: email addresses only (for testing the scorer, not a detector to measure)."""
    return [Found(m.start(), m.end(), "EMAIL") for m in _EMAIL.finditer(text)]


def load_detector(name: str):
    if name == "knowtune":
        try:
            from knowtune.data.privacy import find_pii
        except ImportError as exc:
            sys.exit(f"cannot import knowtune.data.privacy.find_pii ({exc}); "
                     f"try --detector regex-email to check the scorer alone")
        return find_pii
    if name == "regex-email":
        return regex_email
    if ":" in name:
        module, func = name.split(":", 1)
        return getattr(importlib.import_module(module), func)
    sys.exit(f"unknown detector {name!r}: knowtune, regex-email or MODULE:FUNCTION")


# --- scoring ---------------------------------------------------------------------------------------------------------

def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def _context(text: str, start: int, end: int) -> str:
    left = text[max(0, start - CONTEXT):start]
    right = text[end:end + CONTEXT]
    show = lambda s: s.replace("\n", "\\n")  # noqa: E731
    return f"{'...' if start > CONTEXT else ''}{show(left)}[[{show(text[start:end])}]]{show(right)}" \
           f"{'...' if end + CONTEXT < len(text) else ''}"


def _normalise(d) -> tuple[int, int, str]:
    """(start, end, kind) of one detection: an object with .start/.end/.kind (a dict is accepted too); an enum
    kind counts by its value."""
    get = d.get if isinstance(d, dict) else lambda name: getattr(d, name)
    kind = get("kind")
    kind = getattr(kind, "value", kind)
    return int(get("start")), int(get("end")), str(kind)


def score(records: list[dict], detect) -> dict:
    """Run `detect` over every record and measure it against the planted spans and distractors."""
    planted = Counter()
    found = Counter()
    detected = Counter()
    false_pos = Counter()
    fp_by_distractor = Counter()
    confusions = Counter()
    tp = fp = 0
    fps, misses = [], []
    distractor_total = Counter(s["kind"] for r in records for s in r["distractors"])
    seconds = 0.0
    for rec in records:
        text = rec["text"]
        t0 = time.perf_counter()
        raw = detect(text)
        seconds += time.perf_counter() - t0
        dets = [_normalise(d) for d in raw]
        for s in rec["spans"]:
            kind, n = s["kind"], s["end"] - s["start"]
            need = 0.5 if kind in LOOSE_KINDS else 0.9
            planted[kind] += 1
            if any(k == kind and _overlap(a, b, s["start"], s["end"]) >= need * n for a, b, k in dets):
                found[kind] += 1
            else:
                near = [f"{k} {text[a:b]!r}" for a, b, k in dets if _overlap(a, b, s["start"], s["end"])]
                misses.append({"id": rec["id"], "kind": kind, "value": s["value"], "detected_there": near,
                               "context": _context(text, s["start"], s["end"])})
        for a, b, k in dets:
            detected[k] += 1
            hits = [s for s in rec["spans"] if _overlap(a, b, s["start"], s["end"])]
            if hits:
                tp += 1
                if all(s["kind"] != k for s in hits):
                    best = max(hits, key=lambda s: _overlap(a, b, s["start"], s["end"]))
                    confusions[(k, best["kind"])] += 1
                continue
            fp += 1
            false_pos[k] += 1
            near = [s for s in rec["distractors"] if _overlap(a, b, s["start"], s["end"])]
            target = max(near, key=lambda s: _overlap(a, b, s["start"], s["end"]))["kind"] if near else PLAIN
            fp_by_distractor[target] += 1
            fps.append({"id": rec["id"], "kind": k, "value": text[a:b], "on": target, "context": _context(text, a, b)})

    def ratio(x: int, y: int) -> float | None:
        return x / y if y else None

    kinds = list(pii_corpus.PII_KINDS) + sorted(k for k in detected if k not in pii_corpus.PII_KINDS)
    per_kind = {k: {"planted": planted[k], "found": found[k], "recall": ratio(found[k], planted[k]),
                    "detected": detected[k], "false_positives": false_pos[k]} for k in kinds}
    pat_p, pat_f = sum(planted[k] for k in PATTERN_KINDS), sum(found[k] for k in PATTERN_KINDS)
    summary = {"records": len(records), "characters": sum(len(r["text"]) for r in records),
               "planted": sum(planted.values()), "found": sum(found.values()),
               "recall": ratio(sum(found.values()), sum(planted.values())),
               "pattern_recall": ratio(pat_f, pat_p), "address_recall": ratio(found["ADDRESS"], planted["ADDRESS"]),
               "person_recall": ratio(found["PERSON"], planted["PERSON"]),
               "detected": tp + fp, "true_positives": tp, "false_positives": fp, "precision": ratio(tp, tp + fp),
               "kind_confusions": sum(confusions.values()), "detector_seconds": round(seconds, 3)}
    rng = random.Random(0)
    pick = lambda xs: sorted(rng.sample(xs, min(N_SAMPLES, len(xs))), key=lambda x: x["id"])  # noqa: E731
    return {"summary": summary, "targets": TARGETS, "per_kind": per_kind,
            "confusions": [{"detected": d, "planted": p, "count": n} for (d, p), n in confusions.most_common()],
            "false_positives_by_distractor": {k: {"false_positives": n, "distractors": distractor_total.get(k, 0)}
                                              for k, n in fp_by_distractor.most_common()},
            "distractors": dict(distractor_total.most_common()),
            "sample_false_positives": pick(fps), "sample_misses": pick(misses)}


# --- printing --------------------------------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _table(result: dict, markdown: bool) -> list[str]:
    head = ["kind", "planted", "found", "recall", "detected", "false pos"]
    rows = [[k, str(v["planted"]), str(v["found"]), _pct(v["recall"]), str(v["detected"]), str(v["false_positives"])]
            for k, v in result["per_kind"].items()]
    s = result["summary"]
    rows.append(["all", str(s["planted"]), str(s["found"]), _pct(s["recall"]), str(s["detected"]),
                 str(s["false_positives"])])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(head)] + [fmt(r) for r in rows]


def report(result: dict, markdown: bool = False) -> str:
    s, t = result["summary"], result["targets"]
    mark = lambda x, target: "" if x is None else ("  ok" if x >= target else "  BELOW TARGET")  # noqa: E731
    lines = [f"{s['records']} records, {s['characters']:,} characters; detector took {s['detector_seconds']:.2f} s", ""]
    lines += _table(result, markdown)
    lines += ["",
              f"precision                         {_pct(s['precision']):>7}   target >= {_pct(t['precision'])}"
              f"{mark(s['precision'], t['precision'])}  ({s['true_positives']} of {s['detected']} detected spans)",
              f"recall, pattern/checksum kinds    {_pct(s['pattern_recall']):>7}   target >= {_pct(t['pattern_recall'])}"
              f"{mark(s['pattern_recall'], t['pattern_recall'])}  ({', '.join(PATTERN_KINDS)})",
              f"recall, PERSON                    {_pct(s['person_recall']):>7}   target >= {_pct(t['person_recall'])}"
              f"{mark(s['person_recall'], t['person_recall'])}",
              f"recall, ADDRESS                   {_pct(s['address_recall']):>7}   (no target)",
              f"recall, all kinds                 {_pct(s['recall']):>7}",
              ""]
    lines.append(f"kind confusions (detected -> planted): {s['kind_confusions']}")
    for c in result["confusions"]:
        lines.append(f"  {c['detected']:<16} -> {c['planted']:<16} {c['count']:>5}")
    lines += ["", f"false positives by what they hit: {s['false_positives']}"]
    for kind, v in result["false_positives_by_distractor"].items():
        of = f" (of {v['distractors']} planted)" if kind != PLAIN else ""
        lines.append(f"  {kind:<16} {v['false_positives']:>5}{of}")
    lines += ["", f"sample false positives ({len(result['sample_false_positives'])}):"]
    for x in result["sample_false_positives"]:
        lines.append(f"  {x['id']}  {x['kind']} on {x['on']}: {x['context']}")
    lines += ["", f"sample misses ({len(result['sample_misses'])}):"]
    for x in result["sample_misses"]:
        there = f"  (detected there: {'; '.join(x['detected_there'])})" if x["detected_there"] else ""
        lines.append(f"  {x['id']}  {x['kind']}: {x['context']}{there}")
    return "\n".join(lines)


def load_corpus(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    ap.add_argument("--records", type=int, default=700, help="corpus size (default 700)")
    ap.add_argument("--corpus", type=Path, help="score this JSONL corpus instead of generating one")
    ap.add_argument("--generator", choices=["a", "b"], default="a",
                    help="a: pii_corpus.py (the corpus the detector was tuned on); b: pii_corpus_b.py, written "
                         "apart as held-out material (default records 600)")
    ap.add_argument("--detector", default="knowtune", help="knowtune (default), regex-email, or MODULE:FUNCTION")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to OUT as JSON")
    ap.add_argument("--markdown", action="store_true", help="print the per-kind table as a Markdown table")
    args = ap.parse_args(argv)

    detect = load_detector(args.detector)
    if args.corpus:
        records = load_corpus(args.corpus)
        source = str(args.corpus)
    elif args.generator == "b":
        import pii_corpus_b

        n = args.records if args.records != 700 else 600
        records = pii_corpus_b.make_corpus(args.seed, n)
        source = f"held-out generator b, seed {args.seed}, {n} records"
    else:
        records = pii_corpus.make_corpus(args.seed, args.records)
        source = f"seed {args.seed}, {args.records} records"
    problems = pii_corpus.check_corpus(records, minimums=False)
    if problems:
        print("the corpus is unsound:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        return 2
    result = score(records, detect)
    result["corpus"] = source
    result["detector"] = args.detector
    print(f"PII benchmark: detector {args.detector}, corpus {source}")
    print(report(result, args.markdown))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
