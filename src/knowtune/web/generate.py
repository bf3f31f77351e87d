"""The rating app's background job: write two answers to every prompt that has none yet.

The first answer is greedy (what `knowtune ask` would say), the second sampled, so raters compare the
model's usual answer with a plausible alternative. Answers are stored a batch at a time with the job's
progress, so a stopped server loses at most one batch, and the next job picks up the prompts still waiting.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from knowtune.eval.generate import GenerationSettings, generate_answers
from knowtune.web.store import Store

SAMPLED = GenerationSettings(max_new_tokens=128, temperature=0.9, top_p=0.95)
GREEDY = GenerationSettings(max_new_tokens=128)


class AnswerWriter:
    """Loads the model on first use (the server starts at once) and runs one generation job at a time."""

    def __init__(self, store: Store, model_ref: str, log=print):
        self.store, self.model_ref, self.log = store, model_ref, log
        self._model = None
        self._lock = threading.Lock()

    def busy(self) -> bool:
        return self._lock.locked()

    def start(self, batch_size: int = 8) -> int | None:
        """Start a job in a thread; returns its id, or None when nothing waits for answers or a job runs."""
        prompts = self.store.prompts_without_comparison()
        if not prompts or not self._lock.acquire(blocking=False):
            return None
        job = self.store.create_job("answers", len(prompts), f"writing 2 answers to {len(prompts)} prompts")
        threading.Thread(target=self._run, args=(job, prompts, batch_size), daemon=True).start()
        return job

    def _run(self, job: int, prompts, batch_size: int) -> None:
        try:
            if self._model is None:
                from knowtune.models import load_for_answering

                self.store.update_job(job, message=f"loading {self.model_ref}")
                self._model = load_for_answering(self.model_ref, log=lambda *a: None)
            done = 0

            def progress(n: int) -> None:
                nonlocal done
                done += n
                self.store.update_job(job, done=done, message=f"answered {done} of {len(prompts)}")

            write_answers(self.store, *self._model, self.model_ref, prompts, batch_size=batch_size, progress=progress)
            self.store.update_job(job, status="done", message=f"answered {len(prompts)} prompts")
        except Exception as exc:  # shown on the admin page; the prompts still waiting are taken by the next job
            self.store.update_job(job, status="failed", message=f"{type(exc).__name__}: {exc}")
            self.log(f"answer job {job} failed: {exc}")
        finally:
            self._lock.release()


def write_answers(store: Store, model, tokenizer, model_name: str, prompts, per_prompt: int = 2, batch_size: int = 8,
                  progress=None, retries: int = 3) -> None:
    """Write `per_prompt` different answers to each prompt (the first greedy, the rest sampled) and store them
    a batch at a time; answers 1+2, 3+4, ... of a prompt become its comparisons.

    A well-taught model often samples its greedy answer again, and two identical answers give a rater
    nothing to compare: an answer equal to an earlier one for the same prompt is sampled again, hotter each
    time (`retries` times at most; what is still equal then is kept)."""
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        items = [("chat", [{"role": "user", "content": p.text}]) for p in batch]
        columns = [generate_answers(model, tokenizer, items, GREEDY)]
        columns += [generate_answers(model, tokenizer, items, SAMPLED) for _ in range(per_prompt - 1)]
        answers = [list(row) for row in zip(*columns)]  # (prompt, answer)
        for attempt in range(1, retries + 1):
            again = [(i, j) for i, row in enumerate(answers) for j in range(1, len(row)) if row[j] in row[:j]]
            if not again:
                break
            hotter = replace(SAMPLED, temperature=SAMPLED.temperature + 0.2 * attempt)
            for (i, j), text in zip(again, generate_answers(model, tokenizer, [items[i] for i, _ in again], hotter)):
                answers[i][j] = text
        for p, texts in zip(batch, answers):
            store.add_answers(p.id, [t or "(no answer)" for t in texts], model_name)
        if progress:
            progress(len(batch))
