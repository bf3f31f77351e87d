"""How much memory training and answering need: an estimate from a model's configuration, the method, the batch
and the row length, term by term (`knowtune models recommend`; checked against measured peaks by
`benchmarks/memory.py`).

Our own arithmetic: accelerate's `estimate-memory` counts the weights only (and fetches the config from the hub),
and no library counts what a training step holds on the CPU path knowtune takes (LoRA's frozen weights stored in
bf16, activations saved for the backward pass, the vocabulary projection only at answer tokens, the optimiser's
state, the Python and library runtime).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GIB = 1024 ** 3
# Resident memory of a Python process that has imported torch, transformers, peft and trl and built a tokenizer,
# before any model is loaded: measured with benchmarks/memory.py --runtime on the development machine (torch 2.13
# CPU, transformers 5.24). The CUDA context adds about as much again on a GPU.
RUNTIME_BYTES = {"cpu": int(0.43 * GIB), "gpu": int(1.0 * GIB)}
GPUS_GIB = {"h200": 141, "h100": 80, "a100-80gb": 80, "a100": 40, "a100-40gb": 40, "l40s": 48, "a6000": 48,
            "l4": 24, "a10": 24, "rtx4090": 24, "rtx3090": 24, "v100": 16, "t4": 16}


@dataclass
class Architecture:
    """The numbers of a decoder-only transformer that memory depends on (a transformers config's fields)."""
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True
    head_dim: int | None = None
    context: int = 2048

    @classmethod
    def from_config(cls, config) -> "Architecture":
        c = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = c.num_attention_heads
        return cls(c.hidden_size, c.num_hidden_layers, c.intermediate_size, heads,
                   getattr(c, "num_key_value_heads", None) or heads, c.vocab_size,
                   bool(getattr(c, "tie_word_embeddings", False)), getattr(c, "head_dim", None) or c.hidden_size // heads,
                   getattr(c, "max_position_embeddings", 2048))

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer of one block: q, k, v, o, gate, up, down."""
        h, q, kv, i = self.hidden, self.heads * self.hd, self.kv_heads * self.hd, self.intermediate
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    @property
    def block_linear_params(self) -> int:
        return sum(a * b for a, b in self.linear_shapes())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def parameters(self) -> int:
        return self.layers * (self.block_linear_params + 2 * self.hidden) + self.embedding_params + self.hidden


@dataclass
class Estimate:
    """Bytes, term by term; `total` is their sum."""
    terms: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.terms.values())

    def to_json(self) -> dict:
        return {**asdict(self), "total": self.total}


def training_memory(arch: Architecture, method: str = "lora", batch: int = 8, length: int = 256, device: str = "cpu",
                    bf16: bool = True, lora_r: int = 16, optimizer: str = "adamw", answer_share: float = 0.5,
                    gradient_checkpointing: bool = False) -> Estimate:
    """Peak memory of a training step: `method` lora, qlora (4-bit frozen weights, CUDA only) or full; `batch`
    rows of `length` tokens per forward pass (the micro-batch); `answer_share` of the tokens carry the loss."""
    lin = arch.layers * arch.block_linear_params
    rest = arch.parameters - lin  # embeddings, norms: kept in fp32
    if method == "full":
        trainable = arch.parameters
        weights = 4 * arch.parameters + (2 * lin if bf16 else 0)  # fp32 weights; autocast's bf16 copy of each linear
    else:
        trainable = arch.layers * lora_r * sum(a + b for a, b in arch.linear_shapes())
        frozen = lin * (0.5625 if method == "qlora" else 2 if bf16 else 4)  # NF4: 4 bits + a scale per 64
        weights = int(frozen) + 4 * rest + 4 * trainable
    states = {"adamw": 8, "adam": 8, "sgd": 4}[optimizer]
    tokens = batch * length
    act = 2 if bf16 else 4
    # Saved for the backward pass, per block and token: the inputs of the seven linears and of the two norms, the
    # residual stream, q/k/v after RoPE, the MLP's gate, up and activated products (in the autocast dtype); the
    # eager attention's scores and probabilities per head and key (fp32 softmax, its output in the autocast dtype)
    h, i, kv = arch.hidden, arch.intermediate, arch.kv_heads * arch.hd
    per_token = act * (6 * h + 2 * kv + 5 * i) + 4 * 3 * h
    # the CPU trains with eager attention (scores and probabilities kept: grows with the square of the length);
    # a GPU keeps SDPA, whose fused kernels keep only a few numbers per head and token
    attention = arch.heads * length * (4 + 4 + act) if device == "cpu" else arch.heads * 8
    blocks = 1 if gradient_checkpointing else arch.layers
    activations = tokens * blocks * (per_token + attention)
    if gradient_checkpointing:
        activations += tokens * arch.layers * 4 * h  # each block's input, kept
    logits = int(tokens * answer_share) * arch.vocab * 4 * 3  # fp32 logits, their log-softmax and its gradient
    return Estimate({"runtime": RUNTIME_BYTES["gpu" if device != "cpu" else "cpu"], "weights": int(weights),
                     "gradients": 4 * trainable, "optimizer": states * trainable, "activations": activations,
                     "logits": logits})


def inference_memory(arch: Architecture, batch: int = 1, length: int | None = None, device: str = "cpu",
                     bf16: bool = True) -> Estimate:
    """Memory to answer: the weights as knowtune loads a model to answer (linears in bf16 where that is fast,
    embeddings fp32 and a bf16 copy of a tied output layer), the key/value cache for `batch` rows of `length`
    tokens (default: the context), the logits of one step."""
    length = length or arch.context
    lin = arch.layers * arch.block_linear_params
    weights = (2 if bf16 else 4) * lin + 4 * (arch.parameters - lin) + (2 * arch.vocab * arch.hidden if bf16 and arch.tied else 0)
    cache = batch * length * arch.layers * 2 * arch.kv_heads * arch.hd * (2 if bf16 else 4)
    return Estimate({"runtime": RUNTIME_BYTES["gpu" if device != "cpu" else "cpu"], "weights": weights,
                     "kv_cache": cache, "logits": batch * arch.vocab * 4})


def parse_memory(text: str) -> int:
    """'24GiB', '16 GB', '8000MiB', '12g' -> bytes (GB and GiB both read as GiB: what a machine reports)."""
    import re

    from knowtune.errors import KnowtuneError

    m = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise KnowtuneError(f"--memory {text!r} is not an amount of memory.", fix="write it like 24GiB, 16GB or 8000MiB.")
    return int(float(m.group(1)) * 1024 ** "bkmgt".index(m.group(2) or "b"))


def gpu_memory(name: str) -> int:
    from knowtune.errors import KnowtuneError

    key = name.lower().replace(" ", "").replace("nvidia", "")
    if key not in GPUS_GIB:
        raise KnowtuneError(f"--gpu {name}: no memory size known for it.",
                            fix=f"give --memory with the GPU's memory, or one of: {', '.join(GPUS_GIB)}.")
    return GPUS_GIB[key] * GIB


def machine_memory(memory: str | None, gpu: str | None) -> int:
    """The memory budget: --memory as given, else the GPU's, else this machine's RAM."""
    import os

    if memory:
        return parse_memory(memory)
    if gpu:
        return gpu_memory(gpu)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def recommend(budget: int, method: str, batch: int, length: int, device: str, bf16: bool,
              extra: dict[str, Architecture] | None = None) -> tuple[list[dict], str | None]:
    """Training and answering estimates for every registry model (and `extra` ones), whether each fits in
    `budget` (both estimates within it); and the largest that fits (None: none). A combination whose estimate
    exceeds the budget never fits."""
    from knowtune.errors import KnowtuneError
    from knowtune.models.registry import REGISTRY

    if method not in ("lora", "qlora", "full"):
        raise KnowtuneError(f"--method {method}: not a method memory can be estimated for.", fix="use lora, qlora or full.")
    archs = {alias: Architecture(**src.architecture) for alias, src in REGISTRY.items() if src.architecture}
    archs.update(extra or {})
    rows = []
    for name, arch in archs.items():
        train = training_memory(arch, method, batch, length, device, bf16)
        answer = inference_memory(arch, 1, min(arch.context, 4096), device, bf16)
        possible = not (method == "qlora" and device == "cpu")
        fits = possible and train.total <= budget and answer.total <= budget
        rows.append({"model": name, "parameters": arch.parameters, "training": train.to_json(),
                     "answering": answer.to_json(), "fits": fits, "why": "" if possible else "QLoRA needs a CUDA GPU"})
    fitting = [r for r in rows if r["fits"]]
    return rows, max(fitting, key=lambda r: r["parameters"])["model"] if fitting else None


def architecture_of(path) -> Architecture:
    """The architecture in a config.json (or the folder holding one), read without running its code."""
    from pathlib import Path

    from transformers import AutoConfig

    from knowtune.errors import KnowtuneError

    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not (folder / "config.json").exists():
        raise KnowtuneError(f"{path}: no config.json there.", fix="give a model's config.json or the folder that holds it.")
    try:
        return Architecture.from_config(AutoConfig.from_pretrained(str(folder), trust_remote_code=False))
    except Exception as exc:
        raise KnowtuneError(f"{path}: not a decoder model's config ({type(exc).__name__}: {exc}).",
                            fix="give the config.json of a causal language model (Llama, Qwen, Mistral, ...).") from exc
