"""The rating app's background job: write two answers to every prompt that has none yet.

The first answer is greedy (what `knowtune ask` would say), the second sampled, so raters compare the
model's usual answer with a plausible alternative. Answers are stored a batch at a time with the job's
progress, so a stopped server loses at most one batch, and the next job picks up the prompts still waiting.
"""

from __future__ import annotations

import threading

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
                from knowtune.models import load_for_inference

                self.store.update_job(job, message=f"loading {self.model_ref}")
                self._model = load_for_inference(self.model_ref, log=lambda *a: None)
            model, tokenizer = self._model
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start:start + batch_size]
                items = [("chat", [{"role": "user", "content": p.text}]) for p in batch]
                first = generate_answers(model, tokenizer, items, GREEDY)
                second = generate_answers(model, tokenizer, items, SAMPLED)
                for p, a, b in zip(batch, first, second):
                    self.store.add_answers(p.id, [a or "(no answer)", b or "(no answer)"], self.model_ref)
                self.store.update_job(job, done=start + len(batch), message=f"answered {start + len(batch)} of {len(prompts)}")
            self.store.update_job(job, status="done", message=f"answered {len(prompts)} prompts")
        except Exception as exc:  # shown on the admin page; the prompts still waiting are taken by the next job
            self.store.update_job(job, status="failed", message=f"{type(exc).__name__}: {exc}")
            self.log(f"answer job {job} failed: {exc}")
        finally:
            self._lock.release()
