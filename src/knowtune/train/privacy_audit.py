"""`knowtune audit-privacy RUN`: what a teach run memorised of single records, added to its audit.json and report.

canaries   the run's canaries (teach --canaries), each secret ranked among random candidates of its format
members    the training records the run read (its train split, scrubbed as it scrubbed them), against records
           of the same kind it never saw (--non-members): membership inference by loss, AUC
result     audit.json's `memorisation` (written atomically, the schema checked) and the report's section
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from knowtune.errors import KnowtuneError


def audit_privacy(run_dir: str | Path, non_members: str | None = None, candidates: int = 2047,
                  max_records: int = 200, log=print) -> dict:
    import yaml

    from knowtune.data.documents import is_document
    from knowtune.data.knowledge import prompt_key
    from knowtune.data.privacy import scrubbing
    from knowtune.data.validate import load_examples
    from knowtune.eval.memorisation import Canary, answer_losses, canary_exposures, membership_auc, summarise
    from knowtune.eval.report import write_reports
    from knowtune.io import read_jsonl, write_json
    from knowtune.models import load_for_answering
    from knowtune.models.precision import answering_precision
    from knowtune.progress import phase
    from knowtune.train.lifecycle import validate_audit_file
    from knowtune.train.methods.teach import TeachSettings

    run_dir = Path(run_dir)
    audit_file = run_dir / "audit.json"
    if not audit_file.exists():
        raise KnowtuneError(f"{run_dir} holds no finished run (no audit.json).", fix="give the folder of a finished teach run.")
    audit = json.loads(audit_file.read_text())
    if audit.get("method") != "teach":
        raise KnowtuneError(f"{run_dir} is a {audit.get('method')} run; the memorisation audit reads teach runs.",
                            fix="run it on a `knowtune teach` run (with --canaries to measure exposure).")
    s = TeachSettings.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    canary_file = run_dir / "data" / "canaries.jsonl"
    canaries = [Canary(**r) for r in read_jsonl(canary_file)] if canary_file.exists() else []
    if not canaries and not non_members:
        raise KnowtuneError(f"{run_dir} was trained without canaries, and no --non-members file was given: nothing "
                            "to measure.", fix="teach with --canaries N, or pass --non-members FILE (records of the "
                                                "same kind the run never saw).")
    rng = random.Random(s.seed)
    data_files = [d for d in s.data if not is_document(d)]
    # which records the run trained, from its own split as it wrote it: DP-SGD trains every record; the record
    # view all but the held-out phrasings; the other views the train split's
    phrasings = [(prompt_key(p["prompt"]), p["split"]) for f in read_jsonl(run_dir / "data" / "facts.jsonl")
                 for p in f["phrasings"]]
    held = (set() if s.dp_epsilon else {k for k, split in phrasings if split == "test"} if "record" in s.views
            else {k for k, split in phrasings if split != "train"})
    with scrubbing(s.scrub_pii):  # the records as the run read them
        examples = load_examples(data_files)[0] if data_files else []
        others = load_examples([non_members], min_examples=1)[0] if non_members else []
    members = [ex for ex in examples if prompt_key(ex.prompt) not in held and not ex.pinned_test]
    taught = {prompt_key(ex.prompt) for ex in members}
    others = [ex for ex in others if prompt_key(ex.prompt) not in taught]  # a non-member must not have been trained
    members = rng.sample(members, min(max_records, len(members)))
    others = rng.sample(others, min(max_records, len(others)))
    model, tokenizer = load_for_answering(str(run_dir), log=log)  # as ask answers: bf16 where that runs fast
    exposures, auc = [], None
    with answering_precision(model):
        if canaries:
            with phase(f"Ranking {len(canaries)} canaries among {candidates:,} candidates each",
                       total=len(canaries) * (candidates + 1), unit="text") as advance:
                exposures = canary_exposures(model, tokenizer, canaries, candidates, s.seed, progress=advance)
        if others and members:
            rows = lambda exs: [(ex.style, ex.prompt, ex.answer) for ex in exs]  # noqa: E731
            with phase("Membership inference: loss on training and unseen records", total=len(members) + len(others),
                       unit="record") as advance:
                auc = membership_auc(answer_losses(model, tokenizer, rows(members), progress=advance),
                                     answer_losses(model, tokenizer, rows(others), progress=advance))
    m = summarise(exposures, auc, len(members), len(others), candidates)
    audit["memorisation"] = m
    validate_audit_file(audit)
    write_json(audit_file, audit)
    write_reports(run_dir, audit)
    return m
