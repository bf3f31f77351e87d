"""What every alignment run (PPO, DPO, KTO) shares: the knowledge audit of the model before and after, so a
run that steers answers toward what raters prefer also shows what it did to what the model knows."""

from __future__ import annotations

from pathlib import Path

from knowtune.data.knowledge import Probe
from knowtune.errors import KnowtuneError
from knowtune.io import cached_json, write_json


def load_probes(path: str | None) -> list[Probe]:
    """Held-out questions with answer keys (Q&A or prompt/completion file), or none."""
    if not path:
        return []
    from knowtune.data.knowledge import user_probes
    from knowtune.data.validate import load_examples

    examples, _ = load_examples([path], min_examples=1)
    return user_probes(examples, [])


def audit_before_after(s, run_dir: Path, probes: list[Probe], log=print) -> dict:
    """Audit the start model (`s.model`) and the saved run, each loaded as `knowtune ask` loads it; the
    before-audit is cached in the run folder. Returns the audit summary (probe accuracy, retention, drop)."""
    from knowtune.eval.audit import run_audit, summary
    from knowtune.eval.generate import GenerationSettings
    from knowtune.models.load import load_for_inference

    gen = GenerationSettings()

    def audit(ref: str, what: str) -> dict:
        from tqdm.auto import tqdm

        model, tokenizer = load_for_inference(ref, log=log)
        with tqdm(desc=f"Auditing the {what}", unit="q", leave=False) as bar:
            return run_audit(model, tokenizer, probes, settings=gen, progress=bar.update)

    before = cached_json(run_dir / "audit_before.json", lambda: audit(s.model, "model before"))
    after = audit(str(run_dir), "model after")
    write_json(run_dir / "audit.json", {"before": before, "after": after})
    out = summary(before, after)
    if out["retention_before"] is None:
        raise KnowtuneError("The audit scored no retention questions.", fix="reinstall knowtune (its data files are missing).")
    return out


def audit_lines(audit: dict) -> list[str]:
    """The audit as markdown table lines for a run report."""
    from knowtune.eval.report import pct

    rows = ["| audit | before | after |", "|---|---|---|"]
    if audit["n_probes"]:
        rows.append(f"| held-out questions ({audit['n_probes']}) | {pct(audit['probe_accuracy_before'])} | "
                    f"{pct(audit['probe_accuracy_after'])} |")
    rows.append(f"| general knowledge ({audit['n_retention']}) | {pct(audit['retention_before'])} | "
                f"{pct(audit['retention_after'])} |")
    return rows + ["", f"Retention drop: {audit['retention_drop_points']} points.", ""]
