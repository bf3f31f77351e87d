"""Batched generation with the settings every scorer shares (audit, early stopping, eval, ask, chat): greedy by
default; sampled for the rating app's second answers and for PPO rollouts."""

from __future__ import annotations

from dataclasses import dataclass

from knowtune.models.precision import answering_precision


@dataclass
class GenerationSettings:
    max_new_tokens: int = 40
    batch_size: int = 32
    temperature: float = 0.0  # 0: greedy (the audit's setting); above 0: sampling
    top_p: float = 1.0


def render_prompt(tokenizer, style: str, prompt) -> str:
    """The exact text the model sees: the chat template for chat style, the raw prompt for plain style."""
    if style == "chat":
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return prompt


def generate_answers(model, tokenizer, items: list[tuple[str, object]], settings: GenerationSettings | None = None,
                     progress=None) -> list[str]:
    """Answers for (style, prompt) items (greedy unless settings.temperature > 0), batched by length;
    returns answers in input order."""
    return [a for a, _ in generate_scored(model, tokenizer, items, settings, progress, confidence=False)]


def generate_scored(model, tokenizer, items: list[tuple[str, object]], settings: GenerationSettings | None = None,
                    progress=None, confidence: bool = True) -> list[tuple[str, float | None]]:
    """(answer, confidence) for each item, in input order. Confidence: the geometric mean of the
    probabilities the model gave the tokens it wrote (exp of their mean log-probability), in [0, 1]; None
    with confidence=False, which keeps the per-step logits out of generation (timed RAG answers, rollouts)."""
    import torch

    with torch.no_grad():
        return _generate_scored(model, tokenizer, items, settings or GenerationSettings(), progress, confidence)


def pad_batch(sequences: list[list[int]], pad_id: int, left: bool = False, multiple: int | None = None):
    """(ids, mask), each (B, longest): token-id lists padded with `pad_id`, on the left (generation and
    rollouts: every answer then starts at the same column) or on the right (scoring a whole sequence); with
    `multiple`, the width rounded up to a multiple of it (fewer distinct shapes in training)."""
    import torch

    width = max(map(len, sequences))
    if multiple:
        width = -(-width // multiple) * multiple
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def _generate_scored(model, tokenizer, items, settings: GenerationSettings, progress, confidence: bool):
    texts = [render_prompt(tokenizer, style, prompt) for style, prompt in items]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    answers: list[tuple[str, float | None]] = [("", None)] * len(texts)
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    for start in range(0, len(order), settings.batch_size):
        batch = order[start:start + settings.batch_size]
        ids, mask = pad_batch([encoded[i] for i in batch], pad, left=True)  # (B, width)
        width = ids.shape[1]
        sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p,
                    "top_k": 0} if settings.temperature > 0 else {"do_sample": False}
        with answering_precision(model):
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **sampling,
                                 max_new_tokens=settings.max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                                 output_scores=confidence, return_dict_in_generate=True)
        conf = token_confidence(out.scores, out.sequences[:, width:], tokenizer.eos_token_id) if confidence else [None] * len(batch)
        for row, i in enumerate(batch):
            answers[i] = (tokenizer.decode(out.sequences[row, width:], skip_special_tokens=True).strip(), conf[row])
        if progress:
            progress(len(batch))
    if was_training:
        model.train()
    return answers


def token_confidence(scores: tuple, written, eos_id: int | None) -> list[float]:
    """exp(mean log-probability) of each row's written tokens up to and including its first end token.
    scores: one (B, V) tensor of logits per generated position; written: (B, T) the tokens chosen."""
    import torch

    steps = len(scores)
    chosen = torch.stack([torch.log_softmax(s.float(), dim=-1).gather(-1, written[:, t:t + 1]).squeeze(-1)
                          for t, s in enumerate(scores)], dim=1)  # (B, T): one step at a time, never (B, T, V)
    is_end = written[:, :steps] == eos_id if eos_id is not None else torch.zeros_like(chosen, dtype=torch.bool)
    after_end = (is_end.cumsum(dim=1) - is_end.long()) > 0  # positions after the first end token
    keep = (~after_end).float()
    mean = (chosen * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
    return torch.exp(mean).tolist()


def token_counter(model: str):
    """(count(example) -> int, description). Uses the model's tokenizer and chat template when the model is
    already on disk, else ~4 characters per token."""
    from knowtune.models.fetch import cached_dir, is_cached
    from knowtune.models.registry import REGISTRY

    folder = cached_dir(model) if model in REGISTRY else None
    if folder is not None and is_cached(model):
        from knowtune.models.load import load_tokenizer

        tok = load_tokenizer(str(folder))

        def count(ex) -> int:
            text = render_prompt(tok, ex.style, ex.prompt) + ex.answer
            return len(tok(text, add_special_tokens=False)["input_ids"]) + 1

        return count, f"{model} tokenizer"

    def estimate(ex) -> int:
        prompt = ex.prompt if isinstance(ex.prompt, str) else " ".join(m["content"] for m in ex.prompt)
        return max(1, (len(prompt) + len(ex.answer)) // 4)

    return estimate, "estimated at 4 characters a token; pull the model for exact counts"
