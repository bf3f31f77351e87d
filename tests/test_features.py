"""The frozen LLM as a feature extractor: pooling that ignores padding, the content-hash cache, the classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from knowtune.train.features import fit_classifier, hidden_features


@pytest.fixture
def model_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(tiny_model)


def test_pooling_ignores_padding(model_and_tokenizer):
    model, tok = model_and_tokenizer
    texts = ["the quick brown fox jumps over the lazy dog", "a kite"]  # longest first: encoded in the other order
    for pooling in ("mean", "last"):
        together = hidden_features(model, tok, texts, pooling=pooling, precision="false")
        alone = np.concatenate([hidden_features(model, tok, [t], pooling=pooling, precision="false") for t in texts])
        assert together.shape == (2, model.config.hidden_size)
        assert np.allclose(together, alone, atol=1e-5), pooling
    ids = tok(texts[:1], return_tensors="pt")
    with torch.no_grad():
        last = model(**ids, output_hidden_states=True).hidden_states[-1][0, -1].numpy()
    assert np.allclose(hidden_features(model, tok, texts[:1], pooling="last", precision="false")[0], last, atol=1e-5)
    bf16 = hidden_features(model, tok, texts, precision="true")  # bf16 autocast: within its rounding of fp32
    fp32 = hidden_features(model, tok, texts, precision="false")
    assert np.abs(bf16 - fp32).max() < 0.05 * np.abs(fp32).max()


def test_cache_by_content_and_weights(model_and_tokenizer, tmp_path, monkeypatch):
    model, tok = model_and_tokenizer
    texts = ["one", "two words", "three words here"]
    first = hidden_features(model, tok, texts, cache_dir=tmp_path, model_ref="tiny")
    assert len(list(tmp_path.glob("*.npy"))) == 1
    calls = []
    decoder = model.get_decoder()  # what the extractor runs (no vocabulary projection)
    forward = decoder.forward
    monkeypatch.setattr(decoder, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    assert np.array_equal(hidden_features(model, tok, texts, cache_dir=tmp_path, model_ref="tiny"), first) and not calls
    hidden_features(model, tok, texts[::-1], cache_dir=tmp_path, model_ref="tiny")  # other content: encoded
    assert calls
    calls.clear()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.add_(0.01)  # retrained weights: a new fingerprint
    again = hidden_features(model, tok, texts, cache_dir=tmp_path, model_ref="tiny")
    assert calls and not np.allclose(again, first)


def test_classifier_on_features():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 0.3, (20, 8)), rng.normal(1, 0.3, (20, 8))]).astype(np.float32)
    y = ["neg"] * 20 + ["pos"] * 20
    for kind in ("logreg", "mlp"):
        clf = fit_classifier(x, y, kind=kind)
        assert (clf.predict(x) == np.array(y)).mean() >= 0.95, kind
    with pytest.raises(ValueError, match="logreg"):
        fit_classifier(x, y, kind="svm")
