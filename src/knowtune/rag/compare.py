"""`knowtune compare`: fine-tuning vs retrieval vs both, on the same probes.

Four arms answer every probe: the base model, the base model with retrieved passages in its prompt (RAG),
the tuned run, and the tuned run with RAG. Each arm reports closed-book-scored accuracy (the audit's
scorer), seconds per answer (one question at a time, as a user asks) and prompt tokens per answer (what
retrieval costs in context). Also reported: how often the retrieved passages contain the answer at all.
"""

from __future__ import annotations

import time
from pathlib import Path

from knowtune.data.augment import RAG_PROMPT
from knowtune.data.documents import Chunk, chunk_documents, is_document
from knowtune.data.knowledge import Probe, user_probes
from knowtune.data.validate import load_examples
from knowtune.errors import KnowtuneError
from knowtune.eval.generate import GenerationSettings, generate_answers, render_prompt
from knowtune.io import save_figure, write_json, write_text
from knowtune.text import matches

ARMS = [("base", "base", False), ("base + RAG", "base", True), ("tuned", "tuned", False), ("tuned + RAG", "tuned", True)]


def corpus(paths: list[str]) -> list[Chunk]:
    """Chunks to retrieve from: document chunks, and one chunk per example of any data file."""
    docs = [p for p in paths if is_document(p)]
    chunks = chunk_documents(docs) if docs else []
    files = [p for p in paths if not is_document(p)]
    if files:
        examples, _ = load_examples(files, min_examples=1)
        for ex in examples:
            question = ex.prompt if isinstance(ex.prompt, str) else " ".join(m["content"] for m in ex.prompt if m["role"] == "user")
            text = ex.statements[0] if ex.statements else f"{question} {ex.answer}"
            chunks.append(Chunk(text, ex.source, None, "", 0, len(text)))
    if not chunks:
        raise KnowtuneError("Nothing to retrieve from.", fix="pass the documents or data files the run was taught.")
    return chunks


def question_of(p: Probe) -> str:
    return p.prompt if isinstance(p.prompt, str) else next(m["content"] for m in reversed(p.prompt) if m["role"] == "user")


def rag_prompt(p: Probe, passages: list[Chunk]):
    context = "\n\n".join(c.text for c in passages)
    text = RAG_PROMPT.format(context=context, question=question_of(p))
    return text if p.style == "plain" else [{"role": "user", "content": text}]


def compare(data: list[str], probes_path: str, tuned: str, base: str | None = None, retriever: str = "bm25",
            k: int = 3, max_new_tokens: int = 40, out: str | Path | None = None, log=print) -> dict:
    from knowtune.models.load import load_for_answering
    from knowtune.rag.retrieve import make_retriever

    run = Path(tuned)
    if base is None:
        import yaml

        cfg = run / "config.yaml"
        base = yaml.safe_load(cfg.read_text())["model"] if cfg.exists() else "smollm2-135m"
    probe_examples, _ = load_examples([probes_path], min_examples=1)
    probes = user_probes(probe_examples, [])
    chunks = corpus(data)
    retr = make_retriever(retriever, chunks, log=log)
    retrieved = [[c for c, _ in retr.search(question_of(p), k)] for p in probes]
    hit = sum(any(matches(c.text, p.answer, p.aliases) for c in r) for p, r in zip(probes, retrieved)) / len(probes)
    log(f"{len(probes)} probes; {len(chunks)} passages; {retr.name} top-{k} holds the answer for {hit:.0%} of probes.")

    arms, rows = [], {}
    for ref_name, ref in (("base", base), ("tuned", tuned)):
        model, tok = load_for_answering(ref, log=log)
        for arm, which, use_rag in ARMS:
            if which != ref_name:
                continue
            prompts = [(p.style, rag_prompt(p, r) if use_rag else p.prompt) for p, r in zip(probes, retrieved)]
            n_tokens = [len(tok(render_prompt(tok, style, pr), add_special_tokens=False)["input_ids"]) for style, pr in prompts]
            start = time.perf_counter()
            answers = generate_answers(model, tok, prompts, GenerationSettings(max_new_tokens=max_new_tokens, batch_size=1))
            seconds = time.perf_counter() - start
            scored = [{"question": question_of(p), "answer": p.answer, "output": a, "correct": matches(a, p.answer, p.aliases),
                       "prompt_tokens": n} for p, a, n in zip(probes, answers, n_tokens)]
            rows[arm] = scored
            arms.append({"arm": arm, "model": ref, "rag": use_rag, "accuracy": sum(r["correct"] for r in scored) / len(scored),
                         "seconds_per_answer": seconds / len(scored), "prompt_tokens_per_answer": sum(n_tokens) / len(n_tokens)})
            log(f"  {arm:12} {arms[-1]['accuracy']:6.1%}  {arms[-1]['seconds_per_answer']:.2f} s/answer  "
                f"{arms[-1]['prompt_tokens_per_answer']:.0f} prompt tokens")
        del model
    result = {"probes": probes_path, "n": len(probes), "retriever": retr.name, "k": k, "retrieval_hit_rate": hit,
              "base": base, "tuned": tuned, "arms": arms, "answers": rows}
    if out:
        out = Path(out)
        write_json(out / "compare.json", result)
        plot = plot_compare(arms, out / "compare.png")
        write_text(out / "compare.md", markdown(result, plot.name if plot else None))
        result["files"] = [str(out / "compare.json"), str(out / "compare.md"), str(plot)]
    return result


def markdown(result: dict, plot: str | None) -> str:
    lines = [f"# Fine-tuning vs RAG on {result['probes']}", "",
             f"{result['n']} probes; retriever {result['retriever']} (top {result['k']}); the retrieved passages hold "
             f"the answer for {result['retrieval_hit_rate']:.0%} of probes. Base: {result['base']}; tuned: {result['tuned']}.", "",
             "| arm | accuracy | seconds per answer | prompt tokens per answer |", "|---|---|---|---|"]
    lines += [f"| {a['arm']} | {a['accuracy']:.1%} | {a['seconds_per_answer']:.2f} | {a['prompt_tokens_per_answer']:.0f} |"
              for a in result["arms"]]
    if plot:
        lines += ["", f"![comparison]({plot})"]
    return "\n".join(lines) + "\n"


def plot_compare(arms: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [a["arm"] for a in arms]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    colours = ["#9aa5b1", "#5b8def", "#f0a04b", "#3fa34d"][:len(arms)]
    for ax, key, title, fmt in ((axes[0], "accuracy", "accuracy on held-out probes", "{:.0%}"),
                                (axes[1], "seconds_per_answer", "seconds per answer", "{:.2f}"),
                                (axes[2], "prompt_tokens_per_answer", "prompt tokens per answer", "{:.0f}")):
        values = [a[key] for a in arms]
        bars = ax.bar(names, values, color=colours)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=20)
        for b, v in zip(bars, values):
            ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        if key == "accuracy":
            ax.set_ylim(0, 1.05)
    return save_figure(fig, path)
