"""The run report: report.md, report.html (with the loss plot) and plots/loss.png, from audit.json."""

from __future__ import annotations

import html
import re
from pathlib import Path

from knowtune.io import save_figure, write_text


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def points(before, after) -> str:
    """The change between two shares, in percentage points ("" when either is missing)."""
    return "" if before is None or after is None else f"{100 * (after - before):+.1f} pts"


def before_after_rows(summary: dict) -> list[tuple[str, str, str, str]]:
    """(measure, before, after, change) rows: the table `teach` prints and the reports show."""
    if not summary:
        return []
    pb, pa = summary["probe_accuracy_before"], summary["probe_accuracy_after"]
    rb, ra = summary["retention_before"], summary["retention_after"]
    rows = [(f"{summary.get('probe_label', 'Held-out questions')} ({summary['n_probes']})", pct(pb), pct(pa), points(pb, pa))]
    groups = summary.get("by_group", {})
    if len(groups) > 1:
        rows += [(f"  {name} ({g['n']})", pct(g["before"]), pct(g["after"]), points(g["before"], g["after"]))
                 for name, g in groups.items()]
    if summary["n_retention"]:
        rows.append((f"{summary.get('retention_label', 'General knowledge')} ({summary['n_retention']})", pct(rb), pct(ra), points(rb, ra)))
    if summary.get("n_unknowns"):
        ub, ua = summary["unknowns_declined_before"], summary["unknowns_declined_after"]
        rows.append((f"Unknown questions declined ({summary['n_unknowns']})", pct(ub), pct(ua), points(ub, ua)))
    for key, what in (("over_refusal_probes", "Held-out questions declined (over-refusal)"),
                      ("over_refusal_retention", "General questions declined (over-refusal)"),
                      ("calibration_error", "Calibration error (ECE, lower is better)"),
                      ("grounded_unknowns_declined", "With --grounded: unknown questions declined"),
                      ("grounded_over_refusal_probes", "With --grounded: held-out questions declined"),
                      ("grounded_over_refusal_retention", "With --grounded: general questions declined"),
                      ("grounded_answered_correct", "With --grounded: held-out answers given that are right")):
        b, a = summary.get(f"{key}_before"), summary.get(f"{key}_after")
        if a is not None:
            rows.append((what, pct(b), pct(a), points(b, a)))
    return rows


def measure_rows(measures: list[dict]) -> list[tuple[str, str, str, str]]:
    """(measure, before, after, change) rows of a method's own figures."""
    def fmt(m, v):
        return "" if v is None else pct(v) if m["unit"] == "share" else f"{v:,.4g}"

    rows = []
    for m in measures:
        b, a = m["before"], m["after"]
        change = points(b, a) if m["unit"] == "share" else "" if a is None or b is None else f"{a - b:+,.4g}"
        rows.append((m["name"], fmt(m, b), fmt(m, a), change))
    return rows


def plot_losses(training: dict, path: Path) -> Path | None:
    if not training.get("train_loss"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*training["train_loss"]), label="train loss")
    if training.get("eval_loss"):
        ax.plot(*zip(*training["eval_loss"]), marker="o", label="validation loss (dev phrasings)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Loss" + ("  (overfitting flagged)" if training.get("overfitting") else ""))
    ax.legend()
    return save_figure(fig, path)


def _md_table(header: list[str], rows: list) -> str:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows])


