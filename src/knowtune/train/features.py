"""The frozen LLM as a feature extractor (issue 19's `feature` method): one vector per text, the hidden states
of a chosen layer pooled over the text's tokens, cached on disk by content hash, and a scikit-learn classifier
trained on them.

The cache key covers everything the vectors depend on: the model (its reference and a fingerprint of its
weights, so a retrained run never reuses stale vectors), the layer, the pooling, the longest text in tokens and
every text in order. Vectors are stored as .npy (no pickle) and written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

POOLING = ("mean", "last")


def model_fingerprint(model) -> str:
    """A short hash of the model's configuration and a sample of every weight (first and last 64 values):
    cheap to compute, and different after any training that moves the weights."""
    import torch

    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in model.state_dict().items():
            flat = p.detach().reshape(-1)
            h.update(name.encode())
            h.update(torch.cat([flat[:64], flat[-64:]]).float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(model_ref: str, fingerprint: str, texts: list[str], layer: int, pooling: str, max_length: int,
              bf16: bool = False) -> str:
    h = hashlib.sha256(json.dumps([model_ref, fingerprint, layer, pooling, max_length] + (["bf16"] if bf16 else [])).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def hidden_features(model, tokenizer, texts: list[str], *, layer: int = -1, pooling: str = "mean",
                    max_length: int = 256, batch_size: int = 16, cache_dir: Path | None = None,
                    model_ref: str = "", precision: str = "auto", progress=None) -> np.ndarray:
    """(len(texts), hidden) float32: hidden states of `layer` (0 = embeddings, -1 = the last block) pooled over
    each text's tokens (`mean`; or `last`, the final token's), computed under bf16 autocast where that runs fast
    (`precision`, as `use_bf16` reads it). Read from `cache_dir` when the same model, layer, pooling, precision
    and texts were encoded before."""
    import torch

    from knowtune.io import write_bytes
    from knowtune.models.precision import autocast, use_bf16

    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {POOLING}")
    bf16 = use_bf16(precision)
    path = None
    if cache_dir is not None:
        key = cache_key(model_ref, model_fingerprint(model), texts, layer, pooling, max_length, bf16)
        path = Path(cache_dir) / f"{key}.npy"
        if path.exists():
            return np.load(path, allow_pickle=False)
    device = next(model.parameters()).device
    encoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    out = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of similar length: little padding
    pad_side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer([texts[j] for j in order[i: i + batch_size]], return_tensors="pt", padding=True,
                              truncation=True, max_length=max_length).to(device)
            with torch.no_grad(), autocast(bf16, device.type):
                # the decoder alone: no vocabulary projection of every token
                states = encoder(**batch, output_hidden_states=True).hidden_states[layer].float()  # (B, T, d)
            mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            if pooling == "mean":
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            else:
                last = batch["attention_mask"].sum(1) - 1  # (B,)
                pooled = states[torch.arange(states.shape[0], device=device), last]
            out.append(pooled.cpu().numpy())
            if progress:
                progress(len(pooled))
    finally:
        tokenizer.padding_side = pad_side
    features = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    if out:
        features[order] = np.concatenate(out)  # back in the texts' order
    if path is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, features, allow_pickle=False)
        write_bytes(path, buf.getvalue())
    return features


def fit_classifier(features: np.ndarray, labels: list[str], kind: str = "logreg", seed: int = 0, c: float = 1.0):
    """A scikit-learn classifier on standardised features: logistic regression (default) or a small MLP."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    elif kind == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True, max_iter=300, random_state=seed)
    else:
        raise ValueError("classifier kind must be 'logreg' or 'mlp'")
    return make_pipeline(StandardScaler(), clf).fit(features, labels)
