"""`feature`: the frozen LLM as a feature extractor (a layer's hidden states pooled over each text, cached on
disk by content hash: `train/features.py`) and a scikit-learn classifier trained on them (logistic regression,
or a small MLP). The classifier is saved as plain arrays (safetensors) and a JSON description, never pickled,
and predicts from them (`FeatureClassifier`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowtune.train.classic.base import Recipe

WEIGHTS, DESCRIPTION = "classifier.safetensors", "classifier.json"


class Feature(Recipe):
    name = "feature"
    help = "the frozen LLM's pooled hidden states (cached) + a scikit-learn classifier: no gradient through the LLM, the cheapest"
    kinds = ("sequence",)
    gradient = False


@dataclass
class FeatureClassifier:
    """A fitted scikit-learn pipeline (StandardScaler + LogisticRegression or MLPClassifier) as arrays."""
    kind: str
    labels: list[str]
    arrays: dict[str, np.ndarray]  # mean, scale, and W0, b0[, W1, b1]

    @classmethod
    def from_pipeline(cls, pipeline, kind: str) -> "FeatureClassifier":
        scaler, clf = pipeline[0], pipeline[-1]
        arrays = {"mean": scaler.mean_, "scale": scaler.scale_}
        if kind == "logreg":
            arrays |= {"W0": clf.coef_.T, "b0": clf.intercept_}
        else:
            for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
                arrays |= {f"W{i}": w, f"b{i}": b}
        return cls(kind, [str(c) for c in clf.classes_], {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(n, outputs): the decision values (one column for two labels, as scikit-learn keeps them)."""
        x = (features - self.arrays["mean"]) / self.arrays["scale"]
        i = 0
        while f"W{i + 1}" in self.arrays:  # hidden layers (ReLU, scikit-learn's default)
            x = np.maximum(x @ self.arrays[f"W{i}"] + self.arrays[f"b{i}"], 0)
            i += 1
        return x @ self.arrays[f"W{i}"] + self.arrays[f"b{i}"]

    def predict(self, features: np.ndarray) -> list[str]:
        s = self.scores(features)
        index = (s[:, 0] > 0).astype(int) if s.shape[1] == 1 else s.argmax(1)
        return [self.labels[i] for i in index]

    def save(self, folder: Path, extra: dict) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.arrays, str(folder / WEIGHTS))
        (folder / DESCRIPTION).write_text(json.dumps({"kind": self.kind, "labels": self.labels, **extra}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> tuple["FeatureClassifier", dict]:
        from safetensors.numpy import load_file

        desc = json.loads((folder / DESCRIPTION).read_text())
        return cls(desc["kind"], desc["labels"], load_file(str(folder / WEIGHTS))), desc