def render_markdown(result: dict, plot: str | None, reliability: str | None = None,
                    extra_plots: list[tuple[str, str]] = ()) -> str:
    s, t, settings = result["summary"] or {}, result["training"], result["settings"]
    verdicts = {}
    for f in result["facts"]:
        verdicts[f["verdict"]] = verdicts.get(f["verdict"], 0) + 1
    variant = f" ({settings['method']})" if isinstance(settings.get("method"), str) else ""
    by = f"the dev {settings['task']} metric" if "task" in settings else "dev-probe accuracy"
    best = f"; best checkpoint by {by}: {t['best_metric']:.4g}" if t.get("best_metric") is not None else ""
    epochs = f", {t['epochs']:.1f} epochs" if t.get("epochs") else ""
    parts = [f"# knowtune report: {result.get('run') or 'run'}", "",
             f"Method `{result.get('method', 'teach')}`{variant}, start model `{settings['model']}`, "
             f"{t['steps']} steps{epochs}{best}.", ""]
    if t.get("note"):
        parts += [t["note"], ""]
    parts += [_md_table(["measure", "before", "after", "change"],
                        before_after_rows(s) + measure_rows(result.get("measures", []))), ""]
    if s and (s.get("n_retention") or result["facts"]):
        parts += [f"Retention drop: {s.get('retention_drop_points')} points. Facts: " +
                  (", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "none audited") + "."]
    parts += [f"Overfitting: {'flagged' if t['overfitting'] else 'not flagged'}; {t.get('overfitting_note', '')}", ""]
    if result.get("privacy"):
        parts += ["## Privacy", "", privacy_sentence(result["privacy"]), ""]
    if result.get("memorisation"):
        from knowtune.eval.memorisation import memorisation_section

        parts += memorisation_section(result["memorisation"])
    if plot:
        parts += [f"![loss]({plot})", ""]
    for caption, path in extra_plots:
        parts += [f"![{caption}]({path})", ""]
    parts += _confidence_section(result, reliability)
    if result["facts"]:
        parts += ["## Facts", "", _md_table(["fact", "answer key", "before", "after", "verdict", "example question", "tuned answer"],
                                            [(f["fact_id"], f["answer"], pct(f["before"]), pct(f["after"]), f["verdict"],
                                              f["example_question"], f["example_output"]) for f in result["facts"]])]
    lost = [r for r, b in zip(result["after"]["retention"], result["before"]["retention"]) if b["correct"] and not r["correct"]]
    if lost:
        parts += ["", "## General questions answered before but not after", "",
                  _md_table(["question", "answer key", "tuned answer"],
                            [(r["prompt"][-1]["content"] if isinstance(r["prompt"], list) else r["prompt"], r["answer"],
                              r["output"]) for r in lost])]
    if result.get("coverage"):
        from knowtune.data.docfacts import coverage_summary

        parts += ["", "## Coverage: views per fact read from the documents", "", coverage_summary(result["coverage"]), "",
                  _md_table(["fact", "answer key", "views", "by view", "source"],
                            [(c["fact_id"], c["answer"], c["views"], ", ".join(f"{k} {v}" for k, v in c["by_view"].items()),
                              c["source"]) for c in result["coverage"]])]
    parts += ["", "## Settings", "", _md_table(["setting", "value"], sorted(settings.items()))]
    return "\n".join(parts) + "\n"


ACCOUNTANTS = {"prv": "PRV accountant (Opacus; Gopi et al. 2021)", "rdp": "RDP accountant (Opacus; Mironov 2017)"}


def privacy_sentence(p: dict) -> str:
    """A DP-SGD run's guarantee in one paragraph (audit.json's `privacy`)."""
    return (f"Trained with DP-SGD: (epsilon {p['epsilon']:.2f}, delta {p['delta']:.2g})-differential privacy per "
            f"training {p['unit']} ({p['records']:,} {p['unit']}s; target epsilon {p['target_epsilon']:g}), "
            f"by the {ACCOUNTANTS.get(p['accountant'], p['accountant'])}. Noise multiplier {p['noise_multiplier']:.3f}, "
            f"clipping norm {p['max_grad_norm']:g}, Poisson sampling rate {p['sample_rate']:.4f}, {p['steps']} steps "
            f"over {p['epochs']} epochs.")


def _confidence_section(result: dict, reliability: str | None) -> list[str]:
    conf = result.get("confidence")
    if not conf:
        return []
    rows = [(p, f"{c['threshold']:.3f}" if c["threshold"] <= 1 else "never answers", pct(c["coverage"]), pct(c["precision"]))
            for p, c in conf["held_out"].items()]
    parts = ["## Confidence", "",
             f"Each answer's confidence is the mean probability of the tokens the model wrote. Thresholds are chosen on "
             f"{conf['chosen_on']} (`--min-confidence auto` with `--precision`); below them `ask`, `chat` and `serve` "
             "decline. On the held-out questions:", "",
             _md_table(["named precision", "threshold", "held-out answered", "of those right"], rows), ""]
    if reliability:
        parts += [f"![reliability]({reliability})", ""]
    return parts


def render_html(markdown_text: str, title: str) -> str:
    """A self-contained page: tables and the plot; every model output is escaped."""
    body, in_table = [], False
    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
            if set(line) <= set("|-"):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
                continue
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif m := re.fullmatch(r"!\[([^\]]*)\]\(([^)]*)\)", line):
            body.append(f'<img alt="{html.escape(m[1] + (" curves" if m[1] == "loss" else ""))}" src="{html.escape(m[2])}">')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_reports(run_dir: Path, result: dict, extra_plots: list[tuple[str, Path]] = ()) -> None:
    """report.md and report.html (with plots/loss.png, the reliability plot and the method's own plots)."""
    from knowtune.eval.calibration import plot_reliability

    plot = plot_losses(result["training"], run_dir / "plots" / "loss.png")
    after = result.get("after") or {}
    reliability = plot_reliability(after.get("probes", []) + after.get("retention", []), run_dir / "plots" / "reliability.png")
    md = render_markdown(result, "plots/loss.png" if plot else None, "plots/reliability.png" if reliability else None,
                         [(c, str(Path(p).relative_to(run_dir))) for c, p in extra_plots])
    write_text(run_dir / "report.md", md)
    write_text(run_dir / "report.html", render_html(md, f"knowtune report {run_dir.name}"))
