"""A smaller copy of a model: some of its transformer blocks, evenly spaced, kept with their weights (how
DistilBERT and Minitron start their students). The copy is a fresh model of the same architecture built from the
config with fewer layers, so it saves and loads like any other."""

from __future__ import annotations

import re

from knowtune.errors import KnowtuneError

SPEC = re.compile(r"^layers\s*=\s*(\d+)\s*(%?)$")


def is_slim_spec(spec: str) -> bool:
    return spec.strip().startswith("layers")


def layers_wanted(spec: str, n: int) -> int:
    """The number of blocks `layers=K` or `layers=P%` asks for out of `n`; a clear error when it cannot be made."""
    m = SPEC.match(spec.strip())
    if not m:
        raise KnowtuneError(f"--student {spec!r}: a slimmed student is written layers=K (K blocks) or layers=P% "
                            "(that share of the teacher's blocks).",
                            fix="write e.g. --student layers=14 or --student layers=50%, or give a model alias or folder.")
    k = round(n * int(m.group(1)) / 100) if m.group(2) else int(m.group(1))
    if not 1 <= k <= n:
        raise KnowtuneError(f"--student {spec}: {k} blocks asked for, but the teacher's base has {n} "
                            "(a student keeps between 1 and all of them).",
                            fix=f"choose K from 1 to {n} (fewer blocks: a smaller, faster and less able student).")
    return k


def kept_blocks(n: int, k: int) -> list[int]:
    """K evenly spaced block indices out of n, the first and the last always among them (K >= 2)."""
    if k == 1:
        return [0]
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def slimmed(model, k: int):
    """A new model of `model`'s architecture with `k` of its blocks (`kept_blocks`) and every other weight
    (embeddings, final norm, output layer) copied; fp32, in eval mode."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    kept = kept_blocks(config.num_hidden_layers, k)
    config.num_hidden_layers = k
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in kept]
    student = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    index = {old: new for new, old in enumerate(kept)}
    state = {}
    for name, tensor in model.state_dict().items():
        m = re.search(r"\.layers\.(\d+)\.", name)
        if m:
            if int(m.group(1)) not in index:
                continue
            name = f"{name[:m.start()]}.layers.{index[int(m.group(1))]}.{name[m.end():]}"
        state[name] = tensor.detach().clone().float()
    student.load_state_dict(state, strict=True)
    student.eval()
    return student

